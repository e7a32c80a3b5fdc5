//! Instances that cannot run yet, and the ones whose interface or advert source address
//! went away: they wait in FAULT and start when their interface (with an address to send
//! from) is there, and the datapath follows them onto interfaces it was not on.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

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
    /// come back (a recreated VLAN or veth has a new index). An instance whose virtual
    /// MAC interface someone deleted does the same, and makes it again as it starts:
    /// without it, it could neither hold its addresses nor advertise.
    pub(super) async fn park_instances_on(&mut self, index: u32, name: &str) {
        let gone: Vec<(String, bool)> = self
            .instances
            .values()
            .filter(|i| i.runs_on(index))
            .map(|i| (i.name.clone(), i.is_vmac(index)))
            .collect();
        // The addresses went with the interface: nothing to remove (and no error for
        // failing to) when the elections' FAULT asks for their removal.
        for (n, _) in &gone {
            if let Some(inst) = self.instances.get(n) {
                inst.forget_addresses_on(index, &mut self.owned);
            }
        }
        // What the elections asked for on the link going down (FAULT, notify_fault).
        self.run_actions().await;
        for (n, vmac) in gone {
            let (reason, wait) = if vmac {
                (
                    format!("virtual MAC interface {name} was removed"),
                    "waiting in FAULT to make it again",
                )
            } else {
                (
                    format!("interface {name} was removed"),
                    "waiting in FAULT for it to come back",
                )
            };
            self.park(&n, reason, wait, Some(index)).await;
        }
        self.bfd_listening();
    }

    /// Instances whose advert source address left their interface (`ip addr flush`,
    /// `ip addr del`, a lease that ran out): they cannot advertise, so a Master among
    /// them would keep its virtual addresses while its Backups, hearing nothing, take
    /// them too. They go to FAULT (addresses released, notify_fault) and wait, as at
    /// start, for an address to send from, as keepalived does.
    pub(super) async fn park_instances_without_source(&mut self) {
        let mut seen: HashMap<u32, Vec<IpAddr>> = HashMap::new();
        let mut lost = Vec::new();
        // A configured `unicast_src_ip` may live on another interface (a loopback): it is
        // the operator's, and never looked up on the instance's own.
        for inst in self
            .instances
            .values()
            .filter(|i| i.cfg.unicast_src_ip.is_none())
        {
            let index = inst.iface.index;
            if let Entry::Vacant(slot) = seen.entry(index) {
                match self.netlink.addresses(&inst.iface).await {
                    Ok(list) => {
                        slot.insert(list.iter().map(|a| a.addr).collect());
                    }
                    // A vanished interface is the link monitor's to handle.
                    Err(_) => continue,
                }
            }
            if !seen.get(&index).is_some_and(|l| l.contains(&inst.primary)) {
                lost.push((
                    inst.name.clone(),
                    inst.key,
                    inst.primary,
                    inst.iface.name.clone(),
                ));
            }
        }
        if lost.is_empty() {
            return;
        }
        let now = clock::now();
        let lost: Vec<(String, String)> = lost
            .into_iter()
            .map(|(name, key, addr, iface)| {
                let reason = format!("advert source {addr} left {iface}");
                self.endpoint.handle(
                    now,
                    EndpointInput::Fault {
                        key,
                        reason: reason.clone(),
                    },
                );
                (name, reason)
            })
            .collect();
        self.run_actions().await;
        for (name, reason) in lost {
            self.park(
                &name,
                reason,
                "waiting in FAULT for an address to send from",
                None,
            )
            .await;
        }
        self.bfd_listening();
    }

    /// Takes a running instance out of the election and makes it wait in FAULT;
    /// `gone_index` is an interface that no longer exists, whose addresses went with it.
    async fn park(&mut self, name: &str, reason: String, wait: &str, gone_index: Option<u32>) {
        self.bfd_disable(name);
        let Some(mut inst) = self.instances.remove(name) else {
            return;
        };
        if let Some(index) = gone_index {
            inst.vmac_deleted(index);
            inst.forget_addresses_on(index, &mut self.owned);
        }
        inst.close(&self.netlink).await;
        self.adverts.forget(&inst.key).await;
        self.by_key.remove(&inst.key);
        self.endpoint.remove(&inst.key);
        self.receiver.unwatch(inst.key);
        tracing::warn!(instance = %name, "{reason}; {wait}");
        self.status_stale = true;
        self.waiting.insert(
            name.to_owned(),
            Waiting {
                cfg: inst.cfg.clone(),
                reason,
            },
        );
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
