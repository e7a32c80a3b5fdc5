//! One configured VRRP instance at run time: its election, its sockets, its addresses,
//! and the execution of what the election asks for.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use vigil_common::VridKey;

use super::owned::{OwnedAddress, OwnedAddresses};
use super::split::SplitBrain;
use crate::config;
use crate::datapath::transmit::AdvertSender;
use crate::net::announce::{AnnounceSchedule, AnnounceTiming, Announcer, run_announcements};
use crate::net::{Interface, Netlink, VirtualAddress};
use crate::notify::Notifier;
use crate::track::Verdict;
use crate::vrrp::endpoint::key_of;
use crate::vrrp::{
    Action, Advertisement, Auth, ChecksumMode, InitialState, Instant, RouterConfig, State,
    Transition, Version, VirtualRouter,
};

/// A virtual address with the interface it lives on.
#[derive(Clone, Debug)]
pub struct Vip {
    /// Interface (the instance's, or the address's own `dev`).
    pub iface: Interface,
    /// Address, prefix, label.
    pub addr: VirtualAddress,
}

impl Vip {
    fn owned(&self) -> OwnedAddress {
        OwnedAddress {
            interface: self.iface.name.clone(),
            addr: self.addr.addr,
            prefix_len: self.addr.prefix_len,
        }
    }
}

/// The configured virtual addresses with the interfaces they go on.
async fn resolve_vips(
    cfg: &config::Instance,
    iface: &Interface,
    netlink: &Netlink,
) -> anyhow::Result<Vec<Vip>> {
    let mut vips = Vec::new();
    for v in &cfg.virtual_addresses {
        let on = match &v.dev {
            Some(dev) if *dev != cfg.interface => netlink.interface(dev).await?,
            _ => iface.clone(),
        };
        let mut addr = VirtualAddress::new(v.addr, v.prefix_len);
        if let Some(l) = &v.label {
            addr = addr.with_label(l.clone());
        }
        vips.push(Vip { iface: on, addr });
    }
    Ok(vips)
}

