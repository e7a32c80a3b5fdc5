//! The VRRP election for one virtual router, sans-IO in the manner of quinn-proto.
//!
//! [`VirtualRouter::handle`] takes an [`Input`] and the time it happened;
//! [`VirtualRouter::poll_action`] hands out what to do about it;
//! [`VirtualRouter::poll_timeout`] says when to come back with [`Input::Timeout`]. No
//! socket, clock or task lives here, so the simulator can run thousands of routers on a
//! virtual clock and get the same answers the daemon would.
//!
//! For a received advertisement, `now` is its arrival time (the kernel's timestamp from
//! XDP), not the time it is handled: the Master_Down_Timer runs from arrival. Arrival
//! times may lag the `now` of inputs handled before. An advertisement that arrived before
//! the one the timer already runs from changes nothing (it would have been superseded had
//! it been handled in order), and handing the latest advertisement in again with its own
//! arrival time re-arms the timer exactly as it was: the datapath may do that instead of
//! waking the agent for every packet.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use vigil_common::down;

use crate::vrrp::packet::{
    Advertisement, Auth, ChecksumMode, PRIORITY_OWNER, PRIORITY_STOP, Version,
    interval_centiseconds,
};
use crate::vrrp::reason::{FaultKind, Reason};
use crate::vrrp::time::Instant;

/// Default `down_timer_adverts`: the 3 of RFC 5798 §6.1's Master_Down_Interval.
pub const DEFAULT_DOWN_TIMER_ADVERTS: u8 = 3;
/// Least time between two re-announcements a lower-priority master causes (keepalived's
/// `garp_lower_prio_delay` default). keepalived re-announces on every such advert; the gap
/// keeps a peer that cannot hear this Master (one-way loss) from making it send a burst
/// every advert interval.
pub const LOWER_PRIORITY_ANNOUNCE_GAP: Duration = Duration::from_secs(5);
/// Largest `down_timer_adverts` keepalived accepts.
pub const MAX_DOWN_TIMER_ADVERTS: u8 = 100;

/// State of a virtual router (RFC 5798 §6.4, plus keepalived's Fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Not started, or shut down (RFC 5798 §6.4.1).
    Initialize,
    /// Watching the master (RFC 5798 §6.4.2).
    Backup,
    /// Forwarding for the virtual addresses (RFC 5798 §6.4.3).
    Master,
    /// Interface down or a tracked failure: neither sends nor listens (keepalived).
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        })
    }
}

/// keepalived's `state`: where an instance below priority 255 wants to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    /// Start as Backup (the RFC).
    #[default]
    Backup,
    /// keepalived `state MASTER`: priority 255 becomes Master at once (as the RFC has it
    /// anyway); below 255 it still starts as Backup and waits one Master_Down_Interval
    /// (measured against keepalived 2.2.7: 3.25 s at 1 s, priority 200), and, as in
    /// keepalived, preemption is forced on and `preempt_delay` cleared.
    Master,
}

/// Configuration of one virtual router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Protocol version.
    pub version: Version,
    /// Configured priority, 1..=255; 255 means this router owns the addresses.
    pub priority: u8,
    /// Advertisement_Interval: v2 whole seconds 1..=255, v3 10 ms steps up to 40.95 s.
    pub advert_interval: Duration,
    /// Preempt_Mode (RFC 5798 §6.1).
    pub preempt: bool,
    /// keepalived `preempt_delay`: after startup, or from the first lower-priority advert,
    /// keep accepting a lower-priority master's adverts this long before preempting it.
    pub preempt_delay: Duration,
    /// Advert intervals in Master_Down_Interval (keepalived `down_timer_adverts`, 1..=100).
    pub down_timer_adverts: u8,
    /// Accept_Mode (RFC 5798 §6.1), carried for the daemon; the election ignores it.
    pub accept_mode: bool,
    /// keepalived `state`.
    pub initial_state: InitialState,
    /// The virtual addresses, all of the primary address's family.
    pub virtual_addresses: Vec<IpAddr>,
    /// VRRPv2 authentication; must be [`Auth::None`] for v3.
    pub auth: Auth,
    /// Compute the v3 IPv4 checksum without the pseudo-header (keepalived
    /// `v3_checksum_as_v2`).
    pub v3_checksum_as_v2: bool,
}

impl RouterConfig {
    /// A configuration with the RFC's defaults: 1 s interval, preempt on, no delay,
    /// Master_Down_Interval of 3 intervals, accept mode off, start as Backup, no auth.
    pub fn new(
        vrid: u8,
        version: Version,
        priority: u8,
        virtual_addresses: Vec<IpAddr>,
    ) -> RouterConfig {
        RouterConfig {
            vrid,
            version,
            priority,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            down_timer_adverts: DEFAULT_DOWN_TIMER_ADVERTS,
            accept_mode: false,
            initial_state: InitialState::Backup,
            virtual_addresses,
            auth: Auth::None,
            v3_checksum_as_v2: false,
        }
    }

    /// The checksum mode for encoding and decoding this router's adverts.
    pub fn checksum_mode(&self) -> ChecksumMode {
        if self.v3_checksum_as_v2 {
            ChecksumMode::AsV2
        } else {
            ChecksumMode::PseudoHeader
        }
    }

