//! The Prometheus endpoint (`metrics = "ADDR:PORT"`): a small HTTP server that answers
//! `GET /metrics` from a fresh snapshot of the agent's status, encoded with
//! prometheus-client. Nothing is kept between scrapes: the daemon's own counters are the
//! single source, so the endpoint can never drift from `vigil status`.

use std::net::SocketAddr;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
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
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, tx).await {
                    tracing::debug!("metrics client: {e}");
                }
            });
        }
    }))
}

async fn answer(mut stream: TcpStream, tx: mpsc::Sender<Request>) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Only the request line matters; stop at the end of the headers or 4 KiB.
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
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
    let (status, body) = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?"))
    {
        let (otx, orx) = oneshot::channel();
        tx.send(otx).await?;
        ("200 OK", render(&orx.await?)?)
    } else {
        ("404 Not Found", "try GET /metrics\n".to_owned())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
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
    let bfd_state = Family::<Labels, Gauge>::default();
    let bfd_detect = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let bfd_packets = Family::<Labels, Counter>::default();
    let bfd_downs = Family::<Labels, Counter>::default();

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
    }

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
            "instances": [{
                "instance": "web", "state": "MASTER", "priority": 150, "effective_priority": 148,
                "adverts_rx": 3, "adverts_tx": 42, "split_brain_adverts": 4,
                "tracking": {"scripts": [{"script": "check_web", "status": "failing", "runs": 9}]},
                "transitions": [{"from": "BACKUP", "to": "MASTER", "reason": "master_down", "count": 2}],
            }],
            "datapath_counters": {"eth0": {"accepted": 7, "ttl": 5}},
            "bfd": [{"name": "to_lb02", "peer": "192.0.2.12", "state": "Up",
                     "detection_time_ms": 30.0, "received": 11, "sent": 12, "discarded": 1,
                     "downs": 2}],
        });
        let out = render(&status).expect("renders");
        for line in [
            "vigil_instance_state{instance=\"web\",state=\"MASTER\"} 1",
            "vigil_instance_state{instance=\"web\",state=\"BACKUP\"} 0",
            "vigil_instance_effective_priority{instance=\"web\"} 148",
            "vigil_adverts_sent_total{instance=\"web\"} 42",
            "vigil_transitions_total{instance=\"web\",from=\"BACKUP\",to=\"MASTER\",reason=\"master_down\"} 2",
            "vigil_datapath_frames_total{interface=\"eth0\",verdict=\"ttl\"} 5",
            "vigil_split_brain_events_total{instance=\"web\"} 4",
            "vigil_script_runs_total{instance=\"web\",script=\"check_web\"} 9",
            "vigil_script_status{instance=\"web\",script=\"check_web\",status=\"failing\"} 1",
            "vigil_bfd_session_state{session=\"to_lb02\",peer=\"192.0.2.12\",state=\"Up\"} 1",
            "vigil_bfd_session_state{session=\"to_lb02\",peer=\"192.0.2.12\",state=\"Down\"} 0",
            "vigil_bfd_detection_time_seconds{session=\"to_lb02\",peer=\"192.0.2.12\"} 0.03",
            "vigil_bfd_packets_total{session=\"to_lb02\",peer=\"192.0.2.12\",packets=\"sent\"} 12",
            "vigil_bfd_session_downs_total{session=\"to_lb02\",peer=\"192.0.2.12\"} 2",
        ] {
            assert!(out.contains(line), "missing {line} in\n{out}");
        }
    }
}
