//! The control socket: a unix socket (mode 0600) that answers `status` with JSON and
//! `reload` with the result of re-reading the configuration file, and the `vigil status`
//! and `vigil reload` clients.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A request from a client; the daemon answers on the channel.
#[derive(Debug)]
pub enum Request {
    /// The status snapshot (`vigil status --json`).
    Status(oneshot::Sender<serde_json::Value>),
    /// Re-read the configuration file; the answer says whether it was applied and what
    /// changed.
    Reload(oneshot::Sender<serde_json::Value>),
    /// What happened to BFD sessions after history entry `seq` (`vigil trace --bfd`),
    /// with the sessions as they stand.
    BfdHistory(u64, oneshot::Sender<serde_json::Value>),
    /// Panic on purpose (fault-injection tests only: honoured when the agent was started
    /// with `VIGIL_TEST_FAULTS=1`).
    Panic,
}

/// Whether the agent accepts fault-injection requests (`VIGIL_TEST_FAULTS=1`).
fn faults_enabled() -> bool {
    std::env::var_os("VIGIL_TEST_FAULTS").is_some_and(|v| v == "1")
}

/// Version of the `vigil status --json` layout: raised when a field changes meaning or
/// goes away (new fields do not raise it).
pub const STATUS_SCHEMA: u32 = 1;

/// Binds the socket (replacing a stale one) and serves requests into `tx`.
pub fn serve(
    path: &Path,
    tx: mpsc::Sender<Request>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by a crashed agent refuses connections; remove it. A live agent
    // on the same path would answer, and then this is a second agent: refuse.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!(
            "another vigil is running on control socket {}",
            path.display()
        );
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("binding control socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(crate::clients::serve(
        "control socket",
        listener,
        move |stream| answer(stream, tx.clone()),
    ))
}

async fn answer(stream: UnixStream, tx: mpsc::Sender<Request>) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(crate::clients::MAX_REQUEST));
    tokio::time::timeout(crate::clients::READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| anyhow::anyhow!("no request within {:?}", crate::clients::READ_TIMEOUT))??;
    let reply = match line.trim() {
        "status" | "" => {
            let (otx, orx) = oneshot::channel();
            tx.send(Request::Status(otx)).await?;
            orx.await?
        }
        "reload" => {
            let (otx, orx) = oneshot::channel();
            tx.send(Request::Reload(otx)).await?;
            orx.await?
        }
        line if line.starts_with("bfd-history") => {
            let seq = line
                .strip_prefix("bfd-history")
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            let (otx, orx) = oneshot::channel();
            tx.send(Request::BfdHistory(seq, otx)).await?;
            orx.await?
        }
        "panic" if faults_enabled() => {
            tx.send(Request::Panic).await?;
            serde_json::json!({ "panic": "requested" })
        }
        other => serde_json::json!({
            "error": format!("unknown request {other:?}; try \"status\" or \"reload\"")
        }),
    };
    write.write_all(reply.to_string().as_bytes()).await?;
    write.write_all(b"\n").await?;
    Ok(())
}

/// Sends one request line to the agent at `path` and returns its JSON answer.
pub(crate) async fn ask(path: &Path, request: &str) -> anyhow::Result<serde_json::Value> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach vigil at {}: {e} (is `vigil run` running?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{request}\n").as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    Ok(serde_json::from_str(&line)?)
}

/// `vigil reload`: asks the agent to re-read its file; prints what changed, or the
/// errors. Returns whether the new file was applied.
pub async fn reload(path: &Path, json: bool) -> anyhow::Result<bool> {
    let v = ask(path, "reload").await?;
    let applied = v["applied"].as_bool().unwrap_or(false);
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if applied {
        let list = |k: &str| {
            let names: Vec<String> = v[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect();
            if names.is_empty() {
                "-".to_owned()
            } else {
                names.join(", ")
            }
        };
        println!(
            "reloaded {}: changed {}; added {}; removed {}; unchanged {}",
            v["config"].as_str().unwrap_or("?"),
            list("changed"),
            list("added"),
            list("removed"),
            list("unchanged")
        );
        for w in v["warnings"].as_array().into_iter().flatten() {
            if let Some(w) = w.as_str() {
                eprintln!("warning: {w}");
            }
        }
    } else {
        eprintln!(
            "reload rejected, running configuration kept:\n{}",
            v["error"].as_str().unwrap_or("(no reason given)")
        );
    }
    Ok(applied)
}

/// `vigil status`: asks the agent and prints a table, or the JSON with `json`.
pub async fn status(path: &Path, json: bool) -> anyhow::Result<()> {
    let v = ask(path, "status").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", table(&v));
    }
    Ok(())
}