    /// Checks every field against what the protocol can carry, for a router whose
    /// primary address is `primary`.
    pub fn validate(&self, primary: IpAddr) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if self.priority == 0 {
            return Err(ConfigError::Priority);
        }
        if !(1..=MAX_DOWN_TIMER_ADVERTS).contains(&self.down_timer_adverts) {
            return Err(ConfigError::DownTimerAdverts(self.down_timer_adverts));
        }
        if representable_interval(self.version, self.advert_interval) != Some(self.advert_interval)
        {
            return Err(ConfigError::Interval(self.advert_interval));
        }
        if self.version == Version::V2 && primary.is_ipv6() {
            return Err(ConfigError::V2OverIpv6);
        }
        if self.version == Version::V3 && self.auth != Auth::None {
            return Err(ConfigError::AuthOnV3);
        }
        if self.virtual_addresses.len() > 255 {
            return Err(ConfigError::TooManyAddresses(self.virtual_addresses.len()));
        }
        if let Some(bad) = self
            .virtual_addresses
            .iter()
            .find(|a| a.is_ipv4() != primary.is_ipv4())
        {
            return Err(ConfigError::AddressFamily(*bad));
        }
        Ok(())
    }
}

/// A configuration value the protocol cannot carry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// VRID 0.
    #[error("vrid must be 1..=255 (RFC 5798 §5.2.3)")]
    Vrid,
    /// Priority 0.
    #[error("priority must be 1..=255; 0 is reserved for a stopping master (RFC 5798 §5.2.4)")]
    Priority,
    /// `down_timer_adverts` out of range.
    #[error("down_timer_adverts {0} is outside 1..=100")]
    DownTimerAdverts(u8),
    /// Interval the version cannot carry.
    #[error(
        "advert_interval {0:?}: VRRPv2 takes whole seconds 1..=255, VRRPv3 10 ms steps from 10 ms to 40.95 s"
    )]
    Interval(Duration),
    /// VRRPv2 with an IPv6 primary address.
    #[error("VRRPv2 is IPv4 only (RFC 3768)")]
    V2OverIpv6,
    /// Authentication on VRRPv3.
    #[error("VRRPv3 has no authentication (RFC 5798 §9)")]
    AuthOnV3,
    /// More than 255 addresses.
    #[error("{0} virtual addresses; an advert carries at most 255")]
    TooManyAddresses(usize),
    /// An address of the other family.
    #[error("virtual address {0} is not of the primary address's family")]
    AddressFamily(IpAddr),
}

/// A configuration change [`VirtualRouter::reconfigure`] cannot apply in place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigureError {
    /// Another VRID is another router.
    #[error("the VRID changed: that is another virtual router")]
    Vrid,
    /// Another version speaks another protocol.
    #[error("the VRRP version changed: the router must restart")]
    Version,
}

/// The nearest interval `version` can carry.
fn representable_interval(version: Version, interval: Duration) -> Option<Duration> {
    match version {
        Version::V2 => {
            let secs = interval.as_secs_f64().round().clamp(1.0, 255.0);
            // `secs` is a whole number in 1..=255 after the clamp.
            Some(Duration::from_secs(secs as u64))
        }
        Version::V3 => {
            let cs = (interval.as_secs_f64() * 100.0).round().clamp(1.0, 4095.0);
            let d = Duration::from_millis(cs as u64 * 10);
            interval_centiseconds(d).map(|_| d)
        }
    }
}

/// Something that happened to a virtual router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Start the protocol (RFC 5798 §6.4.1).
    Startup,
    /// Stop it: a Master sends priority 0 and drops the addresses (RFC 5798 §6.4.3).
    Shutdown,
    /// An advertisement arrived; `now` is its arrival time.
    Advert {
        /// Source address of the IP packet: the sender's primary address.
        source: IpAddr,
        /// The decoded advertisement.
        advert: Advertisement,
    },
    /// The deadline of [`VirtualRouter::poll_timeout`] came; ignored if it has not.
    Timeout,
    /// Effective priority changed (tracking weights); kept in 1..=254, or 1..=255 for an
    /// address owner.
    PriorityChanged(u8),
    /// The interface went down: Fault.
    LinkDown,
    /// The interface came back; leaves Fault unless [`Input::Fault`] holds it there.
    LinkUp,
    /// A tracked failure: Fault.
    Fault {
        /// What failed, for the transition's reason.
        reason: String,
    },
    /// The tracked failure is over; leaves Fault unless the link is down.
    FaultCleared,
    /// The critical BFD session to `master` went down at `at` (BFD-assisted takeover):
    /// a Backup that still takes `master` for the Master, and has heard nothing from it
    /// since `at`, treats the Master_Down_Timer as expired. Otherwise ignored. Whether
    /// this router is the Backup that would win is the caller's to judge.
    MasterUnreachable {
        /// The Master the session ran to.
        master: IpAddr,
        /// When the session's detection time ran out.
        at: Instant,
    },
    /// Its sync group cannot be Master here: a Master steps down (with a priority-0
    /// advert), and a Backup whose Master_Down_Timer fires stays Backup, remembering
    /// that it would have taken over ([`VirtualRouter::wants_master`]).
    SyncHold {
        /// Why, for the transition's reason.
        reason: String,
    },
    /// Every member of its sync group can be Master: a held Backup that would have taken
    /// over does so now.
    SyncRelease {
        /// Why, for the transition's reason.
        reason: String,
    },
}

/// Something the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The router changed state; comes before the actions the change causes.
    StateChanged(Transition),
    /// Send an advertisement with this priority ([`VirtualRouter::advertisement`] builds it).
    SendAdvert {
        /// Priority to advertise: the effective priority, or 0 when stopping.
        priority: u8,
    },
    /// Add the virtual addresses ([`VirtualRouter::virtual_addresses`]) to the interface.
    AddAddresses,
    /// Remove the virtual addresses.
    RemoveAddresses,
    /// Gratuitous ARP (IPv4) or unsolicited Neighbor Advertisement (IPv6) for each address
    /// (RFC 5798 §6.4.1, §6.4.2).
    Announce,
    /// Announce the addresses again, on the lower-priority schedule (keepalived's
    /// `garp_lower_prio_*`): this Master heard a lower-priority one, so hosts' caches may
    /// point at the other router since a split brain.
    Reannounce,
}

