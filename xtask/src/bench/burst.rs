//! Many takeovers at once: the scale pair's MASTER loses its link and every instance of
//! the BACKUP takes over in the same moment. Each VRID's first advert from the BACKUP is
//! timed, from a capture on `obs`, against that VRID's own deadline: the MASTER's last
//! advert for it plus the BACKUP's Master_Down_Interval (RFC 5798 §6.1). An
//! implementation that carries out its takeovers one instance at a time (advert,
//! addresses, announcements, next instance) delays the later instances' adverts by the
//! earlier ones' address work.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vigil_tests::capture::{Capture, Packet};

use super::lab::{BACKUP, MASTER, Side, master_down};
use super::scale::INTERVAL_MS;

/// What one cut showed.
#[derive(Clone, Debug, Default)]
pub struct Burst {
    /// Each VRID's first advert from the BACKUP after its own deadline, ms.
    pub delays_ms: Vec<f64>,
    /// VRIDs with no advert from the MASTER or no takeover seen.
    pub missed: usize,
    /// Cuts made with some instance not yet MASTER on lb01 and BACKUP on lb02.
    pub unsettled: usize,
}

/// VRRP adverts in a capture: (time ns, source, VRID).
fn adverts(packets: &[Packet]) -> Vec<(u64, IpAddr, u8)> {
    let mut out = Vec::new();
    for p in packets {
        let d = &p.data;
        if d.len() < 34 || u16::from_be_bytes([d[12], d[13]]) != 0x0800 {
            continue;
        }
        let ihl = usize::from(d[14] & 0x0f) * 4;
        if d[23] != 112 || d.len() < 14 + ihl + 2 {
            continue;
        }
        let src = Ipv4Addr::new(d[26], d[27], d[28], d[29]);
        out.push((p.ts_ns, src.into(), d[14 + ihl + 1]));
    }
    out
}

/// Cuts the MASTER's link with every instance settled, times each VRID's takeover, and
/// gives the link back (the MASTER, of higher priority, takes over again).
pub fn burst(side: &Side, instances: u8, round: usize) -> anyhow::Result<Burst> {
    let path = side.lab.dir.join(format!(
        "{}-burst-{instances}-{round}.pcap",
        side.imp.name()
    ));
    let cap = Capture::start(&side.host("obs"), "eth0", "ip proto 112", &path)?;
    std::thread::sleep(Duration::from_millis(300));
    side.lab.set_link("lb01", false)?;
    let interval = Duration::from_millis(u64::from(INTERVAL_MS));
    let down = master_down(interval, 3);
    // Every deadline is within one Master_Down_Interval of the cut; the rest is margin
    // for a slow implementation.
    std::thread::sleep(down + Duration::from_millis(700));
    let seen = adverts(&cap.stop()?);
    side.lab.set_link("lb01", true)?;
    let mut out = Burst::default();
    for vrid in 1..=instances {
        let last = seen
            .iter()
            .filter(|a| a.1 == MASTER && a.2 == vrid)
            .map(|a| a.0)
            .max();
        let first = last.and_then(|last| {
            seen.iter()
                .filter(|a| a.1 == BACKUP && a.2 == vrid && a.0 > last)
                .map(|a| a.0)
                .min()
                .map(|first| (last, first))
        });
        match first {
            Some((last, first)) => {
                let deadline = last + down.as_nanos() as u64;
                out.delays_ms.push((first as f64 - deadline as f64) / 1e6);
            }
            None => out.missed += 1,
        }
    }
    // The MASTER takes its instances back before the pair is stopped.
    std::thread::sleep(Duration::from_millis(500));
    Ok(out)
}

/// The `p`-th quantile (0–1) of `v`, nearest rank; `None` when empty.
pub fn quantile(v: &[f64], p: f64) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = ((s.len() as f64 * p).ceil() as usize).clamp(1, s.len().max(1)) - 1;
    s.get(at).copied()
}
