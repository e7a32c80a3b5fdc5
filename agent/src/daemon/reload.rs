//! Reloads (SIGHUP, `vigil reload`): read and validate off the agent's task, then apply
//! the difference — in place where the running election can take it.

use std::path::Path;

use tokio::sync::mpsc;

use super::Agent;
use super::instance::{Instance, router_config};
use super::waiting::Waiting;
use crate::clock;
use crate::config::{self, Config};
use crate::vrrp::State;
use crate::vrrp::endpoint::EndpointInput;

/// A reload to apply: its sequence number, the file as read, and who asked for an answer.
pub(super) type LoadedConfig = (
    u64,
    Result<Config, config::ConfigError>,
    Option<tokio::sync::oneshot::Sender<serde_json::Value>>,
);

/// A virtual or excluded address as the configuration names it: address and prefix.
pub(super) type AddressKey = (std::net::IpAddr, u8);

/// Reads and validates the file off the agent's task, so adverts and timers keep their
/// pace during a reload; only the diff runs on it. systemd hears RELOADING=1 now and
/// READY=1 once the newest reload is applied or rejected.
pub(super) fn start_reload(
    path: &Path,
    tx: &mpsc::Sender<LoadedConfig>,
    generation: u64,
    reply: Option<tokio::sync::oneshot::Sender<serde_json::Value>>,
) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
    let (path, tx) = (path.to_owned(), tx.clone());
    tokio::task::spawn_blocking(move || {
        let _ = tx.blocking_send((generation, config::load(&path), reply));
    });
}

impl Agent {
    /// Addresses that stay on the node through a reload: the new configuration of an
    /// instance that is Master now and keeps running (unchanged or changed in place)
    /// lists them. An instance giving one of them up, in place or stopping, leaves it
    /// where it is for the one taking it, whose record it then is: removing it, even
    /// just before the other adds it, would leave it held by nobody for that moment.
    fn staying_addresses(&self, new: &Config) -> std::collections::HashSet<AddressKey> {
        self.instances
            .iter()
            .filter(|(_, i)| {
                self.endpoint
                    .router(&i.key)
                    .is_some_and(|r| r.state() == State::Master)
            })
            .filter_map(|(name, i)| {
                new.instances
                    .get(name)
                    .filter(|c| **c == i.cfg || changes_in_place(&i.cfg, c))
            })
            .flat_map(|c| c.virtual_addresses.iter().chain(&c.excluded_addresses))
            .map(|v| (v.addr, v.prefix_len))
            .collect()
    }