/// One state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// When (the `now` of the input that caused it).
    pub at: Instant,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {}", self.from, self.to, self.reason)
    }
}

/// Counts of what the router did with its inputs, for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Advertisements handed in.
    pub adverts_received: u64,
    /// Of those, with priority 0.
    pub priority_zero_received: u64,
    /// Discarded: not in Backup or Master.
    pub discarded_not_listening: u64,
    /// Discarded: another VRID.
    pub discarded_vrid: u64,
    /// Discarded: another version.
    pub discarded_version: u64,
    /// Discarded: another address family.
    pub discarded_family: u64,
    /// Discarded: sent from our own primary address.
    pub discarded_own: u64,
    /// Discarded: v2 authentication mismatch (RFC 3768 §7.1).
    pub discarded_auth: u64,
    /// Discarded: v2 interval differs from ours (RFC 3768 §7.1).
    pub discarded_interval: u64,
    /// Discarded: we are the address owner (RFC 5798 §7.1).
    pub discarded_owner: u64,
    /// Address list differs from ours (RFC 5798 §7.1 "SHOULD log"; v2 drops it).
    pub address_list_mismatch: u64,
    /// Discarded: arrived before the advert the down timer already runs from.
    pub discarded_stale: u64,
    /// Discarded by a Backup: lower priority, preemption on (RFC 5798 §6.4.2).
    pub discarded_lower_priority: u64,
    /// Adverts sent (SendAdvert actions issued), priority 0 included.
    pub adverts_sent: u64,
    /// Times the router became Master.
    pub became_master: u64,
}

/// Who the Backup believes is Master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Heard {
    address: IpAddr,
    priority: u8,
}

/// What last set the Master_Down_Timer, and when; the deadline is computed from the
/// current priority and Master_Adver_Interval so that both may change meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DownTimer {
    /// Startup or fault recovery: a full Master_Down_Interval.
    Start { anchor: Instant },
    /// An accepted advert: a full Master_Down_Interval from its arrival.
    Advert { anchor: Instant },
    /// A priority-0 advert: Skew_Time from its arrival (RFC 5798 §6.4.2).
    PriorityZero { anchor: Instant, master: IpAddr },
}

impl DownTimer {
    fn anchor(self) -> Instant {
        match self {
            DownTimer::Start { anchor }
            | DownTimer::Advert { anchor }
            | DownTimer::PriorityZero { anchor, .. } => anchor,
        }
    }
}

/// One VRRP virtual router: the state machine of RFC 5798 §6.4 / RFC 3768 §6.4.
#[derive(Clone, Debug)]
pub struct VirtualRouter {
    cfg: RouterConfig,
    primary: IpAddr,
    state: State,
    priority: u8,
    master_adver_interval: Duration,
    down: DownTimer,
    adver_at: Instant,
    heard: Option<Heard>,
    lower: Option<Heard>,
    preempt_until: Option<Instant>,
    /// When a lower-priority master last made this Master announce its addresses.
    lower_announced: Option<Instant>,
    link_down: bool,
    fault: Option<String>,
    /// Held in Backup by its sync group.
    sync_hold: bool,
    /// Held while its Master_Down_Timer fired (or as the owner): why it would be Master.
    wants_master: Option<Reason>,
    actions: VecDeque<Action>,
    last_transition: Option<Transition>,
    counters: Counters,
    /// Skew_Time and Master_Down_Interval for the (priority, Master_Adver_Interval) they
    /// were computed from: a daemon with hundreds of routers asks for every deadline on
    /// every wake-up, and the 128-bit division behind Skew_Time is not free.
    timing: std::cell::Cell<Option<(u8, Duration, Duration, Duration)>>,
}

impl VirtualRouter {
    /// A router in Initialize, waiting for [`Input::Startup`].
    ///
    /// `primary` is the address adverts go out from (RFC 5798 §6.1 "primary IP address").
    /// Values outside what the protocol carries are brought into range (priority into
    /// 1..=255, `down_timer_adverts` into 1..=100, the interval to the nearest one the
    /// version carries, addresses of the other family dropped); call
    /// [`RouterConfig::validate`] first to reject them instead.
    pub fn new(cfg: RouterConfig, primary: IpAddr) -> VirtualRouter {
        let cfg = normalise(cfg, primary);
        VirtualRouter {
            priority: cfg.priority,
            master_adver_interval: cfg.advert_interval,
            primary,
            state: State::Initialize,
            down: DownTimer::Start {
                anchor: Instant::ZERO,
            },
            adver_at: Instant::ZERO,
            heard: None,
            lower: None,
            preempt_until: None,
            lower_announced: None,
            link_down: false,
            fault: None,
            sync_hold: false,
            wants_master: None,
            actions: VecDeque::new(),
            timing: std::cell::Cell::new(None),
            last_transition: None,
            counters: Counters::default(),
            cfg,
        }
    }

