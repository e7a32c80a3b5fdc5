//! BFD-assisted takeover wired to the instances: sessions to each instance's peers (from
//! `unicast_peers` and from the adverts heard), the passive side for peers that start one,
//! and the critical session's loss handed to the Backup that would win.

use std::net::IpAddr;

use crate::bfd::{PeerTable, State as BfdState};
use crate::datapath::bfd::Family;
use crate::vrrp::{Input, Instant, State};

use super::Agent;
use super::bfd::{BfdEvent, SessionSpec};

impl Agent {
    /// Listens on every interface of an instance with `bfd`, and starts sessions to its
    /// configured peers.
    pub(super) fn bfd_setup(&mut self) {
        let Some(service) = &self.bfd else {
            return;
        };
        for inst in self.instances.values() {
            let Some(timers) = inst.cfg.bfd else {
                continue;
            };
            let family = Family::of(&inst.router.primary());
            service.listen(&inst.iface.name, family, timers);
            let table = PeerTable::configured(inst.cfg.unicast_peers.iter().copied());
            for peer in table.addresses() {
                service.add(spec(&inst.iface.name, peer, timers));
            }
            self.peers.insert(inst.name.clone(), table);
        }
    }

    /// An advert from `source` reached instance `name`: learn the peer, start a session.
    pub(super) fn bfd_learn(&mut self, name: &str, source: IpAddr, priority: u8) {
        let (Some(service), Some(inst)) = (&self.bfd, self.instances.get(name)) else {
            return;
        };
        let Some(timers) = inst.cfg.bfd else {
            return;
        };
        let table = self.peers.entry(name.to_owned()).or_default();
        let new = !table.addresses().any(|a| a == source);
        table.heard(source, priority);
        if new {
            service.add(spec(&inst.iface.name, source, timers));
        }
    }

    /// A BFD session changed: tracking (`track_bfd`), and the takeover of the draft for
    /// point-to-point BFD in VRRP: the Backup that would win treats its session to the
    /// Master going down as its Master_Down_Timer expiring; the router still decides.
    pub(super) fn bfd_event(&mut self, event: BfdEvent) {
        if self
            .tracker
            .bfd(&event.name, event.transition.to == BfdState::Up)
        {
            self.retrack();
        }
        if event.transition.from != BfdState::Up {
            return;
        }
        let now = crate::clock::now();
        let names: Vec<String> = self
            .instances
            .values()
            .filter(|i| {
                i.cfg.bfd.is_some()
                    && i.iface.name == event.interface
                    && i.router.state() == State::Backup
                    && i.router.master() == Some(event.peer)
            })
            .map(|i| i.name.clone())
            .collect();
        for name in names {
            let Some(inst) = self.instances.get_mut(&name) else {
                continue;
            };
            let table = self.peers.get(&name).cloned().unwrap_or_default();
            if !table.would_win(inst.router.primary(), inst.router.priority(), event.peer) {
                tracing::info!(instance = %name, peer = %event.peer,
                    "BFD session to the master down; another Backup may outrank us, the RFC timer decides");
                continue;
            }
            // Adverts the XDP program kept to itself while the Master was steady: the
            // newest arrival says whether the Master spoke after the session went down.
            if let Some(stats) = self.receiver.vrid_stats(&inst.key)
                && let Some((source, _)) = &inst.last_advert
                && *source == event.peer
            {
                let src = *source;
                inst.refeed(stats.last_ns, src, stats.last_priority);
            }
            inst.router.handle(
                now,
                Input::MasterUnreachable {
                    master: event.peer,
                    at: Instant::from_nanos(event.transition.at.as_nanos()),
                },
            );
        }
    }
}

fn spec(interface: &str, peer: IpAddr, timers: crate::config::BfdTimers) -> SessionSpec {
    SessionSpec {
        name: format!("{interface}/{peer}"),
        interface: interface.to_owned(),
        peer,
        source: None,
        timers,
    }
}