    /// A reload (SIGHUP, `vigil reload`): unchanged instances keep state, timers and
    /// addresses; changed ones are rebuilt; removed ones release; new ones start in
    /// Backup. A bad file changes nothing. Returns what happened, for `vigil reload`.
    pub(super) async fn reload(
        &mut self,
        loaded: Result<Config, config::ConfigError>,
    ) -> serde_json::Value {
        let started = std::time::Instant::now();
        let new = match loaded {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload rejected, running configuration kept:\n{e}");
                self.last_reload = Some((false, std::time::SystemTime::now()));
                return serde_json::json!({
                    "applied": false,
                    "config": self.path.display().to_string(),
                    "error": e.to_string(),
                });
            }
        };
        let mut warnings = Vec::new();
        let removed: Vec<String> = self
            .instances
            .keys()
            .filter(|n| !new.instances.contains_key(*n))
            .cloned()
            .collect();
        let changed: Vec<String> = self
            .instances
            .iter()
            .filter(|(n, i)| new.instances.get(*n).is_some_and(|c| *c != i.cfg))
            .map(|(n, _)| n.clone())
            .collect();
        let unchanged: Vec<String> = self
            .instances
            .iter()
            .filter(|(n, i)| new.instances.get(*n) == Some(&i.cfg))
            .map(|(n, _)| n.clone())
            .collect();
        let added_names: Vec<String> = new
            .instances
            .keys()
            .filter(|n| !self.instances.contains_key(*n))
            .cloned()
            .collect();
        // Scripts and files first: unchanged ones keep their task and standing, so the
        // verdicts of unchanged instances stay as they are.
        self.tracker.configure(&new);
        // The BFD task first (started now if BFD is new), so instances find it.
        self.bfd_configure(&new);
        if without_bfd(&new.global) != without_bfd(&self.config.global) {
            tracing::warn!("reload: [global] changes take effect at the next restart");
            warnings.push("[global] changes take effect at the next restart".to_owned());
        }
        let now = clock::now();
        let staying = self.staying_addresses(&new);
        let mut stop = Vec::new();
        let mut in_place = Vec::new();
        // Masters with new addresses, added once every address that leaves its
        // instance (in place or with a stopped one) is gone.
        let mut claim = Vec::new();
        let user = new.global.script_user.as_deref();
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for name in names {
            let Some(cfg) = new.instances.get(&name) else {
                stop.push(name);
                continue;
            };
            let Some(inst) = self.instances.get_mut(&name) else {
                continue;
            };
            if *cfg == inst.cfg {
                continue;
            }
            if !changes_in_place(&inst.cfg, cfg) {
                if inst.cfg.vmac != cfg.vmac {
                    // The virtual MAC interface holds the addresses and sends the adverts:
                    // making or removing it means a new instance.
                    let text = format!(
                        "instance {name}: use_vmac changed; the instance restarts (a Master                          leaves with a priority-0 advert and starts again as Backup)"
                    );
                    tracing::warn!("reload: {text}");
                    warnings.push(text);
                }
                stop.push(name);
                continue;
            }
            // The running election takes the new settings as inputs, not as a new
            // router: no priority-0 advert, no transition unless the new settings make
            // the election choose differently (RFC 5798 §6.4.3: a Master hears a better
            // peer; a Backup with preempt takes over from a worse one).
            let key = inst.key;
            let holding = self
                .endpoint
                .router(&key)
                .is_some_and(|r| r.state() == State::Master);
            if inst.cfg.virtual_addresses != cfg.virtual_addresses {
                match inst
                    .readdress(cfg, holding, &self.netlink, &mut self.owned, &staying)
                    .await
                {
                    Ok(true) => claim.push(name.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(instance = %name, "reload: new addresses: {e:#}; restarting it");
                        stop.push(name);
                        continue;
                    }
                }
            }
            if (inst.cfg.excluded_addresses != cfg.excluded_addresses
                || inst.cfg.virtual_routes != cfg.virtual_routes
                || inst.cfg.virtual_rules != cfg.virtual_rules)
                && let Err(e) = inst
                    .reroute(cfg, holding, &self.netlink, &mut self.owned)
                    .await
            {
                tracing::warn!(instance = %name, "reload: new excluded addresses, routes or rules: {e:#}; restarting it");
                stop.push(name);
                continue;
            }
            if notify_of(&inst.cfg) != notify_of(cfg) {
                // Scripts already queued under the old settings still run.
                let _ = inst.notifier.close();
                inst.notifier = crate::notify::Notifier::new(&name, cfg, user);
            }
            let bfd_change = (inst.cfg.bfd != cfg.bfd).then_some((inst.cfg.bfd, cfg.bfd));
            inst.cfg = cfg.clone();
            self.adverts.reencode(&key);
            super::publish_down_params(&mut self.receiver, &mut self.endpoint, inst);
            // The router keeps the offset tracking gave; retrack (below) hands in the
            // new effective priority if the new weights change it.
            self.endpoint.handle(
                now,
                EndpointInput::Reconfigure {
                    key,
                    config: router_config(cfg),
                },
            );
            // BFD follows in place too: sessions take new timers with a Poll Sequence
            // (RFC 5880 §6.8.3) and stay Up; the election does not restart.
            match bfd_change {
                Some((None, Some(_))) => self.bfd_enable(&name),
                Some((Some(_), None)) => self.bfd_disable(&name),
                Some((Some(_), Some(timers))) => self.bfd_retime(&name, timers),
                _ => {}
            }
            tracing::info!(instance = %name, "reload: changed in place");
            in_place.push(name);
        }
        for name in &stop {
            if let Some(inst) = self.instances.get_mut(name) {
                inst.leave_addresses(&staying);
                let key = inst.key;
                self.endpoint.handle(now, EndpointInput::Shutdown { key });
            }
        }
        self.run_actions().await;
        for name in &stop {
            self.bfd_disable(name);
            if let Some(mut inst) = self.instances.remove(name) {
                inst.close(&self.netlink).await;
                self.adverts.forget(&inst.key).await;
                self.by_key.remove(&inst.key);
                self.endpoint.remove(&inst.key);
                self.receiver.unwatch(inst.key);
                tracing::info!(instance = %name, "reload: instance stopped");
                // Closing its packet sockets waits for an RCU grace period, 10 ms and
                // more on a busy host: not on the loop, whose other Masters' adverts
                // are due meanwhile.
                tokio::task::spawn_blocking(move || drop(inst));
            }
        }
        for name in &claim {
            if let Some(inst) = self.instances.get_mut(name) {
                inst.claim_addresses(&self.netlink, &mut self.owned).await;
            }
        }
        // Waiting instances take the new file's settings, or go with it.
        self.waiting
            .retain(|name, _| new.instances.contains_key(name));
        for (name, w) in self.waiting.iter_mut() {
            if let Some(cfg) = new.instances.get(name) {
                w.cfg = cfg.clone();
            }
        }
        let mut added = 0;
        for (name, cfg) in &new.instances {
            if self.instances.contains_key(name) || self.waiting.contains_key(name) {
                continue;
            }
            let user = new.global.script_user.as_deref();
            let made = Instance::new(name, cfg, user, &self.netlink, &mut self.senders).await;
            match made {
                Ok(inst) => match self.begin(inst).await {
                    Ok(()) => added += 1,
                    Err(e) => {
                        tracing::error!("reload: {e:#}");
                        warnings.push(format!("{e:#}"));
                    }
                },
                Err(e) => {
                    let reason = format!("{e:#}");
                    tracing::warn!(instance = %name, "reload: waiting in FAULT until it can start: {reason}");
                    warnings.push(format!("instance {name} waits: {reason}"));
                    self.waiting.insert(
                        name.clone(),
                        Waiting {
                            cfg: cfg.clone(),
                            reason,
                        },
                    );
                }
            }
        }
        // A new instance may be on an interface the datapath is not on yet: without the
        // XDP program (or a raw socket) and the multicast membership there it would hear
        // nothing and make itself Master.
        self.refresh_datapath(added > 0 || !stop.is_empty());
        let kept = self.instances.len() - added;
        self.bfd_listening();
        self.config = new;
        self.groups.configure(&self.config);
        self.retrack();
        tracing::info!(
            kept,
            restarted_or_added = added,
            removed_or_restarted = stop.len(),
            applied_in_us = started.elapsed().as_micros() as u64,
            "reloaded"
        );
        self.last_reload = Some((true, std::time::SystemTime::now()));
        self.status_stale = true;
        serde_json::json!({
            "applied": true,
            "config": self.path.display().to_string(),
            "changed": changed,
            "changed_in_place": in_place,
            "added": added_names,
            "removed": removed,
            "unchanged": unchanged,
            "warnings": warnings,
            "applied_in_us": started.elapsed().as_micros() as u64,
        })
    }
}

