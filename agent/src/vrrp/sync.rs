//! Sync groups (keepalived's `vrrp_sync_group`): instances that are Master on one node
//! together or not at all, so a two-legged router never has its outside address on one
//! node and its inside address on the other.
//!
//! Pure: [`decide`] takes what each member's election says and returns what the group
//! imposes on them, which the caller feeds back as inputs (a FAULT reason, and
//! [`Input::SyncHold`](super::Input::SyncHold) / [`Input::SyncRelease`](super::Input::SyncRelease)).
//! The rules are keepalived's:
//! - a member in Fault of its own puts every other member in Fault;
//! - the group is Master only when every member is Master or would become Master (its
//!   Master_Down_Timer fired): until then every member is held out of Master, and a
//!   Master whose fellow member lost its election steps down.

use vigil_common::VridKey;

use super::State;
use super::endpoint::{Endpoint, EndpointInput};
use super::time::Instant;

/// What the group needs to know of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Instance name.
    pub name: String,
    /// Its election's state.
    pub state: State,
    /// Master, or a held Backup that would take over.
    pub wants_master: bool,
    /// Why it is in Fault of its own accord (tracking, link down); `None` if it is not.
    pub own_fault: Option<String>,
}

/// What the group imposes on its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Per member (in the order given), the Fault the group puts it in, if any.
    pub forced_fault: Vec<Option<String>>,
    /// Why the members are held out of Master; `None` releases them.
    pub hold: Option<String>,
}

/// Applies the group rules to the members' current standing.
pub fn decide(group: &str, members: &[Member]) -> Decision {
    let faulty = members.iter().find(|m| m.own_fault.is_some());
    let forced_fault = members
        .iter()
        .map(|m| match faulty {
            Some(f) if f.name != m.name && m.own_fault.is_none() => {
                Some(format!("sync group {group}: {} is FAULT", f.name))
            }
            _ => None,
        })
        .collect();
    let hold = if let Some(f) = faulty {
        Some(format!("{} is FAULT", f.name))
    } else {
        members
            .iter()
            .find(|m| !m.wants_master)
            .map(|m| format!("{} cannot be MASTER ({})", m.name, m.state))
    };
    Decision {
        forced_fault,
        hold: hold.map(|h| format!("{group}: {h}")),
    }
}

/// A member's standing read from its router in `endpoint`; `own_fault` is the caller's
/// (tracking); a link down counts as one too.
pub fn member(
    endpoint: &Endpoint,
    name: &str,
    key: VridKey,
    own_fault: Option<String>,
    iface: &str,
) -> Option<Member> {
    let router = endpoint.router(&key)?;
    let own_fault = own_fault.or_else(|| {
        router
            .link_is_down()
            .then(|| format!("interface {iface} down"))
    });
    Some(Member {
        name: name.to_string(),
        state: router.state(),
        wants_master: router.wants_master(),
        own_fault,
    })
}

/// Decides for the group and hands its members the holds and releases that changed;
/// returns the decision (whose forced faults the caller merges with its own tracking)
/// and whether any router was told anything.
pub fn enforce(
    group: &str,
    endpoint: &mut Endpoint,
    members: &[(VridKey, Member)],
    now: Instant,
) -> (Decision, bool) {
    let list: Vec<Member> = members.iter().map(|(_, m)| m.clone()).collect();
    let d = decide(group, &list);
    let mut changed = false;
    for (key, _) in members {
        let Some(router) = endpoint.router(key) else {
            continue;
        };
        let (held, master) = (router.is_held(), router.state() == State::Master);
        match &d.hold {
            Some(why) if !held || master => {
                let reason = why.clone();
                endpoint.handle(now, EndpointInput::SyncHold { key: *key, reason });
                changed = true;
            }
            None if held => {
                let reason = format!("{group}: every member can be MASTER");
                endpoint.handle(now, EndpointInput::SyncRelease { key: *key, reason });
                changed = true;
            }
            _ => {}
        }
    }
    (d, changed)
}

/// The group's own state, as keepalived reports it: Fault if a member is, Master when
/// all are, Initialize while any is, Backup otherwise.
pub fn group_state(members: &[Member]) -> State {
    if members.iter().any(|m| m.state == State::Fault) {
        State::Fault
    } else if !members.is_empty() && members.iter().all(|m| m.state == State::Master) {
        State::Master
    } else if members.iter().any(|m| m.state == State::Initialize) {
        State::Initialize
    } else {
        State::Backup
    }
}

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, state: State, wants: bool, fault: Option<&str>) -> Member {
        Member {
            name: name.into(),
            state,
            wants_master: wants,
            own_fault: fault.map(Into::into),
        }
    }

    #[test]
    fn one_member_in_fault_puts_the_others_in_fault_but_not_itself() {
        let d = decide(
            "g",
            &[
                m("out", State::Fault, false, Some("file /x holds 1")),
                m("in", State::Master, true, None),
            ],
        );
        assert_eq!(d.forced_fault[0], None);
        assert_eq!(
            d.forced_fault[1].as_deref(),
            Some("sync group g: out is FAULT")
        );
        assert!(d.hold.is_some());
    }

    #[test]
    fn master_only_when_every_member_can_be() {
        // One wants to take over, the other still hears a better master: hold both.
        let d = decide(
            "g",
            &[
                m("out", State::Backup, true, None),
                m("in", State::Backup, false, None),
            ],
        );
        assert_eq!(d.hold.as_deref(), Some("g: in cannot be MASTER (BACKUP)"));
        assert_eq!(d.forced_fault, vec![None, None]);
        // Both would: release.
        let d = decide(
            "g",
            &[
                m("out", State::Backup, true, None),
                m("in", State::Master, true, None),
            ],
        );
        assert_eq!(d.hold, None);
    }

    #[test]
    fn a_master_whose_fellow_lost_its_election_is_held() {
        let d = decide(
            "g",
            &[
                m("out", State::Master, true, None),
                m("in", State::Backup, false, None),
            ],
        );
        assert!(d.hold.is_some());
    }

    #[test]
    fn group_state_is_fault_then_master_then_backup() {
        let master = m("a", State::Master, true, None);
        let backup = m("b", State::Backup, false, None);
        let fault = m("c", State::Fault, false, Some("x"));
        assert_eq!(
            group_state(&[master.clone(), master.clone()]),
            State::Master
        );
        assert_eq!(
            group_state(&[master.clone(), backup.clone()]),
            State::Backup
        );
        assert_eq!(group_state(&[master, backup, fault]), State::Fault);
    }
}
