//! `vigil trace -i IFACE --bfd`: the running agent's BFD sessions on an interface — the
//! sessions as they stand, then every state change, start, re-timing, removal and
//! refusal as it happens. Read from the control socket's BFD history, polled; nothing
//! is attached to the interface, so it runs beside the agent's own XDP program.

use std::path::PathBuf;
use std::time::Duration;

/// How often the agent is asked.
const POLL: Duration = Duration::from_millis(100);

/// Options of `vigil trace --bfd`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interface whose sessions to show.
    pub interface: String,
    /// The agent's control socket.
    pub socket: PathBuf,
    /// One JSON object per line.
    pub json: bool,
    /// Stop after this many history entries.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn millis(v: &serde_json::Value) -> String {
    v.as_f64()
        .map_or("-".to_owned(), |ms| format!("{ms:.1} ms"))
}

/// One session of the status, as a line.
pub fn session_line(s: &serde_json::Value) -> String {
    format!(
        "session {} peer {} ({}): {} (remote {}), detect {}, discr {}/{}, up {} down {}, last down: {}",
        text(&s["name"]),
        text(&s["peer"]),
        text(&s["origin"]),
        text(&s["state"]),
        text(&s["remote_state"]),
        millis(&s["detection_time_ms"]),
        text(&s["local_discriminator"]),
        text(&s["remote_discriminator"]),
        text(&s["ups"]),
        text(&s["downs"]),
        text(&s["last_down_reason"]),
    )
}

/// One history entry, as a line.
pub fn entry_line(e: &serde_json::Value) -> String {
    let when = e["time"]
        .as_f64()
        .map(|t| std::time::UNIX_EPOCH + Duration::from_secs_f64(t))
        .map_or("-".to_owned(), |t| {
            humantime::format_rfc3339_millis(t).to_string()
        });
    format!(
        "{when} {} peer {} [{}]: {} (state {}, detect {}, discr {}/{})",
        text(&e["interface"]),
        text(&e["peer"]),
        text(&e["session"]),
        text(&e["event"]),
        text(&e["state"]),
        millis(&e["detection_time_ms"]),
        text(&e["local_discriminator"]),
        text(&e["remote_discriminator"]),
    )
}

/// Prints the sessions, then what happens to them, until Ctrl-C, SIGTERM, `count`
/// entries or `duration`.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let first = crate::control::ask(&opts.socket, "bfd-history 0").await?;
    let on_iface = |v: &serde_json::Value| v["interface"] == opts.interface.as_str();
    for s in first["sessions"].as_array().into_iter().flatten() {
        if on_iface(s) {
            if opts.json {
                println!("{}", serde_json::json!({ "session": s }));
            } else {
                println!("{}", session_line(s));
            }
        }
    }
    let mut seq = first["newest"].as_u64().unwrap_or(0);
    eprintln!(
        "vigil trace: BFD sessions on {} (agent at {}); Ctrl-C to stop",
        opts.interface,
        opts.socket.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(POLL);
    let mut seen = 0u64;
    'outer: loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = &mut deadline => break,
        }
        let v = crate::control::ask(&opts.socket, &format!("bfd-history {seq}")).await?;
        let entries = v["entries"].as_array().cloned().unwrap_or_default();
        if let Some(oldest) = entries.first().and_then(|e| e["seq"].as_u64())
            && oldest > seq + 1
        {
            eprintln!(
                "vigil trace: {} BFD history entries missed",
                oldest - seq - 1
            );
        }
        for e in entries.iter().filter(|e| on_iface(e)) {
            if opts.json {
                println!("{e}");
            } else {
                println!("{}", entry_line(e));
            }
            seen += 1;
            if opts.count.is_some_and(|c| seen >= c) {
                break 'outer;
            }
        }
        seq = v["newest"].as_u64().unwrap_or(seq);
    }
    eprintln!("vigil trace: {seen} BFD entries");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_peer_state_detection_and_why() {
        let e = serde_json::json!({
            "seq": 4, "time": 1_700_000_000.25, "session": "eth0/192.0.2.11",
            "interface": "eth0", "peer": "192.0.2.11",
            "event": "Up -> Down: control detection time expired", "state": "Down",
            "detection_time_ms": 30.0, "local_discriminator": 7, "remote_discriminator": 0,
        });
        assert_eq!(
            entry_line(&e),
            "2023-11-14T22:13:20.250Z eth0 peer 192.0.2.11 [eth0/192.0.2.11]: \
             Up -> Down: control detection time expired (state Down, detect 30.0 ms, discr 7/0)"
        );
        let s = serde_json::json!({
            "name": "eth0/192.0.2.11", "peer": "192.0.2.11", "origin": "learned",
            "state": "Up", "remote_state": "Up", "detection_time_ms": 30.0,
            "local_discriminator": 7, "remote_discriminator": 9, "ups": 2, "downs": 1,
            "last_down_reason": "control detection time expired",
        });
        assert_eq!(
            session_line(&s),
            "session eth0/192.0.2.11 peer 192.0.2.11 (learned): Up (remote Up), detect 30.0 ms, \
             discr 7/9, up 2 down 1, last down: control detection time expired"
        );
    }
}
