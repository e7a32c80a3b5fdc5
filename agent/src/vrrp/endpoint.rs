//! The seam between the datapath and the elections, sans-IO: [`Endpoint`] owns every
//! [`VirtualRouter`] of the agent by its [`VridKey`] (interface, family, VRID) and is the
//! only code that hands routers their inputs.
//!
//! It takes what the datapath produces — records the XDP program wrote to its ring
//! buffer, or whole frames from the raw-socket path, which it judges itself with
//! `vigil_common::validate` and `vigil_common::suppress` exactly as the program does —
//! and turns them into adverts for the right router. Because the datapath reports a
//! Backup's adverts only when they change (see `vigil_common::suppress`), when a down
//! timer fires it first hands the router the VRID's last arrival from the datapath's own
//! state (the kernel map, read by the caller and given as
//! [`EndpointInput::KernelState`]; or its own twin of it on the raw path), so only true
//! silence leads to a takeover. And it derives each VRID's watch entry from its router:
//! report every advert while Master; drop lower priorities in the datapath only while
//! the router would discard them (preempting, no preempt delay running); the local
//! priority kept current with tracking weights.
//!
//! Where the kernel keeps a Backup's Master_Down_Timer (a `bpf_timer` of the XDP
//! program, see `ebpf/src/timer.rs`), the endpoint asks for no wake-up for that
//! deadline: every advert the program reports has (re-)armed the kernel's timer, which
//! re-arms itself while adverts keep arriving and otherwise writes one record "silent
//! since T, deadline D". That record is handled like the agent's own timer firing at D:
//! the router is brought up to the VRID's state at T, then times out at D, and decides.
//! The kernel is the alarm clock; the router stays the judge.
//!
//! Like the router: [`Endpoint::handle`] takes an input and the time it happened,
//! [`Endpoint::poll_action`] hands out what to do, tagged with the VRID key, and
//! [`Endpoint::poll_timeout`] says when to come back with [`EndpointInput::Timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

pub use first_adverts::FirstAdvert;

use vigil_common::event::{EVENT_ADVERT, EVENT_SILENCE, EVENT_TIMER_ERROR, FAMILY_V4, FAMILY_V6};
use vigil_common::suppress::{self, Fate};
use vigil_common::validate::{self, Advert, Parsed};
use vigil_common::{AdvertEvent, IfaceStats, Verdict, VridKey, VridStats, WatchEntry};

use crate::bfd::PeerTable;
use crate::vrrp::packet::{Advertisement, Auth, Version};
use crate::vrrp::router::{
    Action, AdverTimer, Input, ReconfigureError, RouterConfig, State, VirtualRouter,
};
use crate::vrrp::time::Instant;
use schedule::{Filed, Kind, Schedule};

/// Something the datapath produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datapath {
    /// A record the XDP program wrote to its ring buffer (already judged and suppressed).
    Event(AdvertEvent),
    /// A whole Ethernet frame from the raw-socket path, with its arrival time
    /// (CLOCK_MONOTONIC ns); the endpoint judges it as the program would.
    Frame {
        /// Interface it arrived on.
        ifindex: u32,
        /// Arrival time, CLOCK_MONOTONIC ns.
        ts_ns: u64,
        /// The frame, from the Ethernet header on.
        bytes: Vec<u8>,
    },
}

/// Something that happened to the endpoint or one of its routers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointInput {
    /// A record or frame from the datapath.
    Datapath(Datapath),
    /// The XDP program's state of a VRID, read from its map just before a
    /// [`EndpointInput::Timeout`] (for every key [`Endpoint::due`] gives) and before a
    /// [`EndpointInput::PriorityChanged`] or [`EndpointInput::Reconfigure`] of it.
    KernelState {
        /// The VRID.
        key: VridKey,
        /// Its `vrid_stats` entry.
        stats: VridStats,
        /// Whether its kernel down timer is armed (read from `down_timers`), when it was
        /// read (before a timeout or a refresh; `None` otherwise).
        timer_armed: Option<bool>,
    },
    /// The kernel keeps this VRID's Master_Down_Timer for adverts that arrive from
    /// `since_ns` (CLOCK_MONOTONIC) on: its parameters were in the kernel's map by then.
    KernelTimer {
        /// The VRID.
        key: VridKey,
        /// When the parameters were published.
        since_ns: u64,
    },
    /// The deadline of [`Endpoint::poll_timeout`] came.
    Timeout,
    /// Hand a Backup the datapath's newest arrival (its [`EndpointInput::KernelState`],
    /// just read, with the kernel's timer) ahead of its down deadline: the caller woke a
    /// little early for the deadline, and a Master heard since moves it; a kernel timer
    /// found armed takes the deadline back, as at a timeout.
    Refresh {
        /// The router.
        key: VridKey,
    },
    /// Start a router (RFC 5798 §6.4.1).
    Startup {
        /// The router.
        key: VridKey,
    },
    /// Stop a router: a Master sends priority 0 and drops the addresses.
    Shutdown {
        /// The router.
        key: VridKey,
    },
    /// A router's effective priority changed (tracking weights).
    PriorityChanged {
        /// The router.
        key: VridKey,
        /// New effective priority.
        priority: u8,
    },
    /// A router's interface went down.
    LinkDown {
        /// The router.
        key: VridKey,
    },
    /// A router's interface came back.
    LinkUp {
        /// The router.
        key: VridKey,
    },
    /// A tracked failure of a router.
    Fault {
        /// The router.
        key: VridKey,
        /// What failed.
        reason: String,
    },
    /// A router's tracked failure is over.
    FaultCleared {
        /// The router.
        key: VridKey,
    },
    /// The critical BFD session to `master` on interface `ifindex` went down at `at`
    /// (BFD-assisted takeover). Each router there with BFD that takes `master` for its
    /// Master and would win the election after it (its peer table knows every other peer
    /// to rank below it) is handed [`Input::MasterUnreachable`], after the VRID's last
    /// arrival from the datapath's state (hand [`EndpointInput::KernelState`] first for
    /// the keys [`Endpoint::bfd_candidates`] gives). The others keep the RFC's timer.
    MasterUnreachable {
        /// Interface of the session.
        ifindex: u32,
        /// The peer the session ran to.
        master: IpAddr,
        /// When its detection time ran out.
        at: Instant,
    },
    /// A router's sync group cannot be Master here ([`Input::SyncHold`]).
    SyncHold {
        /// The router.
        key: VridKey,
        /// Why.
        reason: String,
    },
    /// A router's sync group can be Master ([`Input::SyncRelease`]).
    SyncRelease {
        /// The router.
        key: VridKey,
        /// Why.
        reason: String,
    },
    /// A live router takes a changed configuration without restarting
    /// ([`VirtualRouter::reconfigure`]); a change it cannot take is logged and ignored
    /// (remove and add the router instead).
    Reconfigure {
        /// The router.
        key: VridKey,
        /// Its new configuration.
        config: RouterConfig,
    },
}