    /// Applies a changed configuration to the running router without restarting it: the
    /// state, the timers and the master it knows are kept. A new configured priority
    /// takes effect as [`Input::PriorityChanged`] would (a Master advertises it at once;
    /// nothing sends priority 0, and nothing changes state unless the election requires
    /// it, e.g. the address owner's 255); a new interval takes effect at the next timer;
    /// preempt, preempt delay, `down_timer_adverts`, authentication and checksum style at
    /// once. New virtual addresses go into the adverts at once; moving the addresses
    /// themselves is the caller's (it knows the old list). The VRID, the version and the
    /// address family cannot change: that is another router.
    pub fn reconfigure(&mut self, now: Instant, cfg: RouterConfig) -> Result<(), ReconfigureError> {
        let cfg = normalise(cfg, self.primary);
        if cfg.vrid != self.cfg.vrid {
            return Err(ReconfigureError::Vrid);
        }
        if cfg.version != self.cfg.version {
            return Err(ReconfigureError::Version);
        }
        let old = std::mem::replace(&mut self.cfg, cfg);
        // Skew_Time and Master_Down_Interval depend on down_timer_adverts too.
        self.timing.set(None);
        if self.cfg.preempt_delay.is_zero() {
            self.preempt_until = None;
        }
        let interval = self.cfg.advert_interval;
        match self.state {
            State::Master => {
                if interval < old.advert_interval {
                    self.adver_at = self.adver_at.min(now + interval);
                }
                self.master_adver_interval = interval;
            }
            // RFC 3768 has no learnt interval; v3 keeps the master's until it is heard.
            State::Backup if self.cfg.version == Version::V2 || self.heard.is_none() => {
                self.master_adver_interval = interval;
            }
            _ => {}
        }
        // Tracking weights move the effective priority around the configured one; keep
        // the offset they give, within the same bounds as PriorityChanged.
        if self.cfg.priority != old.priority {
            let offset = i16::from(self.priority) - i16::from(old.priority);
            let wanted = (i16::from(self.cfg.priority) + offset).clamp(1, 255);
            let wanted = u8::try_from(wanted).unwrap_or(self.cfg.priority);
            self.set_priority(now, wanted);
        }
        Ok(())
    }

    /// Whether, at `now`, this router discards every advert below its priority other than
    /// priority 0 (RFC 5798 §6.4.2): a Backup with Preempt_Mode on and no preempt delay
    /// running. Only then may a datapath drop such adverts before they reach it.
    pub fn discards_lower_priority(&self, now: Instant) -> bool {
        // Time is whole nanoseconds: the delay holds for no advert after `now` once `now`
        // is its last instant.
        let holds_after = !self.cfg.preempt_delay.is_zero()
            && self
                .preempt_until
                .is_none_or(|until| until > now + Duration::from_nanos(1));
        self.state == State::Backup && self.cfg.preempt && !holds_after
    }

    /// What the Master_Down_Timer runs from: the advert it last heard as its Master's (or
    /// the start of the wait, with none).
    pub fn down_timer_anchor(&self) -> Instant {
        self.down.anchor()
    }

    /// When the running preempt delay ends, if one runs (Backup only): the first instant
    /// at which a lower-priority advert is no longer heard.
    pub fn preempt_delay_until(&self) -> Option<Instant> {
        if self.state != State::Backup || self.cfg.preempt_delay.is_zero() {
            return None;
        }
        self.preempt_until
    }

    /// Reports were lost: the last at `lost`; the run of like adverts the router now
    /// hears began at `run`, and `run_heard` says whether the router got its first.
    /// An advert the router never heard between the start of its preempt delay and the
    /// run may have been one not below its priority, which ends the delay, and the run's
    /// first would then have started it anew: restart it from `run` (it may end later
    /// than it would have, never earlier).
    pub fn report_lost(&mut self, lost: Instant, run: Instant, run_heard: bool) {
        if self.state != State::Backup {
            return;
        }
        let Some(until) = self.preempt_until else {
            return;
        };
        let start = Instant::from_nanos(
            until
                .as_nanos()
                .saturating_sub(u64::try_from(self.cfg.preempt_delay.as_nanos()).unwrap_or(0)),
        );
        let unheard_before_run = !run_heard || (start <= lost && lost < run);
        if unheard_before_run && start <= run {
            self.preempt_until = Some(until.max(run + self.cfg.preempt_delay));
        }
    }

