//! Instances that cannot run yet, and the ones whose interface went away: they wait in
//! FAULT and start when their interface (with an address to send from) is there, and the
//! datapath follows them onto interfaces it was not on.

use std::collections::BTreeMap;

use super::instance::{Instance, router_config};
use super::receive::Receiver;
use super::{Agent, apply_verdict, datapath_plan};
use crate::clock;
use crate::config;
use crate::vrrp::endpoint::EndpointInput;

/// An instance that cannot run yet: its interface is missing or went away, or has no
/// address to send adverts from yet (an IPv6 link-local still in duplicate address
/// detection). It counts as FAULT and is tried again on every link change and every
/// housekeeping tick, as keepalived's dynamic interfaces are.
pub(super) struct Waiting {
    pub(super) cfg: config::Instance,
    pub(super) reason: String,
}

impl Agent {
    /// An interface was deleted: its instances finish what the election asked (FAULT,
    /// notify_fault), lose their sockets and wait for an interface of that name to
    /// come back (a recreated VLAN or veth has a new index).
    pub(super) async fn park_instances_on(&mut self, index: u32, name: &str) {
        let gone: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.iface.index == index)
            .map(|i| i.name.clone())
            .collect();
        // What the elections asked for on the link going down (FAULT, notify_fault).
        self.run_actions().await;
        for n in gone {
            self.bfd_disable(&n);
            let Some(mut inst) = self.instances.remove(&n) else {
                continue;
            };
            inst.close(&self.netlink).await;
            inst.forget_addresses_on(index, &mut self.owned);
            self.adverts.forget(&inst.key).await;
            self.by_key.remove(&inst.key);
            self.endpoint.remove(&inst.key);
            self.receiver.unwatch(inst.key);
            let reason = format!("interface {name} was removed");
            tracing::warn!(instance = %n, "{reason}; waiting in FAULT for it to come back");
            self.status_stale = true;
            self.waiting.insert(
                n,
                Waiting {
                    cfg: inst.cfg.clone(),
                    reason,
                },
            );
        }
        self.bfd_listening();
    }

    /// Tries to start every waiting instance; starts those that can, attaching the
    /// datapath to interfaces it was not on.
    pub(super) async fn start_waiting(&mut self) {
        let names: Vec<String> = self.waiting.keys().cloned().collect();
        let mut started = 0;
        for name in names {
            let Some(w) = self.waiting.get(&name) else {
                continue;
            };
            let cfg = w.cfg.clone();
            let user = self.config.global.script_user.as_deref();
            let made = Instance::new(&name, &cfg, user, &self.netlink, &mut self.senders).await;
            match made {
                Ok(inst) => {
                    tracing::info!(instance = %name, iface = %inst.iface.name, "can start now");
                    self.waiting.remove(&name);
                    match self.begin(inst).await {
                        Ok(()) => started += 1,
                        Err(e) => tracing::error!("{e:#}"),
                    }
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    if let Some(w) = self.waiting.get_mut(&name)
                        && w.reason != reason
                    {
                        tracing::info!(instance = %name, "still waiting: {reason}");
                        w.reason = reason;
                    }
                }
            }
        }
        if started > 0 {
            self.refresh_datapath(true);
        }
    }

    /// Gives an instance its election in the endpoint and starts it; the endpoint's
    /// first watch entry reaches the XDP map before the router starts.
    pub(super) async fn begin(&mut self, mut inst: Instance) -> anyhow::Result<()> {
        self.endpoint
            .add(
                inst.key,
                router_config(&inst.cfg),
                inst.primary,
                inst.unicast(),
            )
            .map_err(|e| anyhow::anyhow!("instance {}: {e}", inst.name))?;
        self.run_actions().await;
        super::publish_down_params(&mut self.receiver, &mut self.endpoint, &inst);
        let now = clock::now();
        let verdict = self.tracker.evaluate(&inst.cfg);
        apply_verdict(&mut self.endpoint, &self.receiver, &mut inst, verdict, now);
        let key = inst.key;
        // The link state first (see `run`).
        if let Ok(l) = self.netlink.link(inst.iface.index).await
            && !l.is_up()
        {
            self.endpoint.handle(now, EndpointInput::LinkDown { key });
        }
        self.endpoint.handle(now, EndpointInput::Startup { key });
        self.by_key.insert(inst.key, inst.name.clone());
        let name = inst.name.clone();
        self.instances.insert(name.clone(), inst);
        self.bfd_enable(&name);
        self.status_stale = true;
        Ok(())
    }

    /// Makes the datapath cover every running instance's interface: XDP attaches to new
    /// ones (and joins the VRRP group there); the raw path is rebuilt when `changed`.
    pub(super) fn refresh_datapath(&mut self, changed: bool) {
        self.status_stale = true;
        if self.receiver.is_xdp() {
            let ifaces: BTreeMap<u32, String> = self
                .instances
                .values()
                .map(|i| (i.iface.index, i.iface.name.clone()))
                .collect();
            for (index, name) in ifaces {
                if let Err(e) = self.receiver.ensure_interface(index, &name) {
                    tracing::error!(iface = %name, "cannot attach the datapath: {e:#}");
                }
            }
        } else if changed {
            let (ifaces, watch) = datapath_plan(&self.instances, &self.endpoint);
            match Receiver::start(&self.config.global, &ifaces, &watch, None) {
                Ok(r) => self.receiver = r,
                Err(e) => tracing::error!("raw receive path: {e:#}"),
            }
        }
    }
}
