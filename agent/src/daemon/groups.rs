//! Sync groups at run time: after every input, the group rules (`vrrp::sync`) are applied
//! to the members' elections until nothing changes, and each group's own state change
//! runs its notify scripts.

use std::collections::BTreeMap;

use super::apply_verdict;
use super::instance::Instance;
use super::receive::Receiver;
use crate::config;
use crate::notify::Notifier;
use crate::vrrp::endpoint::Endpoint;
use crate::vrrp::sync::{self, Member};
use crate::vrrp::{Instant, State};

/// One sync group at run time.
pub struct Group {
    /// Its configuration.
    pub cfg: config::SyncGroup,
    /// Its state as last reported (keepalived's group state).
    pub state: State,
    /// Why its members are held out of Master, if they are.
    pub hold: Option<String>,
    notifier: Notifier,
}

/// Every sync group, by name.
#[derive(Default)]
pub struct Groups {
    groups: BTreeMap<String, Group>,
}

/// Rounds of rule application per input; each round can only move members towards
/// Fault or Backup, or release them once, so two settle every group.
const MAX_ROUNDS: usize = 4;

impl Groups {
    /// The groups of `config`, keeping the state of those whose configuration did not
    /// change.
    pub fn configure(&mut self, config: &config::Config) {
        let user = config.global.script_user.as_deref();
        let mut old = std::mem::take(&mut self.groups);
        for (name, cfg) in &config.sync_groups {
            let g = match old.remove(name) {
                Some(g) if g.cfg == *cfg => g,
                _ => Group {
                    cfg: cfg.clone(),
                    state: State::Initialize,
                    hold: None,
                    notifier: Notifier::for_group(name, cfg, user),
                },
            };
            self.groups.insert(name.clone(), g);
        }
    }

    /// Applies the group rules to the members until they settle.
    pub fn apply(
        &mut self,
        endpoint: &mut Endpoint,
        receiver: &Receiver,
        instances: &mut BTreeMap<String, Instance>,
        now: Instant,
    ) {
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for (name, g) in &mut self.groups {
                let keyed = keyed_members(&g.cfg, instances, endpoint);
                let (d, told) = sync::enforce(name, endpoint, &keyed, now);
                changed |= told;
                for ((_, m), forced) in keyed.iter().zip(d.forced_fault.clone()) {
                    let Some(inst) = instances.get_mut(&m.name) else {
                        continue;
                    };
                    if inst.sync_fault != forced {
                        inst.sync_fault = forced;
                        let own = inst.own.clone();
                        apply_verdict(endpoint, receiver, inst, own, now);
                        changed = true;
                    }
                }
                g.hold = d.hold;
            }
            if !changed {
                break;
            }
        }
        for (name, g) in &mut self.groups {
            let state = sync::group_state(&members(&g.cfg, instances, endpoint));
            if state != g.state {
                tracing::info!(group = %name, "sync group {} -> {}", g.state, state);
                g.state = state;
                // keepalived passes priority 0 for a group.
                g.notifier.state(state, 0);
            }
        }
    }

    /// The group an instance is in, if any.
    pub fn group_of(&self, instance: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|(_, g)| g.cfg.instances.iter().any(|i| i == instance))
            .map(|(n, _)| n.as_str())
    }

    /// The other members of the group `instance` is in, if it is in one.
    pub fn members_with(&self, instance: &str) -> Option<Vec<String>> {
        let g = self
            .groups
            .values()
            .find(|g| g.cfg.instances.iter().any(|i| i == instance))?;
        Some(
            g.cfg
                .instances
                .iter()
                .filter(|i| *i != instance)
                .cloned()
                .collect(),
        )
    }

    /// Status of every group, for `vigil status`.
    pub fn status(
        &self,
        instances: &BTreeMap<String, Instance>,
        endpoint: &Endpoint,
    ) -> serde_json::Value {
        serde_json::Value::Array(
            self.groups
                .iter()
                .map(|(name, g)| {
                    serde_json::json!({
                        "group": name,
                        "state": g.state.to_string(),
                        "held": g.hold,
                        "instances": g.cfg.instances.iter().map(|m| serde_json::json!({
                            "instance": m,
                            "state": instances
                                .get(m)
                                .and_then(|i| endpoint.router(&i.key))
                                .map(|r| r.state().to_string()),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }

    /// Queues the groups' stop scripts and closes their queues.
    pub fn close(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        self.groups
            .values_mut()
            .filter_map(|g| {
                if g.state != State::Initialize {
                    g.notifier.state(State::Initialize, 0);
                }
                g.notifier.close()
            })
            .collect()
    }
}

fn keyed_members(
    cfg: &config::SyncGroup,
    instances: &BTreeMap<String, Instance>,
    endpoint: &Endpoint,
) -> Vec<(vigil_common::VridKey, Member)> {
    cfg.instances
        .iter()
        .filter_map(|name| {
            let i = instances.get(name)?;
            let m = sync::member(endpoint, name, i.key, i.own.fault.clone(), &i.iface.name)?;
            Some((i.key, m))
        })
        .collect()
}

fn members(
    cfg: &config::SyncGroup,
    instances: &BTreeMap<String, Instance>,
    endpoint: &Endpoint,
) -> Vec<Member> {
    keyed_members(cfg, instances, endpoint)
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}
