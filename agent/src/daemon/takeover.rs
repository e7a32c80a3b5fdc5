//! BFD wired to the instances: sessions to each instance's peers (the endpoint names them,
//! from `unicast_peers` and the adverts heard, and lets silent ones go), the passive
//! side for peers that start one, tracking (`track_bfd`), a session's loss handed to the
//! endpoint, and reloads that change any of it in place.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::bfd::State as BfdState;
use crate::config::{BfdTimers, Config};
use crate::datapath::bfd::Family;
use crate::vrrp::endpoint::EndpointInput;

use super::Agent;
use super::bfd::judge::{self, Judgement};
use super::bfd::wants::{Limits, Listening};
use super::bfd::{BfdEvent, BfdService, SessionSpec};

/// The detection time of sessions with `timers`.
pub(super) fn detection(timers: BfdTimers) -> Duration {
    timers.interval * u32::from(timers.multiplier)
}

impl Agent {
    /// For every instance with `bfd`: the endpoint keeps its peer table, the BFD task
    /// answers peers on its interface.
    pub(super) fn bfd_setup(&mut self) {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for name in names {
            self.bfd_enable(&name);
        }
        self.bfd_listening();
    }

    /// BFD-assisted takeover for one instance, if it has `bfd`.
    pub(super) fn bfd_enable(&mut self, name: &str) {
        let (Some(_), Some(inst)) = (&self.bfd, self.instances.get(name)) else {
            return;
        };
        let Some(timers) = inst.cfg.bfd else {
            return;
        };
        self.endpoint
            .enable_bfd(inst.key, &inst.cfg.unicast_peers, detection(timers));
        self.bfd_listening();
    }

    /// No more BFD-assisted takeover for one instance (it stops, or lost `bfd`): its
    /// sessions go unless another instance or the configuration wants them.
    pub(super) fn bfd_disable(&mut self, name: &str) {
        if let Some(inst) = self.instances.get(name) {
            self.endpoint.disable_bfd(&inst.key);
        }
        if let Some(service) = &self.bfd {
            service.forget_owner(name);
        }
    }

    /// An instance's `bfd` timers changed on reload: its sessions take them in place
    /// (a Poll Sequence, RFC 5880 §6.8.3), no session or election restarts.
    pub(super) fn bfd_retime(&mut self, name: &str, timers: BfdTimers) {
        let (Some(service), Some(inst)) = (&self.bfd, self.instances.get(name)) else {
            return;
        };
        self.endpoint
            .set_bfd_detection(&inst.key, detection(timers));
        if let Some(table) = self.endpoint.bfd_peers(&inst.key) {
            for peer in table.candidates() {
                service.learn(name, &inst.iface.name, peer, timers);
            }
        }
    }

    /// Tells the BFD task where peers may start sessions: every interface and family
    /// with an instance with `bfd`, with the fastest timers asked for there, kept for
    /// the longest Master_Down_Interval plus detection time after leaving Up, and from
    /// the `unicast_peers` only when every such instance has them.
    pub(super) fn bfd_listening(&self) {
        let Some(service) = &self.bfd else {
            return;
        };
        let mut listening: BTreeMap<(String, Family), Listening> = BTreeMap::new();
        let mut open: BTreeSet<(String, Family)> = BTreeSet::new();
        for inst in self.instances.values() {
            let Some(timers) = inst.cfg.bfd else {
                continue;
            };
            let family = if inst.key.family == vigil_common::event::FAMILY_V4 {
                Family::V4
            } else {
                Family::V6
            };
            let key = (inst.iface.name.clone(), family);
            let mdi = self
                .endpoint
                .router(&inst.key)
                .map_or(Duration::ZERO, |r| r.master_down_interval());
            let linger = mdi + detection(timers);
            if inst.cfg.unicast_peers.is_empty() {
                open.insert(key.clone());
            }
            let l = listening.entry(key).or_insert_with(|| Listening {
                timers,
                linger,
                only: Some(BTreeSet::new()),
            });
            if (timers.interval, timers.multiplier) < (l.timers.interval, l.timers.multiplier) {
                l.timers = timers;
            }
            l.linger = l.linger.max(linger);
            if let Some(only) = &mut l.only {
                only.extend(inst.cfg.unicast_peers.iter().copied());
            }
        }
        for key in open {
            if let Some(l) = listening.get_mut(&key) {
                l.only = None;
            }
        }
        service.set_listening(listening);
    }

    /// The configuration's BFD settings for the BFD task (at start and on reload): the
    /// caps and the `[bfd.NAME]` sessions. Starts the task when BFD is configured for
    /// the first time.
    pub(super) fn bfd_configure(&mut self, config: &Config) {
        if self.bfd.is_none() && wanted(config) {
            let service = BfdService::start(
                self.bfd_events.clone(),
                self.config.global.realtime_priority,
            );
            // With the XDP program, the kernel receives the sessions' packets.
            if let Some(maps) = self.receiver.take_bfd_maps() {
                service.kernel(maps);
            }
            self.bfd = Some(service);
        }
        let Some(service) = &self.bfd else {
            return;
        };
        service.set_limits(Limits {
            total: config.global.bfd_max_sessions,
            per_interface: config.global.bfd_max_sessions_per_interface,
        });
        service.set_named(
            config
                .bfd
                .iter()
                .map(|(name, s)| SessionSpec {
                    name: name.clone(),
                    interface: s.interface.clone(),
                    peer: s.neighbor,
                    source: s.source,
                    timers: s.timers,
                })
                .collect(),
        );
    }

    /// A BFD session changed: tracking, and when it left Up, the endpoint's takeover
    /// check for the instances on its interface.
    pub(super) fn bfd_event(&mut self, event: BfdEvent) {
        self.status_stale = true;
        if self
            .tracker
            .bfd(&event.name, event.transition.to == BfdState::Up)
        {
            self.retrack();
        }
        match judge::judge(&event) {
            Judgement::StillUp | Judgement::NotUp => return,
            Judgement::Administrative => {
                tracing::info!(peer = %event.peer, iface = %event.interface, "BFD session taken down administratively; not a failure");
                return;
            }
            Judgement::PeerSpoke => {
                tracing::info!(peer = %event.peer, iface = %event.interface, "BFD session down ({}) but the peer is heard; not a takeover", event.transition.diag);
                return;
            }
            Judgement::Silent => {}
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

    /// Once a second: peers learned from adverts that went silent are let go.
    pub(super) fn bfd_sweep(&mut self) {
        self.endpoint.expire_bfd_peers(crate::clock::now());
    }
}

/// Whether the configuration asks for BFD anywhere.
pub(super) fn wanted(config: &Config) -> bool {
    !config.bfd.is_empty() || config.instances.values().any(|i| i.bfd.is_some())
}