/// Whether the differences between `old` and `new` are all ones the running router
/// and its instance take without restarting: priority, advert interval, preemption,
/// `down_timer_adverts`, authentication, the checksum style, the virtual addresses (in
/// the same family), the excluded addresses, virtual routes and rules (a Master adds
/// and removes the difference), tracking (processes included), notify scripts and the
/// initial state (used only at start). The interface, VRID, version, unicast setup,
/// accept mode, GARP timing and `use_vmac` make another router.
fn changes_in_place(old: &config::Instance, new: &config::Instance) -> bool {
    if old.family() != new.family() {
        return false;
    }
    let mut same = new.clone();
    same.priority = old.priority;
    same.advert_interval = old.advert_interval;
    same.preempt = old.preempt;
    same.preempt_delay = old.preempt_delay;
    same.down_timer_adverts = old.down_timer_adverts;
    same.auth_pass.clone_from(&old.auth_pass);
    same.v3_checksum_as_v2 = old.v3_checksum_as_v2;
    same.virtual_addresses.clone_from(&old.virtual_addresses);
    same.initial_state = old.initial_state;
    same.track_scripts.clone_from(&old.track_scripts);
    same.track_interfaces.clone_from(&old.track_interfaces);
    same.track_files.clone_from(&old.track_files);
    same.track_processes.clone_from(&old.track_processes);
    same.excluded_addresses.clone_from(&old.excluded_addresses);
    same.virtual_routes.clone_from(&old.virtual_routes);
    same.virtual_rules.clone_from(&old.virtual_rules);
    same.notify_master.clone_from(&old.notify_master);
    same.notify_backup.clone_from(&old.notify_backup);
    same.notify_fault.clone_from(&old.notify_fault);
    same.notify_stop.clone_from(&old.notify_stop);
    same.notify.clone_from(&old.notify);
    same.bfd = old.bfd;
    same.track_bfd.clone_from(&old.track_bfd);
    same == *old
}

/// `[global]` without the BFD keys, which reloads apply in place.
fn without_bfd(g: &config::Global) -> config::Global {
    let mut g = g.clone();
    g.bfd = None;
    g.bfd_max_sessions = 0;
    g.bfd_max_sessions_per_interface = 0;
    g
}

/// The notify scripts of an instance, to tell whether its queue needs rebuilding.
fn notify_of(c: &config::Instance) -> [&Option<String>; 5] {
    [
        &c.notify_master,
        &c.notify_backup,
        &c.notify_fault,
        &c.notify_stop,
        &c.notify,
    ]
}