    /// keepalived's preempt_delay: while it runs (it starts at startup, fault recovery or
    /// the first lower-priority advert), a lower-priority advert is taken as if
    /// preemption were off.
    fn delay_holds(&self, now: Instant) -> bool {
        !self.cfg.preempt_delay.is_zero() && self.preempt_until.is_none_or(|until| until > now)
    }

    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Startup => self.startup(now),
            Input::Shutdown => self.shutdown(now),
            Input::Advert { source, advert } => self.receive(now, source, &advert),
            Input::Timeout => self.timeout(now),
            Input::PriorityChanged(p) => self.set_priority(now, p),
            Input::LinkDown => {
                self.link_down = true;
                self.enter_fault(now, FaultKind::LinkDown);
            }
            Input::LinkUp => {
                self.link_down = false;
                self.leave_fault(now);
            }
            Input::Fault { reason } => {
                self.fault = Some(reason.clone());
                self.enter_fault(now, FaultKind::Tracked(reason));
            }
            Input::FaultCleared => {
                self.fault = None;
                self.leave_fault(now);
            }
            Input::MasterUnreachable { master, at } => self.master_unreachable(now, master, at),
            Input::SyncHold { reason } => self.hold(now, reason),
            Input::SyncRelease { reason } => self.release(now, reason),
        }
    }

    /// Whether it would be Master but for its sync group: Master already, or a held
    /// Backup whose Master_Down_Timer fired with no better master heard since.
    pub fn wants_master(&self) -> bool {
        self.state == State::Master || (self.state == State::Backup && self.wants_master.is_some())
    }

    /// Whether its own interface is down (as opposed to a tracked fault).
    pub fn link_is_down(&self) -> bool {
        self.link_down
    }

    /// Whether its sync group holds it out of Master.
    pub fn is_held(&self) -> bool {
        self.sync_hold
    }

    fn hold(&mut self, now: Instant, reason: String) {
        self.sync_hold = true;
        if self.state == State::Master {
            // keepalived leaves Master for the group; priority 0 lets the peer's member
            // take over after Skew_Time rather than a whole Master_Down_Interval.
            self.transition(now, State::Backup, Reason::SyncGroup(reason));
            self.send(PRIORITY_STOP);
            self.actions.push_back(Action::RemoveAddresses);
            self.master_adver_interval = self.cfg.advert_interval;
            self.down = DownTimer::Start { anchor: now };
            self.heard = None;
            self.lower = None;
            self.wants_master = None;
        }
    }

    fn release(&mut self, now: Instant, reason: String) {
        self.sync_hold = false;
        if self.state == State::Backup && self.wants_master.take().is_some() {
            self.become_master(now, Reason::SyncGroup(reason));
        }
    }

    /// Whether [`VirtualRouter::poll_action`] has something; lets a daemon with many
    /// routers skip the quiet ones cheaply.
    pub fn has_pending_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to come back with [`Input::Timeout`]: the Master_Down_Timer in Backup, the
    /// Adver_Timer in Master, never otherwise.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Backup => Some(self.down_deadline()),
            State::Master => Some(self.adver_at),
            State::Initialize | State::Fault => None,
        }
    }

    /// The Adver_Timer of a Master with nothing queued, lent out so that its holder can
    /// run its expiries (each one exactly what [`Input::Timeout`] would do: ask for an
    /// advert at the current priority, reset the timer) without touching the rest of the
    /// router; `None` otherwise. Until [`VirtualRouter::return_adver_timer`], the
    /// router's own deadline and count of adverts sent lag behind the holder's, and the
    /// holder must take the timer back before handing it anything else.
    pub fn lend_adver_timer(&self) -> Option<AdverTimer> {
        (self.state == State::Master && self.actions.is_empty()).then_some(AdverTimer {
            at: self.adver_at,
            interval: self.cfg.advert_interval,
            priority: self.priority,
            fired: 0,
        })
    }

    /// Takes back a timer of [`VirtualRouter::lend_adver_timer`]: its expiries count as
    /// the timeouts they stood for.
    pub fn return_adver_timer(&mut self, timer: AdverTimer) {
        self.adver_at = timer.at;
        self.counters.adverts_sent += timer.fired;
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration in force (after [`VirtualRouter::new`]'s normalisation).
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// The primary address adverts go out from.
    pub fn primary(&self) -> IpAddr {
        self.primary
    }

    /// The virtual addresses [`Action::AddAddresses`] and [`Action::RemoveAddresses`] mean.
    pub fn virtual_addresses(&self) -> &[IpAddr] {
        &self.cfg.virtual_addresses
    }

    /// Effective priority (configured, moved by [`Input::PriorityChanged`]).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The current master: ourselves in Master, the last one heard in Backup.
    pub fn master(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.primary),
            State::Backup => self.heard.map(|h| h.address),
            State::Initialize | State::Fault => None,
        }
    }

    /// The current master's priority, as for [`VirtualRouter::master`].
    pub fn master_priority(&self) -> Option<u8> {
        match self.state {
            State::Master => Some(self.priority),
            State::Backup => self.heard.map(|h| h.priority),
            State::Initialize | State::Fault => None,
        }
    }

    /// Master_Adver_Interval (RFC 5798 §6.1): learnt from the master in v3 Backup, our
    /// own Advertisement_Interval otherwise.
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time (RFC 5798 §6.1; RFC 3768 §6.1 for v2).
    pub fn skew_time(&self) -> Duration {
        self.timing().0
    }

    /// (Skew_Time, Master_Down_Interval), computed once per priority and interval.
    fn timing(&self) -> (Duration, Duration) {
        if let Some((priority, mai, skew, mdi)) = self.timing.get()
            && priority == self.priority
            && mai == self.master_adver_interval
        {
            return (skew, mdi);
        }
        // One home for the arithmetic: the XDP program's down timer uses the same
        // functions, so the kernel's deadline and the election's never differ.
        let mai = u64::try_from(self.master_adver_interval.as_nanos()).unwrap_or(u64::MAX);
        let version = self.cfg.version.number();
        let adverts = u32::from(self.cfg.down_timer_adverts);
        let skew = Duration::from_nanos(down::skew_ns(version, self.priority, mai));
        let mdi = Duration::from_nanos(down::master_down_ns(version, self.priority, mai, adverts));
        self.timing
            .set(Some((self.priority, self.master_adver_interval, skew, mdi)));
        (skew, mdi)
    }

    /// Master_Down_Interval: `down_timer_adverts` × Master_Adver_Interval + Skew_Time
    /// (RFC 5798 §6.1 has 3 ×; keepalived makes the 3 configurable).
    pub fn master_down_interval(&self) -> Duration {
        self.timing().1
    }

    /// The last state change.
    pub fn last_transition(&self) -> Option<&Transition> {
        self.last_transition.as_ref()
    }

    /// What happened to the inputs so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether Accept_Mode is on (RFC 5798 §6.1), for the daemon's packet filter.
    pub fn accept_mode(&self) -> bool {
        self.cfg.accept_mode
    }

    /// The advertisement [`Action::SendAdvert`] asks for, ready to encode.
    pub fn advertisement(&self, priority: u8) -> Advertisement {
        Advertisement {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            interval: self.cfg.advert_interval,
            addresses: self.cfg.virtual_addresses.clone(),
            auth: self.cfg.auth.clone(),
        }
    }

    fn down_deadline(&self) -> Instant {
        match self.down {
            DownTimer::PriorityZero { anchor, .. } => anchor + self.skew_time(),
            DownTimer::Start { anchor } | DownTimer::Advert { anchor } => {
                anchor + self.master_down_interval()
            }
        }
    }

    fn faulted(&self) -> bool {
        self.link_down || self.fault.is_some()
    }

    fn fault_kind(&self) -> FaultKind {
        match (&self.fault, self.link_down) {
            (_, true) => FaultKind::LinkDown,
            (Some(r), false) => FaultKind::Tracked(r.clone()),
            (None, false) => FaultKind::LinkDown,
        }
    }

    fn transition(&mut self, now: Instant, to: State, reason: Reason) {
        let t = Transition {
            from: self.state,
            to,
            reason,
            at: now,
        };
        self.state = to;
        self.actions.push_back(Action::StateChanged(t.clone()));
        self.last_transition = Some(t);
    }

    fn send(&mut self, priority: u8) {
        self.counters.adverts_sent += 1;
        self.actions.push_back(Action::SendAdvert { priority });
    }

    fn startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        if self.faulted() {
            let kind = self.fault_kind();
            self.transition(now, State::Fault, Reason::Fault(kind));
            return;
        }
        self.activate(now, Reason::Startup);
    }

    /// Leaves Initialize or Fault for Master (owner) or Backup.
    fn activate(&mut self, now: Instant, reason: Reason) {
        self.wants_master = None;
        if self.priority == PRIORITY_OWNER && !self.sync_hold {
            // RFC 5798 §6.4.1: the owner goes Master at once.
            let reason = if reason == Reason::Startup {
                Reason::Owner
            } else {
                reason
            };
            self.become_master(now, reason);
            return;
        }
        // RFC 5798 §6.4.1: Master_Adver_Interval = Advertisement_Interval, start the
        // Master_Down_Timer, go Backup.
        self.master_adver_interval = self.cfg.advert_interval;
        self.down = DownTimer::Start { anchor: now };
        self.heard = None;
        self.lower = None;
        // keepalived: the preempt delay also runs from startup (and fault recovery).
        self.preempt_until =
            (!self.cfg.preempt_delay.is_zero()).then(|| now + self.cfg.preempt_delay);
        self.transition(now, State::Backup, reason);
        if self.priority == PRIORITY_OWNER {
            // Held by its sync group: the owner takes over when the group is released.
            self.wants_master = Some(Reason::Owner);
        }
    }

    fn become_master(&mut self, now: Instant, reason: Reason) {
        self.wants_master = None;
        self.transition(now, State::Master, reason);
        // RFC 5798 §6.4.1 / §6.4.2: send an advert, then announce the addresses (GARP or
        // unsolicited NA), then start the Adver_Timer. The advert goes first so that the
        // old master drops the addresses before the announcements (keepalived's order).
        self.send(self.priority);
        self.actions.push_back(Action::AddAddresses);
        self.actions.push_back(Action::Announce);
        self.adver_at = now + self.cfg.advert_interval;
        self.master_adver_interval = self.cfg.advert_interval;
        self.heard = None;
        self.lower = None;
        self.preempt_until = None;
        self.counters.became_master += 1;
    }

    fn shutdown(&mut self, now: Instant) {
        match self.state {
            State::Initialize => {}
            State::Master => {
                // RFC 5798 §6.4.3: cancel the Adver_Timer, send priority 0, Initialize.
                self.transition(now, State::Initialize, Reason::Shutdown);
                self.send(PRIORITY_STOP);
                self.actions.push_back(Action::RemoveAddresses);
            }
            // RFC 5798 §6.4.2: cancel the Master_Down_Timer, Initialize.
            State::Backup | State::Fault => {
                self.transition(now, State::Initialize, Reason::Shutdown);
            }
        }
    }

    fn enter_fault(&mut self, now: Instant, kind: FaultKind) {
        self.wants_master = None;
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup => self.transition(now, State::Fault, Reason::Fault(kind)),
            State::Master => {
                self.transition(now, State::Fault, Reason::Fault(kind));
                // keepalived: a master entering Fault says so with priority 0, so the
                // backups take over after Skew_Time instead of Master_Down_Interval.
                self.send(PRIORITY_STOP);
                self.actions.push_back(Action::RemoveAddresses);
            }
        }
    }

    fn leave_fault(&mut self, now: Instant) {
        if self.state == State::Fault && !self.faulted() {
            self.activate(now, Reason::FaultCleared);
        }
    }

    fn set_priority(&mut self, now: Instant, requested: u8) {
        // keepalived keeps a non-owner's effective priority in 1..=254, so that tracking
        // never makes it the owner, and never lets it reach the reserved 0.
        let ceiling = if self.cfg.priority == PRIORITY_OWNER {
            PRIORITY_OWNER
        } else {
            PRIORITY_OWNER - 1
        };
        let p = requested.clamp(1, ceiling);
        if p == self.priority {
            return;
        }
        self.priority = p;
        match self.state {
            State::Master => {
                // Tell the backups now rather than at the next Adver_Timer, so a backup
                // that now outranks us starts preempting one interval sooner.
                self.send(p);
                self.adver_at = now + self.cfg.advert_interval;
            }
            State::Backup if p == PRIORITY_OWNER && self.sync_hold => {
                self.wants_master = Some(Reason::Owner);
            }
            State::Backup if p == PRIORITY_OWNER => {
                // RFC 5798 §6.4.1's rule for the owner, applied when the owner's priority
                // comes back to 255.
                self.become_master(now, Reason::Owner);
            }
            // In Backup the deadline follows the new Skew_Time by itself (it is computed
            // from the priority), and preemption happens when the next lower-priority
            // advert is discarded (RFC 5798 §6.4.2).
            State::Backup | State::Initialize | State::Fault => {}
        }
    }

    fn master_unreachable(&mut self, now: Instant, master: IpAddr, at: Instant) {
        if self.state != State::Backup || self.heard.map(|h| h.address) != Some(master) {
            return;
        }
        // An advert that arrived after the session went down says the Master lives (the
        // path of BFD failed, not the router).
        if self.down.anchor() > at {
            return;
        }
        if self.sync_hold {
            // As when the timer fires: its group cannot be Master here yet.
            self.wants_master = Some(Reason::BfdDown { master });
            return;
        }
        self.become_master(now, Reason::BfdDown { master });
    }

    fn timeout(&mut self, now: Instant) {
        match self.state {
            State::Backup => {
                if now < self.down_deadline() {
                    return;
                }
                // RFC 5798 §6.4.2: Master_Down_Timer fired: become Master.
                let reason = match (self.down, self.lower) {
                    (DownTimer::PriorityZero { master, .. }, _) => Reason::PriorityZero { master },
                    (_, Some(lower)) => Reason::PreemptLowerPriority {
                        master: lower.address,
                        priority: lower.priority,
                        ours: self.priority,
                    },
                    (_, None) => Reason::MasterDown {
                        adverts: self.cfg.down_timer_adverts,
                        master: self.heard.map(|h| h.address),
                    },
                };
                if self.sync_hold {
                    // Its group cannot be Master here yet: stay Backup, say it would take
                    // over, and look again one Master_Down_Interval on.
                    self.wants_master = Some(reason);
                    self.down = DownTimer::Start { anchor: now };
                    return;
                }
                self.become_master(now, reason);
            }
            State::Master => {
                if now < self.adver_at {
                    return;
                }
                // RFC 5798 §6.4.3: Adver_Timer fired: send, reset the timer.
                self.send(self.priority);
                self.adver_at = next_adver(self.adver_at, self.cfg.advert_interval, now);
            }
            State::Initialize | State::Fault => {}
        }
    }

    fn receive(&mut self, now: Instant, source: IpAddr, advert: &Advertisement) {
        self.counters.adverts_received += 1;
        if !matches!(self.state, State::Backup | State::Master) {
            self.counters.discarded_not_listening += 1;
            return;
        }
        // RFC 5798 §7.1: the VRID must be ours.
        if advert.vrid != self.cfg.vrid {
            self.counters.discarded_vrid += 1;
            return;
        }
        // RFC 5798 §7.1: "MUST verify that the VRRP version is 3" (RFC 3768: 2).
        if advert.version != self.cfg.version {
            self.counters.discarded_version += 1;
            return;
        }
        if source.is_ipv4() != self.primary.is_ipv4() {
            self.counters.discarded_family += 1;
            return;
        }
        // Our own advert looped back (multicast loop, or a misconfigured peer with our
        // address): it can be neither better nor worse than us.
        if source == self.primary {
            self.counters.discarded_own += 1;
            return;
        }
        if self.cfg.version == Version::V2 {
            // RFC 3768 §7.1: the authentication type and data must match ours.
            if advert.auth != self.cfg.auth {
                self.counters.discarded_auth += 1;
                return;
            }
            // RFC 3768 §7.1: the Adver Interval must be the locally configured one.
            if advert.interval != self.cfg.advert_interval {
                self.counters.discarded_interval += 1;
                return;
            }
        }
        // RFC 5798 §7.1: the address owner does not listen.
        if self.priority == PRIORITY_OWNER {
            self.counters.discarded_owner += 1;
            return;
        }
        if advert.priority == PRIORITY_STOP {
            self.counters.priority_zero_received += 1;
        }
        // RFC 5798 §7.1: MAY check the address list, SHOULD log a mismatch. RFC 3768 §7.1
        // goes further: drop it unless the sender is the owner.
        if !same_addresses(&advert.addresses, &self.cfg.virtual_addresses) {
            self.counters.address_list_mismatch += 1;
            if self.cfg.version == Version::V2 && advert.priority != PRIORITY_OWNER {
                return;
            }
        }
        match self.state {
            State::Backup => self.backup_receive(now, source, advert),
            State::Master => self.master_receive(now, source, advert),
            State::Initialize | State::Fault => {}
        }
    }

    fn backup_receive(&mut self, now: Instant, source: IpAddr, advert: &Advertisement) {
        // Handled in arrival order, this advert would have been superseded by the one
        // the timer runs from: it changes nothing.
        if now < self.down.anchor() {
            self.counters.discarded_stale += 1;
            return;
        }
        // RFC 5798 §6.4.2: priority 0: set the Master_Down_Timer to Skew_Time. Skew_Time
        // is taken from the interval this advert carries (v3), as the XDP program's down
        // timer does: every Backup that hears the Master leave staggers by the same
        // interval, even one that missed the Master's earlier adverts (a report lost to a
        // full ring) and still holds an older Master's interval.
        if advert.priority == PRIORITY_STOP {
            if self.cfg.version == Version::V3 && !advert.interval.is_zero() {
                self.master_adver_interval = advert.interval;
            }
            self.down = DownTimer::PriorityZero {
                anchor: now,
                master: source,
            };
            self.wants_master = None;
            return;
        }
        let lower = advert.priority < self.priority;
        if !self.cfg.preempt || !lower || self.delay_holds(now) {
            // RFC 5798 §6.4.2: Preempt_Mode false or priority >= ours: learn
            // Master_Adver_Interval (v3 only: RFC 3768 has no such variable), recompute
            // Master_Down_Interval, reset the Master_Down_Timer.
            if self.cfg.version == Version::V3 {
                self.master_adver_interval = advert.interval;
            }
            self.down = DownTimer::Advert { anchor: now };
            self.heard = Some(Heard {
                address: source,
                priority: advert.priority,
            });
            self.lower = None;
            self.wants_master = None;
            if !self.cfg.preempt_delay.is_zero() {
                if !lower {
                    self.preempt_until = None;
                } else if self.preempt_until.is_none() {
                    self.preempt_until = Some(now + self.cfg.preempt_delay);
                }
            }
        } else {
            // RFC 5798 §6.4.2: preempting: discard, and let the timer run out.
            self.counters.discarded_lower_priority += 1;
            self.lower = Some(Heard {
                address: source,
                priority: advert.priority,
            });
        }
    }

    fn master_receive(&mut self, now: Instant, source: IpAddr, advert: &Advertisement) {
        if advert.priority == PRIORITY_STOP {
            // RFC 5798 §6.4.3: answer priority 0 with an advert, reset the Adver_Timer.
            self.send(self.priority);
            self.adver_at = now + self.cfg.advert_interval;
            return;
        }
        let better = advert.priority > self.priority
            || (advert.priority == self.priority && source > self.primary);
        if better {
            // RFC 5798 §6.4.3: higher priority, or equal and a higher primary address:
            // cancel the Adver_Timer, learn Master_Adver_Interval (v3), start the
            // Master_Down_Timer, go Backup.
            if self.cfg.version == Version::V3 {
                self.master_adver_interval = advert.interval;
            }
            self.down = DownTimer::Advert { anchor: now };
            self.heard = Some(Heard {
                address: source,
                priority: advert.priority,
            });
            self.lower = None;
            self.preempt_until = None;
            self.transition(
                now,
                State::Backup,
                Reason::Preempted {
                    by: source,
                    priority: advert.priority,
                    ours: self.priority,
                },
            );
            // RFC 5798 §6.4.2: a Backup does not answer for the virtual addresses.
            self.actions.push_back(Action::RemoveAddresses);
        } else {
            // RFC 5798 §6.4.3 says discard; keepalived answers at once so that a router
            // which wrongly thinks itself Master (a healed partition, say) hears the
            // better one now rather than at our next Adver_Timer.
            self.send(self.priority);
            // And, as keepalived's garp_lower_prio_*, announces the addresses again: the
            // hosts' ARP caches may follow the other one since the split brain. At most
            // once per LOWER_PRIORITY_ANNOUNCE_GAP, however long the other one persists.
            if advert.priority != PRIORITY_STOP
                && self
                    .lower_announced
                    .is_none_or(|t| now.saturating_duration_since(t) >= LOWER_PRIORITY_ANNOUNCE_GAP)
            {
                self.lower_announced = Some(now);
                self.actions.push_back(Action::Reannounce);
            }
        }
    }
}

