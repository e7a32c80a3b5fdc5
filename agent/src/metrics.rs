//! The Prometheus endpoint (`metrics = "ADDR:PORT"`): a small HTTP server that answers
//! `GET /metrics` from a fresh snapshot of the agent's status, encoded with
//! prometheus-client. Nothing is kept between scrapes: the daemon's own counters are the
//! single source, so the endpoint can never drift from `vigil status`.

use std::net::SocketAddr;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::control::Request;

type Labels = Vec<(String, String)>;

const STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];

/// Binds `addr` and serves scrapes, asking the daemon through `tx` for each one.
pub async fn serve(
    addr: SocketAddr,
    tx: mpsc::Sender<Request>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics endpoint {addr}: {e}"))?;
    tracing::info!(%addr, "metrics endpoint listening");
    Ok(crate::clients::serve(
        "metrics endpoint",
        listener,
        move |stream| answer(stream, tx.clone()),
    ))
}

/// The media type of what [`render`] writes: prometheus-client encodes OpenMetrics text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn answer(mut stream: TcpStream, tx: mpsc::Sender<Request>) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let read_by = tokio::time::Instant::now() + crate::clients::READ_TIMEOUT;
    // Only the request line matters; stop at the end of the headers or 4 KiB.
    while len < buf.len() {
        let n = tokio::time::timeout_at(read_by, stream.read(&mut buf[len..]))
            .await
            .map_err(|_| {
                anyhow::anyhow!("no request within {:?}", crate::clients::READ_TIMEOUT)
            })??;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let status_type_body =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            let (otx, orx) = oneshot::channel();
            tx.send(Request::Status(otx)).await?;
            ("200 OK", CONTENT_TYPE, render(&orx.await?)?)
        } else {
            (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "try GET /metrics\n".to_owned(),
            )
        };
    let (status, content_type, body) = status_type_body;
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    Ok(())
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prometheus text for a status snapshot (the JSON of `vigil status --json`).
pub fn render(status: &serde_json::Value) -> anyhow::Result<String> {
    let mut registry = Registry::with_prefix("vigil");
    let state = Family::<Labels, Gauge>::default();
    let priority = Family::<Labels, Gauge>::default();
    let effective = Family::<Labels, Gauge>::default();
    let transitions = Family::<Labels, Counter>::default();
    let rx = Family::<Labels, Counter>::default();
    let tx = Family::<Labels, Counter>::default();
    let split = Family::<Labels, Counter>::default();
    let script_runs = Family::<Labels, Counter>::default();
    let script_health = Family::<Labels, Gauge>::default();
    let xdp = Family::<Labels, Counter>::default();
    let keeper = Family::<Labels, Gauge>::default();
    let silences = Family::<Labels, Counter>::default();
    // "kernel", or "agent (why)": the label is the keeper, the reason is in the status.
    let keeps = text(&status["down_timers"]);
    for k in ["kernel", "agent"] {
        keeper
            .get_or_create(&labels(&[("keeper", k)]))
            .set(i64::from(keeps.starts_with(k)));
    }
    let bfd_state = Family::<Labels, Gauge>::default();
    let bfd_detect = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let bfd_packets = Family::<Labels, Counter>::default();
    let bfd_downs = Family::<Labels, Counter>::default();
    let bfd_ups = Family::<Labels, Counter>::default();
    let bfd_refused = Family::<Labels, Counter>::default();
    let bfd_sessions = Family::<Labels, Gauge>::default();
    let bfd_xdp = Family::<Labels, Counter>::default();
    let last_transition = Family::<Labels, Gauge<f64, AtomicU64>>::default();

    for i in status["instances"].as_array().into_iter().flatten() {
        let name = text(&i["instance"]);
        let current = text(&i["state"]);
        for s in STATES {
            state
                .get_or_create(&labels(&[("instance", &name), ("state", s)]))
                .set(i64::from(current == s));
        }
        let one = labels(&[("instance", &name)]);
        priority
            .get_or_create(&one)
            .set(i["priority"].as_i64().unwrap_or(0));
        effective
            .get_or_create(&one)
            .set(i["effective_priority"].as_i64().unwrap_or(0));
        rx.get_or_create(&one)
            .inc_by(i["adverts_rx"].as_u64().unwrap_or(0));
        tx.get_or_create(&one)
            .inc_by(i["adverts_tx"].as_u64().unwrap_or(0));
        split
            .get_or_create(&one)
            .inc_by(i["split_brain_adverts"].as_u64().unwrap_or(0));
        silences
            .get_or_create(&one)
            .inc_by(i["kernel_silences"].as_u64().unwrap_or(0));
        for sc in i["tracking"]["scripts"].as_array().into_iter().flatten() {
            let script = text(&sc["script"]);
            let key = labels(&[("instance", &name), ("script", &script)]);
            script_runs
                .get_or_create(&key)
                .inc_by(sc["runs"].as_u64().unwrap_or(0));
            for h in ["ok", "failing", "unknown"] {
                script_health
                    .get_or_create(&labels(&[
                        ("instance", &name),
                        ("script", &script),
                        ("status", h),
                    ]))
                    .set(i64::from(sc["status"] == h));
            }
        }
        if let Some(at) = i["last_transition"]["unix_time"].as_f64() {
            last_transition.get_or_create(&one).set(at);
        }
        for t in i["transitions"].as_array().into_iter().flatten() {
            transitions
                .get_or_create(&labels(&[
                    ("instance", &name),
                    ("from", &text(&t["from"])),
                    ("to", &text(&t["to"])),
                    ("reason", &text(&t["reason"])),
                ]))
                .inc_by(t["count"].as_u64().unwrap_or(0));
        }
    }
    for (iface, counters) in status["datapath_counters"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for (verdict, n) in counters.as_object().into_iter().flatten() {
            if verdict == "bfd" {
                for (what, n) in n.as_object().into_iter().flatten() {
                    bfd_xdp
                        .get_or_create(&labels(&[("interface", iface), ("verdict", what)]))
                        .inc_by(n.as_u64().unwrap_or(0));
                }
                continue;
            }
            xdp.get_or_create(&labels(&[("interface", iface), ("verdict", verdict)]))
                .inc_by(n.as_u64().unwrap_or(0));
        }
    }
    for b in status["bfd"].as_array().into_iter().flatten() {
        let session = text(&b["name"]);
        let peer = text(&b["peer"]);
        for st in ["AdminDown", "Down", "Init", "Up"] {
            bfd_state
                .get_or_create(&labels(&[
                    ("session", &session),
                    ("peer", &peer),
                    ("state", st),
                ]))
                .set(i64::from(b["state"] == st));
        }
        let one = labels(&[("session", &session), ("peer", &peer)]);
        if let Some(ms) = b["detection_time_ms"].as_f64() {
            bfd_detect.get_or_create(&one).set(ms / 1000.0);
        }
        for (what, key) in [
            ("received", "received"),
            ("sent", "sent"),
            ("standby_sent", "standby_sent"),
            ("discarded", "discarded"),
        ] {
            bfd_packets
                .get_or_create(&labels(&[
                    ("session", &session),
                    ("peer", &peer),
                    ("packets", what),
                ]))
                .inc_by(b[key].as_u64().unwrap_or(0));
        }
        bfd_downs
            .get_or_create(&one)
            .inc_by(b["downs"].as_u64().unwrap_or(0));
        bfd_ups
            .get_or_create(&one)
            .inc_by(b["ups"].as_u64().unwrap_or(0));
        bfd_sessions
            .get_or_create(&labels(&[
                ("interface", &text(&b["interface"])),
                ("origin", &text(&b["origin"])),
            ]))
            .inc();
    }
    for (iface, n) in status["bfd_refused"].as_object().into_iter().flatten() {
        bfd_refused
            .get_or_create(&labels(&[("interface", iface)]))
            .inc_by(n.as_u64().unwrap_or(0));
    }

    registry.register(
        "build",
        "The running vigil",
        Info::new(vec![("version".to_owned(), text(&status["version"]))]),
    );
    let datapath = Family::<Labels, Gauge>::default();
    datapath
        .get_or_create(&labels(&[
            ("mode", &text(&status["datapath"])),
            (
                "fallback",
                if status["datapath_fallback"].is_string() {
                    "true"
                } else {
                    "false"
                },
            ),
        ]))
        .set(1);
    registry.register(
        "datapath",
        "1 for the receive path in use; fallback=\"true\" when XDP was wanted (xdp = \"auto\") but could not be had",
        datapath,
    );
    let reload = &status["last_reload"];
    if reload.is_object() {
        let success = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        success.set(i64::from(reload["success"].as_bool().unwrap_or(false)));
        registry.register(
            "last_reload_success",
            "1 if the last reload applied its file, 0 if it was rejected",
            success,
        );
        let at = Gauge::<f64, AtomicU64>::default();
        at.set(reload["unix_time"].as_f64().unwrap_or(0.0));
        registry.register(
            "last_reload_timestamp_seconds",
            "When the last reload was tried (Unix time)",
            at,
        );
    }
    registry.register(
        "instance_last_transition_timestamp_seconds",
        "When the instance last changed state (Unix time)",
        last_transition,
    );
    registry.register(
        "instance_state",
        "1 for the state the instance is in",
        state,
    );
    registry.register("instance_priority", "Configured priority", priority);
    registry.register(
        "instance_effective_priority",
        "Priority after tracking weights",
        effective,
    );
    registry.register("transitions", "State transitions by reason", transitions);
    registry.register("adverts_received", "Adverts handed to the election", rx);
    registry.register("adverts_sent", "Adverts sent", tx);
    registry.register(
        "split_brain_events",
        "Adverts from another Master that did not resolve",
        split,
    );
    registry.register("script_runs", "Health-check script runs", script_runs);
    registry.register(
        "script_status",
        "1 for the current result of a health-check script (ok, failing, unknown)",
        script_health,
    );
    registry.register(
        "datapath_frames",
        "VRRP frames judged by the datapath, by verdict (dropped reasons, accepted, foreign VRID)",
        xdp,
    );
    registry.register(
        "down_timers",
        "1 for who keeps the Backups' Master_Down_Timers: the kernel (bpf_timer) or the agent",
        keeper,
    );
    registry.register(
        "kernel_silences",
        "Silences the kernel's down timer reported (each a wake-up of the agent)",
        silences,
    );
    registry.register(
        "bfd_session_state",
        "1 for the state the BFD session is in",
        bfd_state,
    );
    registry.register(
        "bfd_detection_time_seconds",
        "Detection time in force (remote multiplier x agreed interval)",
        bfd_detect,
    );
    registry.register(
        "bfd_packets",
        "BFD Control packets received, sent and discarded",
        bfd_packets,
    );
    registry.register(
        "bfd_session_downs",
        "Times a BFD session left Up",
        bfd_downs,
    );
    registry.register("bfd_session_ups", "Times a BFD session came Up", bfd_ups);
    registry.register(
        "bfd_sessions",
        "BFD sessions running, per interface and origin (configured, learned, peer)",
        bfd_sessions,
    );
    registry.register(
        "bfd_sessions_refused",
        "BFD sessions not started because a session cap was reached",
        bfd_refused,
    );
    registry.register(
        "bfd_datapath_packets",
        "BFD packets the XDP program judged, by verdict (recorded: kept in the kernel; \
         reported: handed to the agent; passed; drop reasons), detection timeouts (down) and \
         ring-full losses",
        bfd_xdp,
    );
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_from_a_status_snapshot() {
        let status = serde_json::json!({
            "version": "1.2.3", "datapath": "raw socket",
            "datapath_fallback": "bpf(): Operation not permitted",
            "last_reload": {"success": false, "unix_time": 1700000000.5},
            "instances": [{
                "instance": "web", "state": "MASTER", "priority": 150, "effective_priority": 148,
                "adverts_rx": 3, "adverts_tx": 42, "split_brain_adverts": 4,
                "tracking": {"scripts": [{"script": "check_web", "status": "failing", "runs": 9}]},
                "transitions": [{"from": "BACKUP", "to": "MASTER", "reason": "master_down", "count": 2}],
                "last_transition": {"unix_time": 1700000100.25},
            }],
            "datapath_counters": {"eth0": {"accepted": 7, "ttl": 5,
                                           "bfd": {"recorded": 40, "reported": 2}}},
            "down_timers": "agent (kernel_timers = false)",
            "bfd": [{"name": "to_lb02", "peer": "192.0.2.12", "state": "Up",
                     "detection_time_ms": 30.0, "received": 11, "sent": 12, "discarded": 1,
                     "downs": 2, "ups": 3, "interface": "eth0", "origin": "learned"}],
            "bfd_refused": {"eth0": 7},
        });
        let out = render(&status).expect("renders");
        assert!(!out.contains("verdict=\"bfd\""), "{out}");
        for line in [
            "vigil_instance_state{instance=\"web\",state=\"MASTER\"} 1",
            "vigil_instance_state{instance=\"web\",state=\"BACKUP\"} 0",
            "vigil_instance_effective_priority{instance=\"web\"} 148",
            "vigil_adverts_sent_total{instance=\"web\"} 42",
            "vigil_transitions_total{instance=\"web\",from=\"BACKUP\",to=\"MASTER\",reason=\"master_down\"} 2",
            "vigil_datapath_frames_total{interface=\"eth0\",verdict=\"ttl\"} 5",
            "vigil_bfd_datapath_packets_total{interface=\"eth0\",verdict=\"recorded\"} 40",
            "vigil_bfd_datapath_packets_total{interface=\"eth0\",verdict=\"reported\"} 2",
            "vigil_split_brain_events_total{instance=\"web\"} 4",
            "vigil_script_runs_total{instance=\"web\",script=\"check_web\"} 9",
            "vigil_script_status{instance=\"web\",script=\"check_web\",status=\"failing\"} 1",
            "vigil_down_timers{keeper=\"agent\"} 1",
            "vigil_down_timers{keeper=\"kernel\"} 0",
            "vigil_bfd_session_state{session=\"to_lb02\",peer=\"192.0.2.12\",state=\"Up\"} 1",
            "vigil_bfd_session_state{session=\"to_lb02\",peer=\"192.0.2.12\",state=\"Down\"} 0",
            "vigil_bfd_detection_time_seconds{session=\"to_lb02\",peer=\"192.0.2.12\"} 0.03",
            "vigil_bfd_packets_total{session=\"to_lb02\",peer=\"192.0.2.12\",packets=\"sent\"} 12",
            "vigil_bfd_session_downs_total{session=\"to_lb02\",peer=\"192.0.2.12\"} 2",
            "vigil_bfd_session_ups_total{session=\"to_lb02\",peer=\"192.0.2.12\"} 3",
            "vigil_bfd_sessions{interface=\"eth0\",origin=\"learned\"} 1",
            "vigil_bfd_sessions_refused_total{interface=\"eth0\"} 7",
            "vigil_build_info{version=\"1.2.3\"} 1",
            "vigil_datapath{mode=\"raw socket\",fallback=\"true\"} 1",
            "vigil_last_reload_success 0",
            "vigil_last_reload_timestamp_seconds 1700000000.5",
            "vigil_instance_last_transition_timestamp_seconds{instance=\"web\"} 1700000100.25",
            "# EOF",
        ] {
            assert!(out.contains(line), "missing {line} in\n{out}");
        }
    }
}
