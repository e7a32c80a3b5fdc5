//! Start-up: from spawning the agent (one instance, 1 s adverts, initial state MASTER,
//! no peer) to READY and to its first advert on the wire.
//!
//! READY is what each agent tells its service manager: vigil sends READY=1 to
//! NOTIFY_SOCKET (a unix datagram socket the bench listens on). keepalived only talks
//! to NOTIFY_SOCKET when its parent is systemd, so for it READY is its own log line
//! "Startup complete", which it writes where it would send READY=1 (the bench polls the
//! log every millisecond).

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::lab::{MASTER, MASTER_PRIORITY, Sides};
use super::measure::realtime_ns;
use super::node::{Impl, Node, specs};

pub const INTERVAL_MS: u32 = 1000;

#[derive(Clone, Debug, Default)]
pub struct Startup {
    /// Spawn → READY, ms.
    pub ready: BTreeMap<Impl, Vec<f64>>,
    /// Spawn → first advert, ms.
    pub advert: BTreeMap<Impl, Vec<f64>>,
}

fn wait_ready(node: &mut Node, notify: Option<&UnixDatagram>) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    match notify {
        Some(sock) => {
            sock.set_read_timeout(Some(Duration::from_secs(15)))?;
            let mut buf = [0u8; 4096];
            while Instant::now() < deadline {
                let n = sock.recv(&mut buf)?;
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.lines().any(|l| l == "READY=1") {
                    return Ok(realtime_ns());
                }
            }
        }
        None => {
            while Instant::now() < deadline {
                if node.log_text().contains("Startup complete") {
                    return Ok(realtime_ns());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    bail!(
        "{}: not ready after 15 s: {}",
        node.imp.name(),
        node.log_text()
    )
}

pub fn startup(sides: &mut Sides, trials: usize) -> anyhow::Result<Startup> {
    let mut tails = Vec::new();
    for side in sides.0.iter_mut() {
        tails.push(side.capture("startup")?);
    }
    let mut out = Startup::default();
    for t in 0..trials {
        for i in sides.order(t) {
            let side = &sides.0[i];
            let place = side.place("lb01");
            let notify_path = side.lab.dir.join("notify.sock");
            let _ = std::fs::remove_file(&notify_path);
            let sock = match side.imp {
                Impl::Vigil => Some(UnixDatagram::bind(&notify_path)?),
                Impl::Keepalived => None,
            };
            let spec = specs(1, MASTER_PRIORITY, true, INTERVAL_MS, 3);
            let t0 = realtime_ns();
            let mut node = Node::spawn(
                side.imp,
                &place,
                &spec,
                sock.as_ref().map(|_| notify_path.as_path()),
            )?;
            let ready = wait_ready(&mut node, sock.as_ref())?;
            let tail = &mut tails[i];
            if !tail.wait_for(Duration::from_secs(15), |a| {
                a.iter().any(|x| x.src == MASTER && x.ts > t0)
            })? {
                bail!("{}: no advert within 15 s of start", side.imp.name());
            }
            let Some(first) = tail
                .adverts
                .iter()
                .find(|x| x.src == MASTER && x.ts > t0)
                .map(|x| x.ts)
            else {
                bail!("advert vanished");
            };
            let (r, a) = (
                (ready - t0) as f64 / 1e6,
                (first.saturating_sub(t0)) as f64 / 1e6,
            );
            eprintln!(
                "bench: start-up trial {}, {}: READY {r:.1} ms, first advert {a:.1} ms",
                t + 1,
                side.imp.name()
            );
            out.ready.entry(side.imp).or_default().push(r);
            out.advert.entry(side.imp).or_default().push(a);
            node.stop();
            let _ = std::fs::remove_file(&notify_path);
        }
    }
    for t in &mut tails {
        t.stop()?;
    }
    Ok(out)
}