/// Brings a configuration into what the protocol carries (see [`VirtualRouter::new`]).
/// A steady Master's Adver_Timer apart from its router
/// ([`VirtualRouter::lend_adver_timer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdverTimer {
    at: Instant,
    interval: Duration,
    priority: u8,
    /// Expiries run since it was lent.
    fired: u64,
}

impl AdverTimer {
    /// When it fires next.
    pub fn deadline(&self) -> Instant {
        self.at
    }

    /// The router's Master branch of [`Input::Timeout`] at `now` (RFC 5798 §6.4.3): when
    /// due, the priority to advertise at, and the timer reset.
    pub fn fire(&mut self, now: Instant) -> Option<u8> {
        if now < self.at {
            return None;
        }
        self.fired += 1;
        self.at = next_adver(self.at, self.interval, now);
        Some(self.priority)
    }
}

/// The Adver_Timer's next expiry after it fired at `now`, due at `at`: the cadence of
/// the deadlines is kept unless the Master is a whole interval late.
fn next_adver(at: Instant, interval: Duration, now: Instant) -> Instant {
    let next = at + interval;
    if next > now { next } else { now + interval }
}

fn normalise(mut cfg: RouterConfig, primary: IpAddr) -> RouterConfig {
    cfg.priority = cfg.priority.max(1);
    cfg.down_timer_adverts = cfg.down_timer_adverts.clamp(1, MAX_DOWN_TIMER_ADVERTS);
    cfg.advert_interval =
        representable_interval(cfg.version, cfg.advert_interval).unwrap_or(Duration::from_secs(1));
    cfg.virtual_addresses
        .retain(|a| a.is_ipv4() == primary.is_ipv4());
    cfg.virtual_addresses.truncate(255);
    if cfg.version == Version::V3 {
        cfg.auth = Auth::None;
    }
    // keepalived clears nopreempt and preempt_delay for `state MASTER`.
    if cfg.initial_state == InitialState::Master {
        cfg.preempt = true;
        cfg.preempt_delay = Duration::ZERO;
    }
    cfg
}

/// The same set of addresses, in any order.
fn same_addresses(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

#[cfg(test)]
mod bfd_tests;
#[cfg(test)]
mod tests;
