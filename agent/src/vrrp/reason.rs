//! Why a virtual router changed state, in words a person reads in a log or `vigil status`.

use std::fmt;
use std::net::IpAddr;

/// What put a virtual router in the Fault state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The interface it runs on went down.
    LinkDown,
    /// A tracked script, interface or file failed; the text says which.
    Tracked(String),
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::LinkDown => f.write_str("interface down"),
            FaultKind::Tracked(what) => f.write_str(what),
        }
    }
}

/// The cause of a state transition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Startup event below priority 255 (RFC 5798 §6.4.1).
    Startup,
    /// Priority 255: the address owner goes Master at once (RFC 5798 §6.4.1).
    Owner,
    /// The Master_Down_Timer fired after normal adverts stopped (RFC 5798 §6.4.2).
    MasterDown {
        /// Adverts the timer waits for (`down_timer_adverts`).
        adverts: u8,
        /// The master last heard, if any was.
        master: Option<IpAddr>,
    },
    /// The master said it stopped (priority 0); the timer ran Skew_Time (RFC 5798 §6.4.2).
    PriorityZero {
        /// The master that sent priority 0.
        master: IpAddr,
    },
    /// The critical BFD session to the master went down: its Master_Down_Timer taken as
    /// expired without waiting for the adverts (BFD-assisted takeover).
    BfdDown {
        /// The master the session ran to.
        master: IpAddr,
    },
    /// With preemption on, a lower-priority master's adverts were discarded until the
    /// Master_Down_Timer fired (RFC 5798 §6.4.2).
    PreemptLowerPriority {
        /// The lower-priority master.
        master: IpAddr,
        /// Its priority.
        priority: u8,
        /// Ours.
        ours: u8,
    },
    /// A Master heard a better router (RFC 5798 §6.4.3).
    Preempted {
        /// The better router.
        by: IpAddr,
        /// Its priority.
        priority: u8,
        /// Ours; equal means it won on the higher primary address.
        ours: u8,
    },
    /// A fault began.
    Fault(FaultKind),
    /// All faults cleared.
    FaultCleared,
    /// Shutdown event (RFC 5798 §6.4.2, §6.4.3).
    Shutdown,
    /// Its sync group moved it: out of Master because another member cannot be Master
    /// here, or into Master once every member can.
    SyncGroup(String),
}

impl Reason {
    /// A short, fixed name for the kind of reason (a metrics label: no addresses in it).
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::Owner => "owner",
            Reason::MasterDown { .. } => "master_down",
            Reason::PriorityZero { .. } => "priority_zero",
            Reason::BfdDown { .. } => "bfd_down",
            Reason::PreemptLowerPriority { .. } => "preempt_lower_priority",
            Reason::Preempted { .. } => "preempted",
            Reason::Fault(FaultKind::LinkDown) => "fault_link_down",
            Reason::Fault(FaultKind::Tracked(_)) => "fault_tracked",
            Reason::FaultCleared => "fault_cleared",
            Reason::Shutdown => "shutdown",
            Reason::SyncGroup(_) => "sync_group",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("startup"),
            Reason::Owner => f.write_str("address owner (priority 255)"),
            Reason::MasterDown {
                adverts,
                master: Some(m),
            } => write!(
                f,
                "master down timer expired: {adverts} adverts missed from {m}"
            ),
            Reason::MasterDown {
                adverts,
                master: None,
            } => write!(
                f,
                "master down timer expired: no master heard for {adverts} advert intervals"
            ),
            Reason::PriorityZero { master } => write!(f, "priority 0 from master {master}"),
            Reason::BfdDown { master } => write!(f, "BFD session to master {master} down"),
            Reason::PreemptLowerPriority {
                master,
                priority,
                ours,
            } => write!(
                f,
                "preempting lower-priority master {master} (priority {priority}, ours {ours})"
            ),
            Reason::Preempted {
                by, priority, ours, ..
            } if priority == ours => write!(
                f,
                "preempted by {by} priority {priority} (equal priority, higher address)"
            ),
            Reason::Preempted { by, priority, .. } => {
                write!(f, "preempted by {by} priority {priority}")
            }
            Reason::Fault(kind) => write!(f, "fault: {kind}"),
            Reason::FaultCleared => f.write_str("fault cleared"),
            Reason::Shutdown => f.write_str("shutdown"),
            Reason::SyncGroup(why) => write!(f, "sync group: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal is an address")
    }

    #[test]
    fn reasons_read_like_sentences() {
        let cases = [
            (
                Reason::MasterDown {
                    adverts: 3,
                    master: Some(ip("192.0.2.11")),
                },
                "master down timer expired: 3 adverts missed from 192.0.2.11",
            ),
            (
                Reason::MasterDown {
                    adverts: 1,
                    master: None,
                },
                "master down timer expired: no master heard for 1 advert intervals",
            ),
            (
                Reason::Preempted {
                    by: ip("192.0.2.12"),
                    priority: 200,
                    ours: 100,
                },
                "preempted by 192.0.2.12 priority 200",
            ),
            (
                Reason::Preempted {
                    by: ip("192.0.2.12"),
                    priority: 100,
                    ours: 100,
                },
                "preempted by 192.0.2.12 priority 100 (equal priority, higher address)",
            ),
            (
                Reason::PriorityZero {
                    master: ip("192.0.2.11"),
                },
                "priority 0 from master 192.0.2.11",
            ),
            (
                Reason::PreemptLowerPriority {
                    master: ip("2001:db8::1"),
                    priority: 50,
                    ours: 100,
                },
                "preempting lower-priority master 2001:db8::1 (priority 50, ours 100)",
            ),
            (
                Reason::BfdDown {
                    master: ip("192.0.2.11"),
                },
                "BFD session to master 192.0.2.11 down",
            ),
            (Reason::Owner, "address owner (priority 255)"),
            (Reason::Fault(FaultKind::LinkDown), "fault: interface down"),
            (
                Reason::Fault(FaultKind::Tracked("script check_web failed".into())),
                "fault: script check_web failed",
            ),
            (Reason::FaultCleared, "fault cleared"),
            (Reason::Shutdown, "shutdown"),
            (Reason::Startup, "startup"),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
    }
}