/// Something the caller must do for one VRID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointAction {
    /// What the router asks for.
    Router(Action),
    /// Set the VRID's watch entry in the datapath to this.
    Watch(WatchEntry),
    /// A router with BFD heard a peer it did not know: run a BFD session to it.
    Peer {
        /// The peer's primary address.
        address: IpAddr,
    },
    /// A peer learned from adverts went silent and is not the Master followed: this
    /// router no longer wants a BFD session to it ([`Endpoint::expire_bfd_peers`]).
    PeerGone {
        /// The peer's primary address.
        address: IpAddr,
    },
    /// A Master heard (and answered) a router of lower priority that believes itself
    /// Master: a split brain, or one healing.
    Rival {
        /// The other router's primary address.
        source: IpAddr,
        /// Its priority.
        priority: u8,
        /// Its advert interval.
        interval: Duration,
        /// Arrival time of its advert.
        at: Instant,
    },
}

/// What the endpoint keeps for one VRID.
#[derive(Clone, Debug)]
struct Member {
    router: VirtualRouter,
    /// The watch entry's fixed part: version, authentication, unicast and checksum flags.
    base: WatchEntry,
    /// Digest of the router's own address list, as the datapath computes it.
    digest: u32,
    /// The watch entry the datapath has (last emitted).
    watched: WatchEntry,
    /// The datapath's state of the VRID: the kernel's as last read, or the raw path's
    /// twin of it, kept here.
    state: VridStats,
    /// Arrival time of the newest advert handed to the router (ns).
    fed_ns: u64,
    /// What that advert said: source, priority, interval.
    fed_what: Option<(IpAddr, u8, Duration)>,
    /// Arrival time of the newest advert handed to the router that also (re)started the
    /// kernel's down timer: reported, or read from the VRID's last arrival. A
    /// lower-priority advert the datapath dropped does neither, so it never makes the
    /// kernel's silence event look stale.
    armed_ns: u64,
    /// The datapath's last lost report the router was told of (arrival time, ns).
    lost_ns: u64,
    /// Adverts handed to the router from the datapath (reports, not re-feeds).
    fed: u64,
    /// With BFD-assisted takeover: the peers known.
    peers: Option<PeerTable>,
    /// With BFD-assisted takeover: the session's detection time, added to
    /// Master_Down_Interval before a silent learned peer is let go.
    bfd_detection: Duration,
    /// The watch entry's epoch: changed to have the next advert reported.
    epoch: u8,
    /// The kernel keeps the down timer for adverts from this time (ns) on.
    kernel_since: Option<u64>,
    /// The kernel's timer is armed for this Backup: the endpoint asks for no wake-up
    /// for its down deadline.
    kernel_armed: bool,
    /// When the local priority or the configuration last changed (ns): the kernel's
    /// expiry was computed before it, so the agent keeps the deadline until it next
    /// finds the kernel's timer armed, and a silence event is judged no earlier.
    changed_ns: u64,
    /// Whether the kernel's timer was armed when the caller last read the state before
    /// a timeout (`None`: not read this round).
    kernel_read: Option<bool>,
    /// Silences the kernel reported.
    silences: u64,
    /// Where this member is filed in [`Endpoint::schedule`] (`None` while the endpoint
    /// holds its Adver_Timer: the timer's entry is filed instead).
    scheduled: Option<Filed>,
    /// A steady Master's Adver_Timer, held by the endpoint at this index of
    /// [`Endpoint::steady`].
    steady: Option<u32>,
    /// A Master that [`Endpoint::refresh`] has brought up to `state`: refreshing it
    /// again changes nothing until `state` is written or an advert is fed.
    caught_up: bool,
}

/// Whether the kernel keeps a VRID's down timer, for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelTimer {
    /// The kernel's timer keeps the Backup's Master_Down_Timer now.
    pub armed: bool,
    /// Silences it reported.
    pub silences: u64,
}

/// Every router of the agent, and the seam to the datapath.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    members: BTreeMap<VridKey, Member>,
    /// Every member's deadline, earliest first.
    schedule: Schedule,
    /// Keys an input touched (kept to reuse its allocation).
    touched: Vec<VridKey>,
    /// Keys due in a timeout, with what they were filed as (kept to reuse its
    /// allocation).
    due: Vec<(VridKey, Kind)>,
    /// The Adver_Timers of steady Masters, lent by their routers: a round of their
    /// adverts reads and writes these and nothing else of the members (see
    /// [`Endpoint::hold_steady`]). Emptied entries are reused.
    steady: Vec<Option<(VridKey, AdverTimer)>>,
    /// Indices of emptied entries of `steady`.
    steady_free: Vec<u32>,
    actions: VecDeque<(VridKey, EndpointAction)>,
    /// The raw path's verdict counters per interface (the XDP program keeps its own).
    iface_stats: BTreeMap<u32, IfaceStats>,
}

/// A router the endpoint cannot add.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// The key is taken.
    #[error("interface {}, VRID {} of that family already has a router", .0.ifindex, .0.vrid)]
    Taken(VridKey),
}

/// The fixed part of a router's watch entry.
fn base_entry(cfg: &RouterConfig, unicast: bool) -> WatchEntry {
    let mut e = WatchEntry {
        version: cfg.version.number(),
        priority: cfg.priority,
        ..WatchEntry::default()
    };
    if let Auth::SimplePassword(p) = &cfg.auth {
        e.auth_type = 1;
        e.auth = *p;
    }
    if unicast {
        e.flags |= validate::WATCH_UNICAST;
    }
    if cfg.v3_checksum_as_v2 {
        e.flags |= validate::WATCH_V3_CSUM_AS_V2;
    }
    e
}

/// The address digest the datapath computes, of a list of addresses.
pub fn address_digest(addrs: &[IpAddr]) -> u32 {
    addrs.iter().fold(0u32, |acc, a| {
        acc.wrapping_add(validate::mix_address(&address_bytes(*a)))
    })
}

fn address_bytes(a: IpAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b = v6.octets(),
    }
    b
}

