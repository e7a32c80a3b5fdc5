//! One configured VRRP instance at run time: its election, its sockets, its addresses,
//! and the execution of what the election asks for.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use vigil_common::event::{FAMILY_V4, FAMILY_V6};
use vigil_common::{VridKey, WatchEntry, validate};

use super::owned::{OwnedAddress, OwnedAddresses};
use super::split::SplitBrain;
use crate::config;
use crate::datapath::event::Record;
use crate::datapath::transmit::{AdvertSender, Outgoing, SenderPool, TransmitError};
use crate::net::announce::{AnnounceSchedule, AnnounceTiming, Announcer, run_announcements};
use crate::net::{Interface, Netlink, VirtualAddress};
use crate::notify::Notifier;
use crate::track::Verdict;
use crate::vrrp::{
    Action, Advertisement, Auth, InitialState, Instant, RouterConfig, State, Transition, Version,
    VirtualRouter,
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

/// An instance at run time.
pub struct Instance {
    /// Name in the config.
    pub name: String,
    /// Its configuration (compared on reload).
    pub cfg: config::Instance,
    /// The interface it runs on.
    pub iface: Interface,
    /// The election.
    pub router: VirtualRouter,
    /// Key of its XDP watch entry.
    pub key: VridKey,
    sender: Arc<AdvertSender>,
    /// Encoded adverts per destination at the priority they were encoded for: adverts
    /// change only when the priority does (interval, addresses and source are fixed for
    /// the instance's life), so a Master's steady state encodes nothing.
    adverts: Option<(u8, Vec<Outgoing>)>,
    /// Adverts due, not yet sent: the daemon sends those of every instance sharing a
    /// socket with one `sendmmsg`.
    pub outbox: Vec<Outgoing>,
    vips: Vec<Vip>,
    announcer: Option<Arc<Announcer>>,
    timing: AnnounceTiming,
    announce: Option<JoinHandle<u64>>,
    /// Digest of the configured address list, as the datapath computes it.
    digest: u32,
    /// Arrival time (ns) of the newest advert handed to the election.
    pub last_fed_ns: u64,
    /// The last advert handed to the election, to hand in again with a newer arrival
    /// time from the XDP program's map (see ebpf/src/main.rs).
    pub last_advert: Option<(IpAddr, Advertisement)>,
    /// Adverts sent.
    pub sent: u64,
    /// Adverts received and handed to the election.
    pub received: u64,
    /// What the XDP watch entry was last set to: (Master, effective priority).
    pub watched: (bool, u8),
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
    /// When (CLOCK_MONOTONIC ns) the kernel got this VRID's down-timer parameters; `None`
    /// while the agent keeps the deadline itself.
    pub kernel_since: Option<u64>,
    /// The kernel's timer keeps this Backup's Master_Down_Timer: the agent arms none.
    pub kernel_armed: bool,
    /// Silences the kernel's down timer reported.
    pub kernel_silences: u64,
}

/// The kernel down timer's parameters for an instance.
pub fn down_params(cfg: &config::Instance) -> vigil_common::DownParams {
    vigil_common::DownParams {
        adverts: u32::from(cfg.down_timer_adverts),
        _pad: 0,
        // RFC 3768 §7.1: a v2 Backup keeps its own interval (it discards others); v3
        // learns the Master's (RFC 5798 §6.4.2), which the kernel reads from each advert.
        interval_ns: match cfg.version {
            config::Version::V2 => u64::try_from(cfg.advert_interval.as_nanos()).unwrap_or(0),
            config::Version::V3 => 0,
        },
    }
}

fn router_config(cfg: &config::Instance) -> RouterConfig {
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

/// The XDP watch entry of an instance in `state` at effective `priority`.
pub fn watch_entry(cfg: &config::Instance, master: bool, priority: u8) -> WatchEntry {
    let mut e = WatchEntry {
        version: cfg.version.number(),
        priority,
        ..WatchEntry::default()
    };
    if cfg.preempt {
        e.flags |= validate::WATCH_PREEMPT;
    }
    if let Some(p) = &cfg.auth_pass {
        e.auth_type = 1;
        let n = p.len().min(8);
        e.auth[..n].copy_from_slice(&p.as_bytes()[..n]);
    }
    if !cfg.unicast_peers.is_empty() {
        e.flags |= validate::WATCH_UNICAST;
    }
    if cfg.v3_checksum_as_v2 {
        e.flags |= validate::WATCH_V3_CSUM_AS_V2;
    }
    if master {
        e.flags |= validate::WATCH_REPORT_ALL;
    }
    e
}

fn digest_of(addrs: &[IpAddr]) -> u32 {
    addrs.iter().fold(0u32, |acc, a| {
        let mut b = [0u8; 16];
        match a {
            IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b = v6.octets(),
        }
        acc.wrapping_add(validate::mix_address(&b))
    })
}

impl Instance {
    /// Resolves interfaces and addresses and opens the transmit socket.
    pub async fn new(
        name: &str,
        cfg: &config::Instance,
        garp: &config::Garp,
        script_user: Option<&str>,
        netlink: &Netlink,
        senders: &mut SenderPool,
    ) -> anyhow::Result<Self> {
        let iface = netlink.interface(&cfg.interface).await?;
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
        let v6 = cfg
            .virtual_addresses
            .first()
            .is_some_and(|v| v.addr.is_ipv6());
        let vip_addrs: Vec<IpAddr> = vips.iter().map(|v| v.addr.addr).collect();
        let (primary, sender) = if v6 {
            let ll = netlink.ipv6_link_local(&iface).await?.ok_or_else(|| {
                anyhow::anyhow!("{}: no usable IPv6 link-local address", iface.name)
            })?;
            (IpAddr::V6(ll), senders.ipv6(&iface, ll)?)
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
            (IpAddr::V4(src), senders.ipv4(&iface, src)?)
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
            key: VridKey {
                ifindex: iface.index,
                family: if v6 { FAMILY_V6 } else { FAMILY_V4 },
                vrid: cfg.vrid,
                _pad: 0,
            },
            digest: digest_of(&vip_addrs),
            router: VirtualRouter::new(rc, primary),
            iface,
            sender,
            adverts: None,
            outbox: Vec::new(),
            vips,
            announcer,
            timing,
            announce: None,
            last_fed_ns: 0,
            last_advert: None,
            sent: 0,
            received: 0,
            watched: (false, cfg.priority),
            transition_counts: std::collections::BTreeMap::new(),
            notifier: Notifier::new(name, cfg, script_user),
            tracked: Verdict::untracked(cfg),
            split: SplitBrain::default(),
            foreign_while_backup: Vec::new(),
            removed_while_backup: 0,
            kernel_since: None,
            kernel_armed: false,
            kernel_silences: 0,
        })
    }

    /// Turns a datapath record into the election's input and hands it in.
    pub fn receive(&mut self, record: &Record) {
        let r = &record.raw;
        let cfg = self.router.config();
        let advert = Advertisement {
            version: if r.version == 2 {
                Version::V2
            } else {
                Version::V3
            },
            vrid: r.vrid,
            priority: r.priority,
            interval: record.interval(),
            // The datapath sends a digest of the list; equal digests mean the same set.
            addresses: if r.addr_digest == self.digest
                && usize::from(r.addr_count) == cfg.virtual_addresses.len()
            {
                cfg.virtual_addresses.clone()
            } else {
                Vec::new()
            },
            // The datapath has checked type and password against this instance's own.
            auth: cfg.auth.clone(),
        };
        let source = record.source();
        self.received += 1;
        self.last_fed_ns = self.last_fed_ns.max(r.ts_ns);
        self.last_advert = Some((source, advert.clone()));
        let was_master = self.router.state() == State::Master;
        let sent = self.router.counters().adverts_sent;
        let (peer_priority, peer_interval) = (advert.priority, advert.interval);
        let now = Instant::from_nanos(r.ts_ns);
        self.router
            .handle(now, crate::vrrp::Input::Advert { source, advert });
        // Every advert the kernel reports (re)starts its down timer, if it had the
        // parameters by the time the advert arrived.
        self.kernel_armed = self.router.state() == State::Backup
            && self.kernel_since.is_some_and(|since| r.ts_ns >= since);
        // A Master that stays Master and answers at once has heard a worse master (a
        // priority-0 advert is answered too, but is a goodbye, not a rival).
        if was_master
            && self.router.state() == State::Master
            && self.router.counters().adverts_sent > sent
            && peer_priority != 0
        {
            self.split.observe(
                &self.name,
                now,
                source,
                peer_priority,
                peer_interval,
                self.router.priority(),
                self.cfg.advert_interval,
            );
        }
    }

    /// The deadline the agent itself must wake for: none for a Backup whose down timer the
    /// kernel keeps.
    pub fn agent_deadline(&self) -> Option<Instant> {
        if self.kernel_armed && self.router.state() == State::Backup {
            return None;
        }
        self.router.poll_timeout()
    }

    /// The kernel's down timer found the Master silent since `T` (`ts_ns`) and fired at
    /// `D` (`deadline_ns`): bring the election up to `T` and let it judge at `D`. A
    /// silence older than an advert the agent has since heard is stale: that advert
    /// re-armed the kernel's timer.
    pub fn kernel_silence(&mut self, record: &Record) {
        let r = &record.raw;
        if r.ts_ns < self.last_fed_ns && self.kernel_armed {
            return;
        }
        self.kernel_silences += 1;
        self.kernel_armed = false;
        let source = record.source();
        if self
            .last_advert
            .as_ref()
            .is_some_and(|(last, _)| *last == source)
        {
            self.refeed(r.ts_ns, source, r.priority);
        }
        // The router decides; if it is not due at D, its own deadline is the agent's
        // again (kernel_armed is off).
        self.router.handle(
            Instant::from_nanos(r.deadline_ns),
            crate::vrrp::Input::Timeout,
        );
    }

    /// Hands in the last advert again with a newer arrival time from the XDP map.
    pub fn refeed(&mut self, last_ns: u64, source: IpAddr, priority: u8) {
        if last_ns <= self.last_fed_ns {
            return;
        }
        let Some((_, mut advert)) = self.last_advert.clone() else {
            return;
        };
        advert.priority = priority;
        self.last_fed_ns = last_ns;
        self.router.handle(
            Instant::from_nanos(last_ns),
            crate::vrrp::Input::Advert { source, advert },
        );
    }

    /// Executes every pending action; returns the transitions that happened.
    pub async fn run_actions(
        &mut self,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
    ) -> Vec<Transition> {
        let mut transitions = Vec::new();
        while let Some(action) = self.router.poll_action() {
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
                    if t.to != State::Backup {
                        self.kernel_armed = false;
                    }
                    if t.to != State::Master
                        && let Some(task) = self.announce.take()
                    {
                        task.abort();
                    }
                    if t.from == State::Master {
                        self.split
                            .expire(&self.name, t.at, false, self.cfg.advert_interval);
                    }
                    self.notifier.state(t.to, self.router.priority());
                    transitions.push(t);
                }
                Action::SendAdvert { priority } => self.queue_advert(priority),
                // RFC 5798 §6.4.1 and §6.4.3: the advert goes out before addresses move.
                Action::AddAddresses => {
                    self.flush().await;
                    self.add_addresses(netlink, owned).await;
                }
                Action::RemoveAddresses => {
                    self.flush().await;
                    self.remove_addresses(netlink, owned).await;
                }
                Action::Announce => {
                    self.flush().await;
                    self.announce();
                }
            }
        }
        transitions
    }

    /// Queues the advert at `priority` for each destination, encoding it only when the
    /// priority differs from the last one encoded.
    fn queue_advert(&mut self, priority: u8) {
        if self.adverts.as_ref().is_none_or(|(p, _)| *p != priority) {
            self.adverts = Some((priority, self.encode_adverts(priority)));
        }
        if let Some((_, encoded)) = &self.adverts {
            self.outbox.extend(encoded.iter().cloned());
        }
    }

    fn encode_adverts(&self, priority: u8) -> Vec<Outgoing> {
        let advert = self.router.advertisement(priority);
        let mode = self.router.config().checksum_mode();
        let source = self.sender.source();
        let dests: Vec<IpAddr> = if self.cfg.unicast_peers.is_empty() {
            vec![self.sender.multicast_group()]
        } else {
            self.cfg.unicast_peers.clone()
        };
        let mut out = Vec::with_capacity(dests.len());
        for dest in dests {
            // The v3 checksum covers the destination, so each peer gets its own copy.
            match advert.encode(source, dest, mode) {
                Ok(bytes) => out.push((dest, Arc::from(bytes))),
                Err(e) => tracing::error!(instance = %self.name, "cannot encode advert: {e}"),
            }
        }
        out
    }

    /// The socket this instance's adverts leave through (shared with the instances on
    /// the same interface and source address).
    pub fn sender(&self) -> &Arc<AdvertSender> {
        &self.sender
    }

    /// Counts adverts of the outbox as sent: `sent` of them went out, then `error`.
    pub fn sent_from_outbox(&mut self, sent: usize, error: Option<&TransmitError>) {
        self.sent += sent as u64;
        if let Some(e) = error {
            tracing::warn!(instance = %self.name, "advert not sent: {e}");
        }
        self.outbox.clear();
    }

    /// Sends this instance's queued adverts now.
    async fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let (sent, error) = self.sender.send_batch(&self.outbox).await;
        self.sent_from_outbox(sent, error.as_ref());
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

    /// The watch entry the datapath should have now, if it differs from the last one set.
    pub fn watch_update(&mut self) -> Option<WatchEntry> {
        let now = (self.router.state() == State::Master, self.router.priority());
        if now == self.watched {
            return None;
        }
        self.watched = now;
        Some(watch_entry(&self.cfg, now.0, now.1))
    }

    /// The seed's split-brain check, while Backup or Fault: a virtual address on the
    /// interface. vigil removes it only if vigil added it (the record in `owned`, e.g. a
    /// removal that failed); an address someone else put there is left alone and warned
    /// about once. `seen` caches address lists per interface index for one round;
    /// `keep` lists addresses a local Master instance holds.
    pub async fn check_addresses(
        &mut self,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
        seen: &mut std::collections::HashMap<u32, Vec<IpAddr>>,
        keep: &[IpAddr],
    ) {
        if !matches!(self.router.state(), State::Backup | State::Fault) {
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
                            self.router.state()
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
                        self.router.state()
                    );
                }
                foreign.push(vip.addr.addr);
            }
        }
        self.foreign_while_backup = foreign;
    }

    /// Whether vigil's record says one of this instance's addresses is on the node.
    pub fn holds_owned(&self, owned: &OwnedAddresses) -> bool {
        self.vips.iter().any(|v| owned.contains(&v.owned()))
    }

    /// Virtual addresses with their interfaces.
    pub fn vips(&self) -> &[Vip] {
        &self.vips
    }

    /// One status object for `vigil status`.
    pub fn status(&self, now: Instant) -> serde_json::Value {
        let last = self.router.last_transition().map(|t| {
            serde_json::json!({
                "from": t.from.to_string(),
                "to": t.to.to_string(),
                "reason": t.reason.to_string(),
                "seconds_ago": now.saturating_duration_since(t.at).as_secs_f64(),
            })
        });
        serde_json::json!({
            "instance": self.name,
            "interface": self.iface.name,
            "vrid": self.cfg.vrid,
            "version": self.cfg.version.number(),
            "state": self.router.state().to_string(),
            "priority": self.cfg.priority,
            "effective_priority": self.router.priority(),
            "master": self.router.master().map(|m| m.to_string()),
            "primary": self.router.primary().to_string(),
            "virtual_addresses": self.vips.iter().map(|v| v.addr.to_string()).collect::<Vec<_>>(),
            "last_transition": last,
            "adverts_rx": self.received,
            "adverts_tx": self.sent,
            "transitions": self.transition_counts.iter().map(|((from, to, reason), n)| serde_json::json!({
                "from": from.to_string(), "to": to.to_string(), "reason": reason, "count": n,
            })).collect::<Vec<_>>(),
            "fault": self.tracked.fault,
            "split_brain": self.split.status(now),
            "split_brain_adverts": self.split.adverts_total,
            "addresses_while_backup": self.foreign_while_backup.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "removed_while_backup": self.removed_while_backup,
            "down_timer": if self.kernel_armed && self.router.state() == State::Backup {
                "kernel"
            } else {
                "agent"
            },
            "kernel_silences": self.kernel_silences,
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