/// An instance at run time: everything but its election, which the endpoint owns.
pub struct Instance {
    /// Name in the config.
    pub name: String,
    /// Its configuration (compared on reload).
    pub cfg: config::Instance,
    /// The interface it runs on.
    pub iface: Interface,
    /// Key of its election in the endpoint and of its XDP watch entry.
    pub key: VridKey,
    /// The address its adverts go out from.
    pub primary: IpAddr,
    sender: AdvertSender,
    vips: Vec<Vip>,
    announcer: Option<Arc<Announcer>>,
    timing: AnnounceTiming,
    announce: Option<JoinHandle<u64>>,
    /// Adverts sent.
    pub sent: u64,
    /// Transitions so far by (from, to, reason kind), for metrics.
    pub transition_counts: std::collections::BTreeMap<(State, State, &'static str), u64>,
    /// Its notify scripts' queue.
    pub notifier: Notifier,
    /// The tracking verdict last handed to the election.
    pub tracked: Verdict,
    /// Split-brain watch (while Master).
    pub split: SplitBrain,
    /// Virtual addresses found on the interface while Backup that vigil did not add,
    /// left alone (reported in status, warned once each).
    pub foreign_while_backup: Vec<IpAddr>,
    /// Virtual addresses vigil had added and removed again, found while Backup.
    pub removed_while_backup: u64,
}

/// The election's configuration of an instance.
pub fn router_config(cfg: &config::Instance) -> RouterConfig {
    let version = match cfg.version {
        config::Version::V2 => Version::V2,
        config::Version::V3 => Version::V3,
    };
    let addrs = cfg.virtual_addresses.iter().map(|v| v.addr).collect();
    let mut rc = RouterConfig::new(cfg.vrid, version, cfg.priority, addrs);
    rc.advert_interval = cfg.advert_interval;
    rc.preempt = cfg.preempt;
    rc.preempt_delay = cfg.preempt_delay;
    rc.down_timer_adverts = cfg.down_timer_adverts;
    rc.accept_mode = cfg.accept;
    rc.initial_state = match cfg.initial_state {
        config::InitialState::Master => InitialState::Master,
        config::InitialState::Backup => InitialState::Backup,
    };
    rc.auth = match &cfg.auth_pass {
        Some(p) => Auth::password(p.as_bytes()).unwrap_or(Auth::None),
        None => Auth::None,
    };
    rc.v3_checksum_as_v2 = cfg.v3_checksum_as_v2;
    rc
}

impl Instance {
    /// Resolves interfaces and addresses and opens the transmit socket.
    pub async fn new(
        name: &str,
        cfg: &config::Instance,
        garp: &config::Garp,
        script_user: Option<&str>,
        netlink: &Netlink,
    ) -> anyhow::Result<Self> {
        let iface = netlink.interface(&cfg.interface).await?;
        let vips = resolve_vips(cfg, &iface, netlink).await?;
        let v6 = cfg
            .virtual_addresses
            .first()
            .is_some_and(|v| v.addr.is_ipv6());
        let vip_addrs: Vec<IpAddr> = vips.iter().map(|v| v.addr.addr).collect();
        let (primary, sender) = if v6 {
            let ll = netlink.ipv6_link_local(&iface).await?.ok_or_else(|| {
                anyhow::anyhow!("{}: no usable IPv6 link-local address", iface.name)
            })?;
            (IpAddr::V6(ll), AdvertSender::ipv6(&iface, ll)?)
        } else {
            let src = match cfg.unicast_src_ip {
                Some(IpAddr::V4(a)) => a,
                _ => {
                    let exclude: Vec<std::net::Ipv4Addr> = vip_addrs
                        .iter()
                        .filter_map(|a| match a {
                            IpAddr::V4(v) => Some(*v),
                            IpAddr::V6(_) => None,
                        })
                        .collect();
                    netlink.primary_ipv4(&iface, &exclude).await?.ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}: no IPv4 address to send adverts from (add one, or set unicast_src_ip)",
                            iface.name
                        )
                    })?
                }
            };
            (IpAddr::V4(src), AdvertSender::ipv4(&iface, src)?)
        };
        let announcer = match netlink.link(iface.index).await.ok().and_then(|l| l.mac) {
            Some(mac) => match Announcer::new(&iface, mac, None) {
                Ok(a) => Some(Arc::new(a)),
                Err(e) => {
                    tracing::warn!(instance = name, "no gratuitous ARP/NA: {e}");
                    None
                }
            },
            None => None,
        };
        let g = if *garp == config::Garp::default() {
            &cfg.garp
        } else {
            garp
        };
        let timing = AnnounceTiming {
            delay: g.master_delay,
            repeat: g.master_repeat,
            refresh: g.master_refresh.unwrap_or_default(),
            refresh_repeat: g.master_refresh_repeat,
            ..AnnounceTiming::default()
        };
        if cfg.is_address_owner()
            && (cfg.track_scripts.iter().any(|t| t.weight != 0)
                || cfg.track_interfaces.iter().any(|t| t.weight != 0)
                || cfg.track_files.iter().any(|t| t.weight != 0))
        {
            // keepalived does the same: an owner's priority never moves.
            tracing::warn!(
                instance = name,
                "priority 255 (address owner): tracking weights are ignored, a tracked failure means FAULT"
            );
        }
        let rc = router_config(cfg);
        rc.validate(primary)
            .map_err(|e| anyhow::anyhow!("instance {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            cfg: cfg.clone(),
            key: key_of(iface.index, primary, cfg.vrid),
            primary,
            iface,
            sender,
            vips,
            announcer,
            timing,
            announce: None,
            sent: 0,
            transition_counts: std::collections::BTreeMap::new(),
            notifier: Notifier::new(name, cfg, script_user),
            tracked: Verdict::untracked(cfg),
            split: SplitBrain::default(),
            foreign_while_backup: Vec::new(),
            removed_while_backup: 0,
        })
    }

    /// Whether its adverts go to unicast peers.
    pub fn unicast(&self) -> bool {
        !self.cfg.unicast_peers.is_empty()
    }

    /// Executes one action of its election (`router`, read only); returns the
    /// transition, if it was one.
    pub async fn execute(
        &mut self,
        action: Action,
        router: &VirtualRouter,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
    ) -> Option<Transition> {
        match action {
            Action::StateChanged(t) => {
                tracing::info!(
                    instance = %self.name,
                    vrid = self.cfg.vrid,
                    "{} -> {}: {}",
                    t.from,
                    t.to,
                    t.reason
                );
                *self
                    .transition_counts
                    .entry((t.from, t.to, t.reason.kind()))
                    .or_insert(0) += 1;
                if t.to != State::Master
                    && let Some(task) = self.announce.take()
                {
                    task.abort();
                }
                if t.from == State::Master {
                    self.split
                        .expire(&self.name, t.at, false, self.cfg.advert_interval);
                }
                self.notifier.state(t.to, router.priority());
                return Some(t);
            }
            Action::SendAdvert { priority } => {
                let advert = router.advertisement(priority);
                self.send_advert(advert, router.config().checksum_mode())
                    .await
            }
            Action::AddAddresses => self.add_addresses(netlink, owned).await,
            Action::RemoveAddresses => self.remove_addresses(netlink, owned).await,
            Action::Announce => self.announce(),
        }
        None
    }

    /// A Master of priority `ours` heard a lower-priority router that believes itself
    /// Master.
    pub fn rival(
        &mut self,
        at: Instant,
        source: IpAddr,
        priority: u8,
        interval: std::time::Duration,
        ours: u8,
    ) {
        self.split.observe(
            &self.name,
            at,
            source,
            priority,
            interval,
            ours,
            self.cfg.advert_interval,
        );
    }

    async fn send_advert(&mut self, advert: Advertisement, mode: ChecksumMode) {
        let source = self.sender.source();
        let peers = self.cfg.unicast_peers.clone();
        let dests: Vec<IpAddr> = if peers.is_empty() {
            vec![self.sender.multicast_group()]
        } else {
            peers
        };
        for dest in dests {
            // The v3 checksum covers the destination, so each peer gets its own copy.
            match advert.encode(source, dest, mode) {
                Ok(bytes) => match self.sender.send_to(dest, &bytes).await {
                    Ok(()) => self.sent += 1,
                    Err(e) => tracing::warn!(instance = %self.name, "advert not sent: {e}"),
                },
                Err(e) => tracing::error!(instance = %self.name, "cannot encode advert: {e}"),
            }
        }
    }

    /// Takes a new list of virtual addresses on reload; a Master (`holding`) removes
    /// the ones dropped from the list, adds the new ones and announces them, and keeps
    /// the others where they are.
    pub async fn readdress(
        &mut self,
        cfg: &config::Instance,
        holding: bool,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
    ) -> anyhow::Result<()> {
        let new = resolve_vips(cfg, &self.iface, netlink).await?;
        let same = |a: &Vip, b: &Vip| a.iface.index == b.iface.index && a.addr == b.addr;
        let gone: Vec<Vip> = self
            .vips
            .iter()
            .filter(|o| !new.iter().any(|n| same(o, n)))
            .cloned()
            .collect();
        let fresh = new.iter().any(|n| !self.vips.iter().any(|o| same(o, n)));
        self.vips = new;
        if holding {
            for vip in gone {
                let o = vip.owned();
                if owned.contains(&o) {
                    match netlink.remove_address(&vip.iface, &vip.addr).await {
                        Ok(_) => owned.remove(&o),
                        Err(e) => {
                            tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr)
                        }
                    }
                }
            }
            if fresh {
                self.add_addresses(netlink, owned).await;
                self.announce();
            }
        }
        Ok(())
    }

    async fn add_addresses(&mut self, netlink: &Netlink, owned: &mut OwnedAddresses) {
        for vip in &self.vips {
            match netlink.add_address(&vip.iface, &vip.addr).await {
                Ok(true) => owned.insert(vip.owned()),
                Ok(false) if owned.contains(&vip.owned()) => {}
                Ok(false) => tracing::warn!(
                    instance = %self.name,
                    "{} is already on {} and was not added by vigil; it will be left alone",
                    vip.addr,
                    vip.iface.name
                ),
                Err(e) => tracing::error!(instance = %self.name, "adding {}: {e}", vip.addr),
            }
        }
    }

    async fn remove_addresses(&mut self, netlink: &Netlink, owned: &mut OwnedAddresses) {
        for vip in &self.vips {
            let o = vip.owned();
            if !owned.contains(&o) {
                continue;
            }
            match netlink.remove_address(&vip.iface, &vip.addr).await {
                Ok(_) => owned.remove(&o),
                Err(e) => tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr),
            }
        }
    }

    fn announce(&mut self) {
        let Some(announcer) = self.announcer.clone() else {
            return;
        };
        if let Some(task) = self.announce.take() {
            task.abort();
        }
        let addrs: Vec<IpAddr> = self.vips.iter().map(|v| v.addr.addr).collect();
        let schedule = AnnounceSchedule::new(self.timing, std::time::Instant::now());
        self.announce = Some(tokio::spawn(async move {
            run_announcements(&announcer, &addrs, schedule).await
        }));
    }

    /// The seed's split-brain check, while Backup or Fault: a virtual address on the
    /// interface. vigil removes it only if vigil added it (the record in `owned`, e.g. a
    /// removal that failed); an address someone else put there is left alone and warned
    /// about once. `seen` caches address lists per interface index for one round;
    /// `keep` lists addresses a local Master instance holds.
    pub async fn check_addresses(
        &mut self,
        state: State,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
        seen: &mut std::collections::HashMap<u32, Vec<IpAddr>>,
        keep: &[IpAddr],
    ) {
        if !matches!(state, State::Backup | State::Fault) {
            self.foreign_while_backup.clear();
            return;
        }
        let mut foreign = Vec::new();
        for vip in &self.vips {
            let index = vip.iface.index;
            if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(index) {
                match netlink.addresses(&vip.iface).await {
                    Ok(list) => {
                        slot.insert(list.iter().map(|a| a.addr).collect());
                    }
                    Err(e) => {
                        tracing::debug!(instance = %self.name, "address check: {e}");
                        continue;
                    }
                }
            }
            let present = seen.get(&index).is_some_and(|l| l.contains(&vip.addr.addr));
            if !present || keep.contains(&vip.addr.addr) {
                continue;
            }
            let o = vip.owned();
            if owned.contains(&o) {
                match netlink.remove_address(&vip.iface, &vip.addr).await {
                    Ok(_) => {
                        owned.remove(&o);
                        self.removed_while_backup += 1;
                        tracing::warn!(
                            instance = %self.name,
                            "removed {} from {}: vigil had added it and this node is {}",
                            vip.addr,
                            vip.iface.name,
                            state
                        );
                    }
                    Err(e) => tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr),
                }
            } else {
                if !self.foreign_while_backup.contains(&vip.addr.addr) {
                    tracing::warn!(
                        instance = %self.name,
                        "{} is on {} while this node is {}, and vigil did not add it: left alone \
                         (split brain? another agent or a person put it there)",
                        vip.addr,
                        vip.iface.name,
                        state
                    );
                }
                foreign.push(vip.addr.addr);
            }
        }
        self.foreign_while_backup = foreign;
    }

    /// At start, before the election: removes this instance's virtual addresses that
    /// carry vigil's kernel tag, left by an agent that did not exit cleanly and whose
    /// record file was lost or unreadable. Untagged ones (added by a person or another
    /// tool) stay.
    pub async fn remove_tagged(&self, netlink: &Netlink) {
        for vip in &self.vips {
            let Ok(list) = netlink.addresses(&vip.iface).await else {
                continue;
            };
            let tagged = list.iter().any(|a| {
                a.addr == vip.addr.addr && a.proto == crate::net::address::VIGIL_ADDRESS_PROTO
            });
            if !tagged {
                continue;
            }
            match netlink.remove_address(&vip.iface, &vip.addr).await {
                Ok(true) => tracing::warn!(
                    instance = %self.name,
                    "removed {} from {}: added by a vigil that did not exit cleanly \
                     (found by its kernel tag; no record of it survived)",
                    vip.addr,
                    vip.iface.name
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr),
            }
        }
    }

    /// Forgets the record of addresses that went away with a deleted interface.
    pub fn forget_addresses_on(&self, index: u32, owned: &mut OwnedAddresses) {
        for vip in self.vips.iter().filter(|v| v.iface.index == index) {
            owned.remove(&vip.owned());
        }
    }

    /// Follows a rename of the interface the instance runs on (it is the same interface,
    /// known by its index).
    pub fn renamed(&mut self, index: u32, name: &str) {
        if self.iface.index == index && self.iface.name != name {
            tracing::info!(instance = %self.name, "interface {} renamed {name}; still running on it", self.iface.name);
            self.iface.name = name.to_owned();
        }
        for vip in self.vips.iter_mut().filter(|v| v.iface.index == index) {
            vip.iface.name = name.to_owned();
        }
    }

    /// Virtual addresses with their interfaces.
    pub fn vips(&self) -> &[Vip] {
        &self.vips
    }

    /// One status object for `vigil status`, with its election `router` and `received`,
    /// the adverts the datapath accepted for it.
    pub fn status(&self, now: Instant, router: &VirtualRouter, received: u64) -> serde_json::Value {
        let last = router.last_transition().map(|t| {
            serde_json::json!({
                "from": t.from.to_string(),
                "to": t.to.to_string(),
                "reason": t.reason.to_string(),
                "seconds_ago": now.saturating_duration_since(t.at).as_secs_f64(),
                "unix_time": std::time::SystemTime::now()
                    .checked_sub(now.saturating_duration_since(t.at))
                    .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64()),
            })
        });
        serde_json::json!({
            "instance": self.name,
            "interface": self.iface.name,
            "vrid": self.cfg.vrid,
            "version": self.cfg.version.number(),
            "state": router.state().to_string(),
            "priority": self.cfg.priority,
            "effective_priority": router.priority(),
            "master": router.master().map(|m| m.to_string()),
            "primary": router.primary().to_string(),
            "virtual_addresses": self.vips.iter().map(|v| v.addr.to_string()).collect::<Vec<_>>(),
            "last_transition": last,
            "adverts_rx": received,
            "adverts_tx": self.sent,
            "transitions": self.transition_counts.iter().map(|((from, to, reason), n)| serde_json::json!({
                "from": from.to_string(), "to": to.to_string(), "reason": reason, "count": n,
            })).collect::<Vec<_>>(),
            "fault": self.tracked.fault,
            "split_brain": self.split.status(now),
            "split_brain_adverts": self.split.adverts_total,
            "addresses_while_backup": self.foreign_while_backup.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "removed_while_backup": self.removed_while_backup,
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(task) = self.announce.take() {
            task.abort();
        }
    }
}
