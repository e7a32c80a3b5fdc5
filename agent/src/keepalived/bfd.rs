//! keepalived's `bfd_instance` blocks and `track_bfd` to vigil's `[bfd.NAME]` and
//! `track_bfd`, with a warning wherever the meaning differs.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::duration;

use super::lexer::{Loc, Node};
use super::{Conv, Instance, key, q, track_array};

/// One `bfd_instance NAME { ... }`.
pub(super) struct BfdDef {
    name: String,
    loc: Loc,
    neighbor: Option<String>,
    source: Option<String>,
    min_rx: Option<Duration>,
    min_tx: Option<Duration>,
    multiplier: Option<i64>,
    weight: Option<i64>,
}

impl Conv {
    /// The weight a `bfd_instance` gives instances tracking it without their own (0 when
    /// it sets none, as in keepalived).
    pub(super) fn bfd_weight(&self, name: &str) -> i64 {
        self.bfds
            .iter()
            .find(|b| b.name == name)
            .and_then(|b| b.weight)
            .unwrap_or(0)
    }

    pub(super) fn bfd_instance(&mut self, n: &Node) {
        let Some(name) = self.section_name(n, |c, name| c.bfds.iter().any(|b| b.name == name))
        else {
            return;
        };
        let mut b = BfdDef {
            name,
            loc: n.loc.clone(),
            neighbor: None,
            source: None,
            min_rx: None,
            min_tx: None,
            multiplier: None,
            weight: None,
        };
        for item in self.block(n) {
            match item.keyword() {
                "neighbor_ip" | "neighbour_ip" => b.neighbor = self.one_arg(item),
                "source_ip" => b.source = self.one_arg(item),
                "min_rx" => b.min_rx = self.millis_arg(item),
                "min_tx" => b.min_tx = self.millis_arg(item),
                "multiplier" => b.multiplier = self.int_arg(item),
                "weight" => {
                    let words: Vec<String> = std::iter::once("weight".to_owned())
                        .chain(item.args().iter().cloned())
                        .collect();
                    b.weight = self.weight(item, &words);
                }
                "vrrp" | "checker" => self.warn(
                    item,
                    "vigil has no checker process; the session's state goes to its instances",
                ),
                "idle_tx" => self.warn(
                    item,
                    "vigil sends once a second while a session is not Up (RFC 5880's minimum); not carried over",
                ),
                "passive" => self.warn(
                    item,
                    "vigil's sessions are always active; not carried over",
                ),
                "ttl" | "hoplimit" | "max_hops" => self.warn(
                    item,
                    "vigil's BFD is single hop (TTL 255 only); not carried over",
                ),
                "disabled" => self.warn(item, "not supported; the session runs"),
                _ => self.warn(item, "not supported in bfd_instance; not carried over"),
            }
        }
        self.bfds.push(b);
    }

    /// The `[bfd.NAME]` tables; the interface (keepalived finds it by route) is that of
    /// the first instance tracking the session, else the first instance's.
    pub(super) fn emit_bfd(&mut self, out: &mut String, instances: &[Instance]) {
        let bfds = std::mem::take(&mut self.bfds);
        for b in &bfds {
            let kw = "bfd_instance";
            let _ = writeln!(out, "\n[bfd.{}]", key(&b.name));
            match &b.neighbor {
                Some(v) => {
                    let _ = writeln!(out, "neighbor = {}", q(v));
                }
                None => self.warn_at(&b.loc, kw, format!("`{}` has no neighbor_ip", b.name)),
            }
            if let Some(v) = &b.source {
                let _ = writeln!(out, "source = {}", q(v));
            }
            let tracker = instances
                .iter()
                .find(|i| i.track_bfd.iter().any(|(n, _)| *n == b.name))
                .or(instances.first());
            match tracker.and_then(|i| i.interface.as_ref()) {
                Some(ifname) => {
                    let _ = writeln!(out, "interface = {}", q(ifname));
                    self.warn_at(
                        &b.loc,
                        kw,
                        format!(
                            "vigil binds a session to an interface; `{}` gets {ifname} (an instance's), check it is the neighbor's",
                            b.name
                        ),
                    );
                }
                None => self.warn_at(
                    &b.loc,
                    kw,
                    format!(
                        "`{}` needs an interface (add `interface = \"...\"`)",
                        b.name
                    ),
                ),
            }
            // keepalived's defaults: 10 ms each way, multiplier 5.
            let ten = Duration::from_millis(10);
            let (rx, tx) = (b.min_rx.unwrap_or(ten), b.min_tx.unwrap_or(ten));
            if rx != tx {
                self.warn_at(
                    &b.loc,
                    kw,
                    format!(
                        "min_rx {rx:?} and min_tx {tx:?} differ; vigil has one interval for both directions and uses the slower, {:?}",
                        rx.max(tx)
                    ),
                );
            }
            let _ = writeln!(out, "interval = {}", duration::to_toml(rx.max(tx)));
            let _ = writeln!(out, "multiplier = {}", b.multiplier.unwrap_or(5));
            if let Some(w) = b.weight {
                let _ = writeln!(out, "weight = {w}");
            }
        }
    }

    /// A number of milliseconds, fractions allowed (keepalived's resolution is 1 µs).
    fn millis_arg(&mut self, n: &Node) -> Option<Duration> {
        let v = self.one_arg(n)?;
        match v.parse::<f64>() {
            Ok(ms) if ms.is_finite() && ms > 0.0 => {
                Some(Duration::from_micros((ms * 1000.0).round() as u64))
            }
            _ => {
                self.warn(
                    n,
                    format!("`{v}` is not a number of milliseconds; not carried over"),
                );
                None
            }
        }
    }

    /// `track_bfd { NAME [weight W] }` inside a vrrp_instance.
    pub(super) fn track_bfd(&mut self, i: &mut Instance, item: &Node) {
        for t in self.block(item) {
            let w = self.track_weight(t);
            i.track_bfd.push((t.keyword().to_string(), w));
        }
    }
}

/// The instance's `track_bfd` line.
pub(super) fn emit_track_bfd(out: &mut String, track_bfd: &[(String, Option<i64>)]) {
    if !track_bfd.is_empty() {
        let _ = writeln!(out, "track_bfd = {}", track_array("bfd", track_bfd));
    }
}

#[cfg(test)]
mod tests;