fn address_of(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// The interval an advert's raw field means: v3 centiseconds, v2 seconds.
fn interval_of(version: u8, raw: u16) -> Duration {
    Duration::from_nanos(suppress::interval_ns(version, raw))
}

/// The key of a router on `ifindex` whose adverts come from `primary`.
pub fn key_of(ifindex: u32, primary: IpAddr, vrid: u8) -> VridKey {
    VridKey {
        ifindex,
        family: if primary.is_ipv4() {
            FAMILY_V4
        } else {
            FAMILY_V6
        },
        vrid,
        _pad: 0,
    }
}

impl Member {
    /// The watch entry the datapath should have at `now`.
    fn entry(&self, now: Instant) -> WatchEntry {
        let mut e = self.base;
        e.priority = self.router.priority();
        e.epoch = self.epoch;
        if self.router.state() == State::Master {
            e.flags |= validate::WATCH_REPORT_ALL;
        }
        if self.router.discards_lower_priority(now) {
            e.flags |= validate::WATCH_DROP_LOWER;
        }
        e
    }

    /// When the watch entry will need to change without any input: the last instant of
    /// a running preempt delay (one nanosecond before its end), when the router must
    /// hear the last lower-priority advert the delay covers and the datapath may start
    /// dropping the ones after.
    fn entry_deadline(&self) -> Option<Instant> {
        if self.watched.flags & validate::WATCH_DROP_LOWER != 0 || !self.router.config().preempt {
            return None;
        }
        let until = self.router.preempt_delay_until()?;
        Some(Instant::from_nanos(until.as_nanos().saturating_sub(1)))
    }

    /// When the kernel's timer expires for the VRID's last arrival, by the program's own
    /// arithmetic; `None` before any arrival.
    fn kernel_deadline(&self) -> Option<Instant> {
        let s = &self.state;
        if s.last_version == 0 {
            return None;
        }
        let cfg = self.router.config();
        let interval = match cfg.version {
            // RFC 3768 §7.1: a v2 Backup keeps its own interval.
            Version::V2 => u64::try_from(cfg.advert_interval.as_nanos()).unwrap_or(u64::MAX),
            Version::V3 => suppress::interval_ns(s.last_version, s.last_interval),
        };
        Some(Instant::from_nanos(vigil_common::down::deadline_ns(
            self.base.version,
            self.router.priority(),
            interval,
            u32::from(cfg.down_timer_adverts),
            s.last_ns,
            s.last_priority,
        )))
    }

    /// The router's deadline, unless the kernel keeps it.
    fn router_deadline(&self) -> Option<Instant> {
        if self.kernel_armed && self.router.state() == State::Backup {
            return None;
        }
        self.router.poll_timeout()
    }

    /// Where it belongs in the schedule: its deadline, and whether it is a Backup's.
    fn filed(&self) -> Option<Filed> {
        let kind = if self.router.state() == State::Backup {
            Kind::Backup
        } else {
            Kind::Other
        };
        self.deadline().map(|at| (at, kind))
    }

    fn deadline(&self) -> Option<Instant> {
        match (self.router_deadline(), self.entry_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The advert a datapath record stands for, as this router would have decoded it.
    fn advert(
        &self,
        version: u8,
        priority: u8,
        interval: u16,
        count: u8,
        digest: u32,
    ) -> Advertisement {
        let cfg = self.router.config();
        Advertisement {
            version: if version == 2 {
                Version::V2
            } else {
                Version::V3
            },
            vrid: cfg.vrid,
            priority,
            interval: interval_of(version, interval),
            // The datapath sends a digest of the list; equal digests and counts mean the
            // same set.
            addresses: if digest == self.digest && usize::from(count) == cfg.virtual_addresses.len()
            {
                cfg.virtual_addresses.clone()
            } else {
                Vec::new()
            },
            // The datapath has checked type and password against this router's own.
            auth: cfg.auth.clone(),
        }
    }
}

impl Endpoint {
    /// An endpoint without routers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a router in Initialize under `key` (hand it [`EndpointInput::Startup`] to
    /// start it); `unicast` when its adverts come to a unicast address. Its first watch
    /// entry is queued as an action and given by [`Endpoint::watch_entries`].
    pub fn add(
        &mut self,
        key: VridKey,
        cfg: RouterConfig,
        primary: IpAddr,
        unicast: bool,
    ) -> Result<(), AddError> {
        if self.members.contains_key(&key) {
            return Err(AddError::Taken(key));
        }
        let router = VirtualRouter::new(cfg, primary);
        let base = base_entry(router.config(), unicast);
        let digest = address_digest(&router.config().virtual_addresses);
        let mut m = Member {
            router,
            base,
            digest,
            watched: base,
            state: VridStats::default(),
            fed_ns: 0,
            armed_ns: 0,
            lost_ns: 0,
            fed_what: None,
            fed: 0,
            kernel_since: None,
            kernel_armed: false,
            changed_ns: 0,
            kernel_read: None,
            silences: 0,
            scheduled: None,
            steady: None,
            caught_up: false,
            peers: None,
            bfd_detection: Duration::ZERO,
            epoch: 0,
        };
        m.watched = m.entry(Instant::ZERO);
        self.actions
            .push_back((key, EndpointAction::Watch(m.watched)));
        self.members.insert(key, m);
        self.reschedule(key);
        Ok(())
    }

    /// Files `key` under its member's current deadline: call after anything that may
    /// have changed it.
    fn reschedule(&mut self, key: VridKey) {
        self.cool(&key);
        if let Some(m) = self.members.get_mut(&key) {
            file(&mut self.schedule, key, m);
        }
    }

    /// The schedule agrees with every member's deadline (checked in debug builds, where
    /// the simulator runs).
    fn check_schedule(&self) {
        if cfg!(debug_assertions) {
            for (key, m) in &self.members {
                if let Some(i) = m.steady {
                    self.check_steady(key, m, i);
                    continue;
                }
                debug_assert_eq!(m.scheduled, m.filed(), "deadline of {key:?} not filed");
                if let Some(at) = m.scheduled {
                    debug_assert!(self.schedule.holds(key, at), "{key:?} not at {at:?}");
                }
            }
            let (filed, empty) = self.schedule.census();
            let members = self
                .members
                .values()
                .filter(|m| m.scheduled.is_some() || m.steady.is_some());
            debug_assert_eq!(filed, members.count());
            debug_assert!(!empty, "an empty bucket");
        }
    }

    /// A member whose Adver_Timer the endpoint holds at `i`: the timer is its own, filed
    /// under its deadline, and the router, given it back, would be filed there too.
    fn check_steady(&self, key: &VridKey, m: &Member, i: u32) {
        let held = self.steady.get(i as usize).copied().flatten();
        debug_assert!(
            held.is_some_and(|(k, _)| k == *key),
            "{key:?}: steady timer {i} is not its own"
        );
        let Some((_, timer)) = held else {
            return;
        };
        let at = (timer.deadline(), Kind::Steady(i));
        debug_assert!(m.scheduled.is_none(), "{key:?} filed twice");
        debug_assert!(self.schedule.holds(key, at), "{key:?} not at {at:?}");
        let mut back = m.clone();
        back.router.return_adver_timer(timer);
        debug_assert_eq!(
            back.filed(),
            Some((timer.deadline(), Kind::Other)),
            "{key:?}: its router disagrees with the steady timer"
        );
    }

    /// Gives a member its Adver_Timer back, if the endpoint holds it, and files it as
    /// its router says: done before the member is looked at or handed anything.
    fn cool(&mut self, key: &VridKey) {
        let Some(m) = self.members.get_mut(key) else {
            return;
        };
        let Some(i) = m.steady.take() else {
            return;
        };
        let Some((_, timer)) = self.steady.get_mut(i as usize).and_then(Option::take) else {
            return;
        };
        self.steady_free.push(i);
        m.router.return_adver_timer(timer);
        let next = m.filed();
        self.schedule
            .refile(*key, Some((timer.deadline(), Kind::Steady(i))), next);
        m.scheduled = next;
    }

    /// Holds the Adver_Timer of a steady Master (one just filed as its router says, with
    /// nothing queued and nothing to refresh): until anything else happens to it, its
    /// rounds are [`AdverTimer::fire`] on this copy, which is what its router would do.
    fn hold_steady(&mut self, key: VridKey, timer: AdverTimer) {
        let i = match self.steady_free.pop() {
            Some(i) => i,
            None => {
                self.steady.push(None);
                u32::try_from(self.steady.len() - 1).expect("fewer timers than routers")
            }
        };
        let Some(m) = self.members.get_mut(&key) else {
            return;
        };
        debug_assert_eq!(m.scheduled, Some((timer.deadline(), Kind::Other)));
        self.steady[i as usize] = Some((key, timer));
        let at = Some((timer.deadline(), Kind::Steady(i)));
        self.schedule.refile(key, m.scheduled, at);
        m.scheduled = None;
        m.steady = Some(i);
    }

    /// A held Adver_Timer's expiry (RFC 5798 §6.4.3): the advert, and the timer filed
    /// again.
    fn steady_tick(&mut self, now: Instant, key: VridKey, i: u32) {
        let Some((k, timer)) = self.steady.get_mut(i as usize).and_then(Option::as_mut) else {
            return;
        };
        debug_assert_eq!(*k, key);
        if let Some(priority) = timer.fire(now) {
            self.actions
                .push_back((key, EndpointAction::Router(Action::SendAdvert { priority })));
        }
        self.schedule
            .refile(key, None, Some((timer.deadline(), Kind::Steady(i))));
    }

    /// Turns on BFD-assisted takeover for a router: its peers are `configured`
    /// (`unicast_peers`) and whoever it hears; each new one is announced with
    /// [`EndpointAction::Peer`], the configured ones at once. `detection` is the BFD
    /// detection time, part of how long a learned peer may stay silent.
    pub fn enable_bfd(&mut self, key: VridKey, configured: &[IpAddr], detection: Duration) {
        self.cool(&key);
        if let Some(m) = self.members.get_mut(&key) {
            m.peers = Some(PeerTable::configured(configured.iter().copied()));
            m.bfd_detection = detection;
            for address in configured {
                self.actions
                    .push_back((key, EndpointAction::Peer { address: *address }));
            }
        }
        self.reschedule(key);
    }

    /// Turns BFD-assisted takeover off for a router; the caller lets its sessions go.
    pub fn disable_bfd(&mut self, key: &VridKey) {
        if let Some(m) = self.members.get_mut(key) {
            m.peers = None;
        }
        self.reschedule(*key);
    }

    /// Sets the BFD detection time of a router with BFD (timers changed on reload).
    pub fn set_bfd_detection(&mut self, key: &VridKey, detection: Duration) {
        if let Some(m) = self.members.get_mut(key) {
            m.bfd_detection = detection;
        }
        self.reschedule(*key);
    }

    /// Lets go of learned peers silent for longer than Master_Down_Interval plus the
    /// BFD detection time, except each router's Master (whose steady adverts the
    /// datapath keeps to itself): one [`EndpointAction::PeerGone`] each. Call it about
    /// once a second.
    pub fn expire_bfd_peers(&mut self, now: Instant) {
        for (key, m) in &mut self.members {
            let limit = m.router.master_down_interval() + m.bfd_detection;
            let master = m.router.master();
            let Some(table) = m.peers.as_mut() else {
                continue;
            };
            for address in table.expire(now, limit, master) {
                self.actions
                    .push_back((*key, EndpointAction::PeerGone { address }));
            }
        }
    }

    /// The peers a router with BFD knows.
    pub fn bfd_peers(&self, key: &VridKey) -> Option<&PeerTable> {
        self.members.get(key).and_then(|m| m.peers.as_ref())
    }

    /// The routers an [`EndpointInput::MasterUnreachable`] for `master` on `ifindex`
    /// may concern: Backups with BFD whose Master it is.
    pub fn bfd_candidates(&self, ifindex: u32, master: IpAddr) -> Vec<VridKey> {
        self.members
            .iter()
            .filter(|(k, m)| {
                k.ifindex == ifindex
                    && m.peers.is_some()
                    && m.router.state() == State::Backup
                    && m.router.master() == Some(master)
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// Removes a router (after its [`EndpointInput::Shutdown`] and actions, for a clean
    /// stop); actions still queued for it stay queued.
    pub fn remove(&mut self, key: &VridKey) -> Option<VirtualRouter> {
        self.cool(key);
        let m = self.members.remove(key)?;
        self.schedule.unfile(*key, m.scheduled);
        Some(m.router)
    }

    /// The router of `key`, to read. While a steady Master's Adver_Timer is held by
    /// the endpoint, its router's own deadline and count of adverts sent lag behind
    /// (see [`VirtualRouter::lend_adver_timer`]; [`Endpoint::poll_timeout`] is exact);
    /// the rest is current.
    pub fn router(&self, key: &VridKey) -> Option<&VirtualRouter> {
        self.members.get(key).map(|m| &m.router)
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = VridKey> + '_ {
        self.members.keys().copied()
    }

    /// Every router with its key.
    pub fn routers(&self) -> impl Iterator<Item = (VridKey, &VirtualRouter)> {
        self.members.iter().map(|(k, m)| (*k, &m.router))
    }

    /// The watch entry of every VRID, as the datapath should have it now.
    pub fn watch_entries(&self) -> Vec<(VridKey, WatchEntry)> {
        self.members.iter().map(|(k, m)| (*k, m.watched)).collect()
    }

    /// The datapath's state of a VRID as the endpoint last knew it (the raw path's own,
    /// or the kernel's last read).
    pub fn datapath_state(&self, key: &VridKey) -> Option<&VridStats> {
        self.members.get(key).map(|m| &m.state)
    }

    /// Adverts of a VRID handed to its router from the datapath.
    pub fn fed(&self, key: &VridKey) -> u64 {
        self.members.get(key).map_or(0, |m| m.fed)
    }

    /// Whether the kernel keeps a VRID's down timer now, and its silences so far.
    pub fn kernel_timer(&self, key: &VridKey) -> KernelTimer {
        self.members
            .get(key)
            .map_or_else(KernelTimer::default, |m| KernelTimer {
                armed: m.kernel_armed && m.router.state() == State::Backup,
                silences: m.silences,
            })
    }

    /// The raw path's verdict counters per interface.
    pub fn iface_stats(&self) -> &BTreeMap<u32, IfaceStats> {
        &self.iface_stats
    }

    /// Keys whose deadline has come at `now`: the caller reads their kernel state and
    /// hands it in before [`EndpointInput::Timeout`].
    pub fn due(&self, now: Instant) -> Vec<VridKey> {
        let mut keys = Vec::new();
        self.due_into(now, &mut keys);
        keys
    }

    /// [`Endpoint::due`] into `keys` (cleared first), in key order.
    pub fn due_into(&self, now: Instant, keys: &mut Vec<VridKey>) {
        self.check_schedule();
        self.schedule.due(now, false, keys);
    }

    /// The keys of [`Endpoint::due`] whose routers are Backups, into `keys` (cleared
    /// first), in key order: those whose kernel state the caller reads (a Master's
    /// advert timer needs none).
    pub fn due_backups_into(&self, now: Instant, keys: &mut Vec<VridKey>) {
        self.check_schedule();
        self.schedule.due(now, true, keys);
    }

    /// [`Endpoint::due_into`], taking the keys off the schedule: each must be filed
    /// again (every one handed to [`Endpoint::master_tick`], and after it declines to
    /// [`Endpoint::timeout`], is).
    fn take_due(&mut self, now: Instant, due: &mut Vec<(VridKey, Kind)>) {
        self.check_schedule();
        self.schedule.take_due(now, due);
    }

    /// Whether [`Endpoint::poll_action`] has something.
    pub fn has_pending_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The priority of the advert that is the next thing to do, if it is one for `key`.
    pub fn next_advert(&self, key: &VridKey) -> Option<u8> {
        match self.actions.front() {
            Some((k, EndpointAction::Router(Action::SendAdvert { priority }))) if k == key => {
                Some(*priority)
            }
            _ => None,
        }
    }

    /// The next thing to do, with the VRID it is for, in order.
    pub fn poll_action(&mut self) -> Option<(VridKey, EndpointAction)> {
        self.actions.pop_front()
    }

    /// When to come back with [`EndpointInput::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.check_schedule();
        self.schedule.first()
    }

    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, now: Instant, input: EndpointInput) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.clear();
        if let Some(key) = input_key(&input) {
            self.cool(&key);
        }
        match input {
            EndpointInput::Datapath(Datapath::Event(e)) => {
                if let Some(key) = self.event(now, &e) {
                    touched.push(key);
                }
            }
            EndpointInput::Datapath(Datapath::Frame {
                ifindex,
                ts_ns,
                bytes,
            }) => {
                if let Some(key) = self.frame(ifindex, ts_ns, &bytes) {
                    touched.push(key);
                }
            }
            EndpointInput::KernelState {
                key,
                stats,
                timer_armed,
            } => {
                if let Some(m) = self.members.get_mut(&key) {
                    m.state = stats;
                    m.caught_up = false;
                    if timer_armed.is_some() {
                        m.kernel_read = timer_armed;
                    }
                }
            }
            EndpointInput::KernelTimer { key, since_ns } => {
                if let Some(m) = self.members.get_mut(&key) {
                    m.kernel_since = Some(since_ns);
                }
            }
            EndpointInput::Timeout => {
                let mut due = std::mem::take(&mut self.due);
                self.take_due(now, &mut due);
                for &(key, kind) in &due {
                    if let Kind::Steady(i) = kind {
                        self.steady_tick(now, key, i);
                    } else if !self.master_tick(now, key, &mut touched) {
                        self.timeout(now, key, &mut touched);
                    }
                }
                self.due = due;
            }
            EndpointInput::Refresh { key } => {
                if let Some(m) = self.members.get_mut(&key)
                    && m.router.state() == State::Backup
                {
                    let read = m.kernel_read.take();
                    self.refresh(now, key);
                    self.hand_back(key, read);
                    touched.push(key);
                }
            }
            EndpointInput::Startup { key } => self.input(now, key, Input::Startup, &mut touched),
            EndpointInput::Shutdown { key } => self.input(now, key, Input::Shutdown, &mut touched),
            EndpointInput::PriorityChanged { key, priority } => {
                // Adverts the datapath kept quiet were judged at the old priority.
                self.refresh(now, key);
                self.take_deadline_back(now, key);
                self.input(now, key, Input::PriorityChanged(priority), &mut touched)
            }
            EndpointInput::LinkDown { key } => self.input(now, key, Input::LinkDown, &mut touched),
            EndpointInput::LinkUp { key } => self.input(now, key, Input::LinkUp, &mut touched),
            EndpointInput::Fault { key, reason } => {
                self.input(now, key, Input::Fault { reason }, &mut touched)
            }
            EndpointInput::FaultCleared { key } => {
                self.input(now, key, Input::FaultCleared, &mut touched)
            }
            EndpointInput::MasterUnreachable {
                ifindex,
                master,
                at,
            } => {
                for key in self.bfd_candidates(ifindex, master) {
                    self.master_unreachable(now, key, master, at);
                    touched.push(key);
                }
            }
            EndpointInput::SyncHold { key, reason } => {
                self.input(now, key, Input::SyncHold { reason }, &mut touched)
            }
            EndpointInput::SyncRelease { key, reason } => {
                self.input(now, key, Input::SyncRelease { reason }, &mut touched)
            }
            EndpointInput::Reconfigure { key, config } => {
                self.refresh(now, key);
                self.take_deadline_back(now, key);
                if let Some(m) = self.members.get_mut(&key) {
                    let unicast = m.base.flags & validate::WATCH_UNICAST != 0;
                    match m.router.reconfigure(now, config) {
                        Ok(()) => {
                            m.base = base_entry(m.router.config(), unicast);
                            m.digest = address_digest(&m.router.config().virtual_addresses);
                        }
                        Err(e) => log_reconfigure(key, &e),
                    }
                    self.drain(key);
                    touched.push(key);
                }
            }
        }
        // In key order, once each, as a set would give them.
        touched.sort_unstable();
        touched.dedup();
        for &key in &touched {
            self.update_watch(now, key);
            self.reschedule(key);
        }
        self.touched = touched;
    }

    fn input(&mut self, now: Instant, key: VridKey, input: Input, touched: &mut Vec<VridKey>) {
        if let Some(m) = self.members.get_mut(&key) {
            m.router.handle(now, input);
            self.drain(key);
            touched.push(key);
        }
    }

    /// Moves a router's actions to the endpoint's queue.
    fn drain(&mut self, key: VridKey) {
        if let Some(m) = self.members.get_mut(&key) {
            drain_member(key, m, &mut self.actions);
        }
    }

    fn update_watch(&mut self, now: Instant, key: VridKey) {
        if let Some(m) = self.members.get_mut(&key) {
            // Only a Backup's deadline is ever the kernel's; it is handed back by the
            // next report (or a read of the armed timer) after it becomes Backup again.
            if m.router.state() != State::Backup {
                m.kernel_armed = false;
            }
            let mut e = m.entry(now);
            if e.priority != m.watched.priority {
                // A repeat may now be below (or no longer below) the local priority: the
                // router must hear the next one (a preempt delay starts from it).
                m.epoch = m.epoch.wrapping_add(1);
                e.epoch = m.epoch;
            }
            if e != m.watched {
                m.watched = e;
                self.actions.push_back((key, EndpointAction::Watch(e)));
            }
        }
    }

    /// A record from the XDP program.
    fn event(&mut self, now: Instant, e: &AdvertEvent) -> Option<VridKey> {
        self.cool(&VridKey {
            ifindex: e.ifindex,
            family: e.family,
            vrid: e.vrid,
            _pad: 0,
        });
        match e.event {
            EVENT_ADVERT => {}
            EVENT_SILENCE => return self.silence(now, e),
            EVENT_TIMER_ERROR => {
                let key = VridKey {
                    ifindex: e.ifindex,
                    family: e.family,
                    vrid: e.vrid,
                    _pad: 0,
                };
                let m = self.members.get_mut(&key)?;
                tracing::warn!(
                    ifindex = key.ifindex,
                    vrid = key.vrid,
                    "the kernel could not arm the down timer; the agent keeps it"
                );
                m.kernel_armed = false;
                return Some(key);
            }
            _ => return None,
        }
        if e.verdict != Verdict::Accept as u8 {
            return None;
        }
        let key = VridKey {
            ifindex: e.ifindex,
            family: e.family,
            vrid: e.vrid,
            _pad: 0,
        };
        let m = self.members.get(&key)?;
        let advert = m.advert(
            e.version,
            e.priority,
            e.interval,
            e.addr_count,
            e.addr_digest,
        );
        let source = address_of(e.family, &e.src);
        self.feed_run(key, e.first_ns, e.ts_ns, source, advert, true);
        Some(key)
    }

    /// A frame from the raw-socket path, judged and suppressed as the program would.
    fn frame(&mut self, ifindex: u32, ts_ns: u64, bytes: &[u8]) -> Option<VridKey> {
        let mut a = Advert::default();
        let parsed = validate::parse(bytes, &mut a);
        // A tagged frame belongs to the VLAN's sub-interface, not to this one's routers.
        let key = validate::watch_key(ifindex, &a);
        let verdict = match parsed {
            Parsed::NotVrrp => return None,
            Parsed::Broken(v) => v,
            Parsed::Vrrp => validate::check(
                bytes,
                &a,
                key.and_then(|k| self.members.get(&k)).map(|m| &m.watched),
            ),
        };
        self.iface_stats.entry(ifindex).or_default().count(verdict);
        if parsed != Parsed::Vrrp {
            return None;
        }
        let key = key?;
        self.cool(&key);
        let m = self.members.get_mut(&key)?;
        let w = m.watched;
        let mut digest = 0;
        m.caught_up = false;
        let fate = suppress::track(&mut m.state, &a, verdict, ts_ns, &w, || {
            digest = validate::address_digest(bytes, &a).unwrap_or(0);
            suppress::Attempt {
                digest,
                written: true,
            }
        });
        if fate != Some(Fate::Report) {
            return None;
        }
        let first = m.state.first_ns;
        let advert = m.advert(a.version, a.priority, a.interval, a.addr_count, digest);
        self.feed_run(
            key,
            first,
            ts_ns,
            address_of(a.family, &a.src),
            advert,
            true,
        );
        Some(key)
    }

    /// Hands the router of `key` a run of identical adverts known by its first and last
    /// arrival. The first too, if a Backup has not heard it (its report was lost): a
    /// preempt delay starts from it. And if that delay ended before the last one
    /// arrived, repeats arrived while it ran that nobody recorded: one is taken at its
    /// last instant, so the timer runs late rather than early. Then the last.
    fn feed_run(
        &mut self,
        key: VridKey,
        first_ns: u64,
        last_ns: u64,
        source: IpAddr,
        advert: Advertisement,
        fresh: bool,
    ) {
        let backup_behind = self
            .members
            .get(&key)
            .is_some_and(|m| m.router.state() == State::Backup && first_ns > m.fed_ns);
        if backup_behind && first_ns < last_ns {
            self.feed(key, first_ns, source, advert.clone(), false);
            let end = self
                .members
                .get(&key)
                .and_then(|m| m.router.preempt_delay_until())
                .map(|u| u.as_nanos().saturating_sub(1));
            if let Some(end) = end
                && end > first_ns
                && end < last_ns
            {
                self.feed(key, end, source, advert.clone(), false);
            }
        }
        self.feed(key, last_ns, source, advert, fresh);
    }

    /// Hands an advert that arrived at `ts_ns` to the router of `key`.
    fn feed(
        &mut self,
        key: VridKey,
        ts_ns: u64,
        source: IpAddr,
        advert: Advertisement,
        fresh: bool,
    ) {
        let Some(m) = self.members.get_mut(&key) else {
            return;
        };
        m.caught_up = false;
        let was_master = m.router.state() == State::Master;
        let sent = m.router.counters().adverts_sent;
        let (priority, interval) = (advert.priority, advert.interval);
        let at = Instant::from_nanos(ts_ns);
        let at_heard = Instant::from_nanos(ts_ns);
        let new_peer = m
            .peers
            .as_mut()
            .is_some_and(|t| t.heard(source, priority, at_heard));
        m.router.handle(at, Input::Advert { source, advert });
        if ts_ns >= m.fed_ns {
            m.fed_ns = ts_ns;
            m.fed_what = Some((source, priority, interval));
        }
        if fresh {
            m.fed += 1;
            m.armed_ns = m.armed_ns.max(ts_ns);
            // Every advert the kernel reports (re)starts its down timer, when it had the
            // parameters by the time the advert arrived. The kernel counts any valid
            // advert as the Master's: one the router discarded (a v2 address list that
            // differs, RFC 3768 §7.1) leaves the deadline with the agent.
            m.kernel_armed = m.router.state() == State::Backup
                && m.kernel_since.is_some_and(|since| ts_ns >= since)
                && m.router.down_timer_anchor() == at;
        }
        // A Master that stays Master and answers at once has heard a worse master (a
        // priority-0 advert is answered too, but is a goodbye, not a rival).
        let rival = was_master
            && m.router.state() == State::Master
            && m.router.counters().adverts_sent > sent
            && priority != 0;
        self.drain(key);
        if new_peer {
            self.actions
                .push_back((key, EndpointAction::Peer { address: source }));
        }
        if rival {
            self.actions.push_back((
                key,
                EndpointAction::Rival {
                    source,
                    priority,
                    interval,
                    at,
                },
            ));
        }
    }

    /// BFD-assisted takeover: the Backup that would win treats its
    /// critical session going down as the Master_Down_Timer expiring; the router checks
    /// that no advert came after it.
    fn master_unreachable(&mut self, now: Instant, key: VridKey, master: IpAddr, at: Instant) {
        self.cool(&key);
        let Some(m) = self.members.get(&key) else {
            return;
        };
        let wins = m
            .peers
            .as_ref()
            .is_some_and(|t| t.would_win(m.router.primary(), m.router.priority(), master));
        if !wins {
            tracing::info!(
                ifindex = key.ifindex,
                vrid = key.vrid,
                "BFD session to the master {master} down; another Backup may outrank us, the RFC timer decides"
            );
            return;
        }
        self.refresh(now, key);
        self.input(
            now,
            key,
            Input::MasterUnreachable { master, at },
            &mut Vec::new(),
        );
    }

    /// Skew_Time (and with a reload, the interval) changed: the kernel's timer runs to an
    /// expiry computed before, until the next advert re-arms it. The agent's own timer
    /// keeps the deadline meanwhile.
    fn take_deadline_back(&mut self, now: Instant, key: VridKey) {
        if let Some(m) = self.members.get_mut(&key) {
            m.kernel_armed = false;
            m.changed_ns = now.as_nanos();
        }
    }

    /// A Master's Adver_Timer in the steady state, in one visit to its member: what
    /// [`Endpoint::timeout`] and the watch update after it do, where the refresh has
    /// nothing to hand in ([`Member::caught_up`]). A watch entry that would change after
    /// all is left to the caller's update (the key goes to `touched`). `false`: not such
    /// a Master; nothing was done.
    fn master_tick(&mut self, now: Instant, key: VridKey, touched: &mut Vec<VridKey>) -> bool {
        let Some(m) = self.members.get_mut(&key) else {
            return false;
        };
        // Its entry was taken off the schedule with the others due.
        m.scheduled = None;
        if !(m.caught_up && m.router.state() == State::Master) {
            return false;
        }
        m.kernel_read = None;
        m.router.handle(now, Input::Timeout);
        drain_member(key, m, &mut self.actions);
        if m.router.state() != State::Backup {
            m.kernel_armed = false;
        }
        if m.entry(now) != m.watched {
            touched.push(key);
            return true;
        }
        file(&mut self.schedule, key, m);
        // Nothing queued and nothing to refresh: until anything else happens to it, its
        // next rounds are its Adver_Timer's alone.
        if m.caught_up
            && !m.kernel_armed
            && let Some(timer) = m.router.lend_adver_timer()
        {
            self.hold_steady(key, timer);
        }
        true
    }

    /// A due router: [`Endpoint::refresh`], then the timeout.
    fn timeout(&mut self, now: Instant, key: VridKey, touched: &mut Vec<VridKey>) {
        let Some(m) = self.members.get_mut(&key) else {
            return;
        };
        touched.push(key);
        let read = m.kernel_read.take();
        if m.kernel_armed && m.router.state() == State::Backup && read.is_none() {
            // Due for another reason (the end of a preempt delay); the down deadline is
            // the kernel's, and without the state just read the router's is stale.
            return;
        }
        self.refresh(now, key);
        self.input(now, key, Input::Timeout, touched);
        self.hand_back(key, read);
    }

    /// After a Backup's deadline was judged, or moved by a refresh, with the kernel's
    /// timer `read` as armed or not: the Master is alive and the kernel's timer runs from
    /// its adverts (it had gone idle while this router was Master or in Fault, and an
    /// advert re-armed it), so the deadline is the kernel's again.
    /// Not when the router's deadline is the earlier one (a timer started afresh, as
    /// on leaving Fault, runs from now, not from the last advert), nor before an
    /// advert has re-armed the kernel's timer since the last change of priority or
    /// configuration (until then its expiry is the old one).
    fn hand_back(&mut self, key: VridKey, read: Option<bool>) {
        if let Some(m) = self.members.get_mut(&key)
            && m.router.state() == State::Backup
            && m.kernel_since.is_some()
            && read == Some(true)
            && m.state.last_ns >= m.changed_ns
            && m.kernel_deadline() <= m.router.poll_timeout()
        {
            m.kernel_armed = true;
        }
    }

    /// Hands a Backup the VRID's last arrival from the datapath's state, if the router
    /// has not seen it: the master may have spoken since the last report. Done before
    /// the down timer is judged, and before any input that changes how adverts are
    /// judged (the priority), so that the quiet adverts count as what they were.
    fn refresh(&mut self, now: Instant, key: VridKey) {
        let Some(m) = self.members.get_mut(&key) else {
            return;
        };
        let master = m.router.state() == State::Master;
        if master && m.caught_up {
            return;
        }
        let s = m.state;
        // A Master is handed nothing here: once the state's times have passed, a second
        // look at the same state, with no advert fed in between, finds what the first
        // found and changes nothing.
        m.caught_up = master && s.lost_ns <= now.as_nanos() && s.last_ns <= now.as_nanos();
        // Built from the state's own source, priority and interval, not from the last
        // report: a report lost to a full ring, or raced by another CPU, must not make
        // the Backup believe the wrong master.
        let source = address_of(key.family, &s.last_src);
        let what = (
            source,
            s.last_priority,
            interval_of(s.last_version, s.last_interval),
        );
        // Newer than what the router heard; or as new, but another advert (two arrived
        // at once, and the one the state kept was not the one reported).
        let newer = s.last_ns > m.fed_ns || (s.last_ns == m.fed_ns && m.fed_what != Some(what));
        // A report lost to a full ring (or raced by another CPU) since the router last
        // heard from the datapath: it may have said something the preempt delay
        // depends on.
        if newer && s.lost_ns > m.lost_ns && s.lost_ns <= now.as_nanos() {
            m.lost_ns = s.lost_ns;
            m.router.report_lost(
                Instant::from_nanos(s.lost_ns),
                Instant::from_nanos(s.first_ns),
                m.fed_ns >= s.first_ns,
            );
        }
        if m.router.state() == State::Backup
            && newer
            && s.last_ns <= now.as_nanos()
            && s.last_version != 0
        {
            let advert = m.advert(
                s.last_version,
                s.last_priority,
                s.last_interval,
                s.last_addr_count,
                s.last_digest,
            );
            self.feed_run(key, s.first_ns, s.last_ns, source, advert, false);
        }
        if let Some(m) = self.members.get_mut(&key)
            && s.last_ns <= now.as_nanos()
        {
            m.armed_ns = m.armed_ns.max(s.last_ns);
        }
        // The last advert the datapath dropped as below the local priority, which the
        // router would have discarded too: handed in so that it knows whom it preempts.
        let Some(m) = self.members.get(&key) else {
            return;
        };
        if m.router.state() == State::Backup
            && s.ignored_ns > m.fed_ns
            && s.ignored_ns <= now.as_nanos()
        {
            let version = m.base.version;
            let count = u8::try_from(m.router.config().virtual_addresses.len()).unwrap_or(0);
            let advert = m.advert(
                version,
                s.ignored_priority,
                s.ignored_interval,
                count,
                m.digest,
            );
            let source = address_of(key.family, &s.ignored_src);
            self.feed(key, s.ignored_ns, source, advert, false);
        }
    }

    /// The kernel's down timer of a VRID found its Master silent since `T`
    /// (`e.ts_ns`) for deadline `D` (`e.deadline_ns`): the router gets the VRID's last
    /// advert at T, then, as if the agent's own timer had fired at D, the timeout at D.
    /// The kernel fires a little ahead of D (its alarm) so that the agent is awake for
    /// it: until D comes, the router's own down timer keeps the deadline, and at D the
    /// caller reads the newest arrival before the router judges, as for any timeout of
    /// a Backup. A silence older than an advert reported since is stale: that report
    /// re-armed the kernel's timer.
    fn silence(&mut self, now: Instant, e: &AdvertEvent) -> Option<VridKey> {
        let key = VridKey {
            ifindex: e.ifindex,
            family: e.family,
            vrid: e.vrid,
            _pad: 0,
        };
        let m = self.members.get_mut(&key)?;
        if m.kernel_armed && e.ts_ns < m.armed_ns {
            return None;
        }
        m.silences += 1;
        m.kernel_armed = false;
        // Never before a change the router has already seen.
        let at = Instant::from_nanos(e.deadline_ns.max(m.changed_ns));
        if m.router.state() == State::Backup && e.ts_ns > m.fed_ns && e.version != 0 {
            let advert = m.advert(
                e.version,
                e.priority,
                e.interval,
                e.addr_count,
                e.addr_digest,
            );
            self.feed(key, e.ts_ns, address_of(e.family, &e.src), advert, false);
        }
        if at > now {
            return Some(key);
        }
        self.input(at, key, Input::Timeout, &mut Vec::new());
        Some(key)
    }
}

/// The router an input names, if it names one.
fn input_key(input: &EndpointInput) -> Option<VridKey> {
    match input {
        EndpointInput::KernelState { key, .. }
        | EndpointInput::KernelTimer { key, .. }
        | EndpointInput::Refresh { key }
        | EndpointInput::Startup { key }
        | EndpointInput::Shutdown { key }
        | EndpointInput::PriorityChanged { key, .. }
        | EndpointInput::LinkDown { key }
        | EndpointInput::LinkUp { key }
        | EndpointInput::Fault { key, .. }
        | EndpointInput::FaultCleared { key }
        | EndpointInput::SyncHold { key, .. }
        | EndpointInput::SyncRelease { key, .. }
        | EndpointInput::Reconfigure { key, .. } => Some(*key),
        EndpointInput::Datapath(_)
        | EndpointInput::Timeout
        | EndpointInput::MasterUnreachable { .. } => None,
    }
}

/// Files member `m` of `key` in `schedule` under its current deadline.
fn file(schedule: &mut Schedule, key: VridKey, m: &mut Member) {
    let next = m.filed();
    schedule.refile(key, m.scheduled, next);
    m.scheduled = next;
}

/// Moves the actions of member `m` of `key` to `actions`.
fn drain_member(key: VridKey, m: &mut Member, actions: &mut VecDeque<(VridKey, EndpointAction)>) {
    while let Some(a) = m.router.poll_action() {
        if let Action::StateChanged(t) = &a
            && t.to == State::Backup
            && matches!(t.from, State::Initialize | State::Fault)
        {
            // A router that starts listening must hear the next advert, repeat or not,
            // to learn its master's interval (RFC 5798 §6.4.2).
            m.epoch = m.epoch.wrapping_add(1);
        }
        actions.push_back((key, EndpointAction::Router(a)));
    }
}

fn log_reconfigure(key: VridKey, e: &ReconfigureError) {
    tracing::warn!(
        ifindex = key.ifindex,
        vrid = key.vrid,
        "configuration not applied to the running router: {e}"
    );
}

mod first_adverts;
mod schedule;

#[cfg(test)]
mod bfd_tests;
#[cfg(test)]
mod kernel_timer_tests;
#[cfg(test)]
mod tests;