/// The human view of a status reply.
pub fn table(v: &serde_json::Value) -> String {
    let s = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut out = format!(
        "vigil {} (router_id {}, pid {}), datapath: {}\n",
        s(&v["version"]),
        s(&v["router_id"]),
        s(&v["pid"]),
        s(&v["datapath"])
    );
    out += &format!(
        "{:<12} {:<8} {:>4} {:<7} {:>9} {:<16} {:>8} {:>8}  {}\n",
        "INSTANCE", "IFACE", "VRID", "STATE", "PRIO/EFF", "MASTER", "RX", "TX", "LAST TRANSITION"
    );
    for i in v["instances"].as_array().into_iter().flatten() {
        let last = &i["last_transition"];
        let last = if last.is_null() {
            "-".to_owned()
        } else {
            format!(
                "{} -> {} {:.1}s ago: {}",
                s(&last["from"]),
                s(&last["to"]),
                last["seconds_ago"].as_f64().unwrap_or(0.0),
                s(&last["reason"])
            )
        };
        out += &format!(
            "{:<12} {:<8} {:>4} {:<7} {:>9} {:<16} {:>8} {:>8}  {}\n",
            s(&i["instance"]),
            s(&i["interface"]),
            s(&i["vrid"]),
            s(&i["state"]),
            format!("{}/{}", s(&i["priority"]), s(&i["effective_priority"])),
            s(&i["master"]),
            s(&i["adverts_rx"]),
            s(&i["adverts_tx"]),
            last
        );
        let sb = &i["split_brain"];
        if !sb.is_null() {
            out += &format!(
                "  split brain suspected since {}, peer {} (priority {}, {} adverts)\n",
                s(&sb["since"]),
                s(&sb["peer"]),
                s(&sb["peer_priority"]),
                s(&sb["adverts"])
            );
        }
        if let Some(f) = i["fault"].as_str() {
            out += &format!("  fault: {f}\n");
        }
        let stray: Vec<String> = i["addresses_while_backup"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        if !stray.is_empty() {
            out += &format!(
                "  on the interface while {} but not added by vigil (left alone): {}\n",
                s(&i["state"]),
                stray.join(", ")
            );
        }
    }
    let groups = v["sync_groups"].as_array().into_iter().flatten();
    for (n, g) in groups.enumerate() {
        if n == 0 {
            out += &format!("{:<12} {:<7} MEMBERS\n", "SYNC GROUP", "STATE");
        }
        let members: Vec<String> = g["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| format!("{} {}", s(&m["instance"]), s(&m["state"])))
            .collect();
        out += &format!(
            "{:<12} {:<7} {}\n",
            s(&g["group"]),
            s(&g["state"]),
            members.join(", ")
        );
        if let Some(h) = g["held"].as_str() {
            out += &format!("  held out of MASTER: {h}\n");
        }
    }
    let sessions: Vec<&serde_json::Value> = v["bfd"].as_array().into_iter().flatten().collect();
    if !sessions.is_empty() {
        out += &format!(
            "{:<20} {:<8} {:<24} {:<9} {:>8} {:>8} {:<13}  {}\n",
            "BFD", "IFACE", "PEER", "STATE", "DETECT", "TX", "RX/DETECTION", "LAST DOWN"
        );
        let ms = |x: &serde_json::Value| x.as_f64().map_or("-".to_owned(), |m| format!("{m}ms"));
        for b in sessions {
            let last = match b["last_down_reason"].as_str() {
                Some(why) => format!(
                    "{:.1}s ago: {why}",
                    b["last_down_seconds_ago"].as_f64().unwrap_or(0.0)
                ),
                None => "-".to_owned(),
            };
            out += &format!(
                "{:<20} {:<8} {:<24} {:<9} {:>8} {:>8} {:<13}  {}\n",
                s(&b["name"]),
                s(&b["interface"]),
                s(&b["peer"]),
                s(&b["state"]),
                ms(&b["detection_time_ms"]),
                ms(&b["transmit_interval_ms"]),
                format!("{}/{}", s(&b["receive"]), s(&b["detection"])),
                last
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_shows_sync_groups_and_why_they_are_held() {
        let v = serde_json::json!({
            "version": "0", "router_id": "lb01", "pid": 1, "datapath": "xdp",
            "instances": [],
            "sync_groups": [{
                "group": "router", "state": "BACKUP", "held": "router: in cannot be MASTER (BACKUP)",
                "instances": [{"instance": "out", "state": "BACKUP"}, {"instance": "in", "state": "BACKUP"}],
            }],
        });
        let t = super::table(&v);
        assert!(
            t.contains("router       BACKUP  out BACKUP, in BACKUP"),
            "{t}"
        );
        assert!(
            t.contains("held out of MASTER: router: in cannot be MASTER"),
            "{t}"
        );
    }

    #[test]
    fn the_table_names_a_suspected_split_brain() {
        let v = serde_json::json!({
            "version": "0", "router_id": "lb01", "pid": 1, "datapath": "xdp",
            "instances": [{
                "instance": "web", "interface": "eth0", "vrid": 51, "state": "MASTER",
                "priority": 150, "effective_priority": 150, "master": "192.0.2.11",
                "adverts_rx": 9, "adverts_tx": 9, "last_transition": null, "fault": null,
                "split_brain": {"since": "2026-01-01T00:00:00Z", "peer": "192.0.2.12",
                                "peer_priority": 100, "adverts": 7},
                "addresses_while_backup": [],
            }],
        });
        let t = super::table(&v);
        assert!(!t.contains("SYNC GROUP"), "{t}");
        assert!(
            t.contains("split brain suspected since 2026-01-01T00:00:00Z, peer 192.0.2.12"),
            "{t}"
        );
    }

    #[test]
    fn the_table_shows_bfd_sessions() {
        let v = serde_json::json!({
            "version": "0", "router_id": "lb01", "pid": 1, "datapath": "xdp",
            "instances": [],
            "bfd": [{"name": "to_lb02", "interface": "eth0", "peer": "192.0.2.12",
                     "state": "Down", "detection_time_ms": null, "transmit_interval_ms": 1000.0,
                     "last_down_reason": "control detection time expired",
                     "last_down_seconds_ago": 2.5}],
        });
        let t = super::table(&v);
        let line = t
            .lines()
            .find(|l| l.starts_with("to_lb02"))
            .unwrap_or_default();
        for part in [
            "eth0",
            "192.0.2.12",
            "Down",
            "1000ms",
            "2.5s ago: control detection time expired",
        ] {
            assert!(line.contains(part), "{part:?} missing in {t}");
        }
    }
}
