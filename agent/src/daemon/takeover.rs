//! BFD wired to the instances: sessions to each instance's peers (the endpoint names them,
//! from `unicast_peers` and the adverts heard), the passive side for peers that start
//! one, tracking (`track_bfd`), and a session's loss handed to the endpoint.

use std::net::IpAddr;

use crate::bfd::State as BfdState;
use crate::config::BfdTimers;
use crate::datapath::bfd::Family;
use crate::vrrp::endpoint::EndpointInput;

use super::Agent;
use super::bfd::{BfdEvent, SessionSpec};

impl Agent {
    /// For every instance with `bfd`: the endpoint keeps its peer table, the BFD task
    /// answers peers on its interface.
    pub(super) fn bfd_setup(&mut self) {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for name in names {
            self.bfd_enable(&name);
        }
    }

    /// BFD-assisted takeover for one instance, if it has `bfd` (and the agent started
    /// its BFD task: one that had none at start gets it at the next restart).
    pub(super) fn bfd_enable(&mut self, name: &str) {
        let (Some(service), Some(inst)) = (&self.bfd, self.instances.get(name)) else {
            return;
        };
        let Some(timers) = inst.cfg.bfd else {
            return;
        };
        let family = if inst.key.family == vigil_common::event::FAMILY_V4 {
            Family::V4
        } else {
            Family::V6
        };
        service.listen(&inst.iface.name, family, timers);
        self.endpoint.enable_bfd(inst.key, &inst.cfg.unicast_peers);
    }

    /// A BFD session changed: tracking, and when it left Up, the endpoint's takeover
    /// check for the instances on its interface.
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
        let Some(ifindex) = self
            .instances
            .values()
            .find(|i| i.iface.name == event.interface)
            .map(|i| i.iface.index)
        else {
            return;
        };
        let now = crate::clock::now();
        // The adverts the XDP program kept to itself while the Master was steady: the
        // newest arrival says whether the Master spoke after the session went down.
        for key in self.endpoint.bfd_candidates(ifindex, event.peer) {
            if let Some(stats) = self.receiver.vrid_stats(&key) {
                self.endpoint.handle(
                    now,
                    EndpointInput::KernelState {
                        key,
                        stats,
                        // Not before a timeout: the kernel timer's state is not asked.
                        timer_armed: None,
                    },
                );
            }
        }
        self.endpoint.handle(
            now,
            EndpointInput::MasterUnreachable {
                ifindex,
                master: event.peer,
                at: event.transition.at,
            },
        );
    }
}

/// The session an instance runs to one peer (shared by the instances of an interface).
pub(super) fn spec(interface: &str, peer: IpAddr, timers: BfdTimers) -> SessionSpec {
    SessionSpec {
        name: format!("{interface}/{peer}"),
        interface: interface.to_owned(),
        peer,
        source: None,
        timers,
    }
}
