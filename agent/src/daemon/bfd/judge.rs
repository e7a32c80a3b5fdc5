//! What a BFD session's change says about its peer, for BFD-assisted takeover: only
//! silence for the detection time means the peer (the Master) may be gone. A session
//! the peer itself said is down (RFC 5880 §6.8.6: its state Down or AdminDown, our
//! diagnostic 3) comes with a packet from that peer: it is alive, and a Backup taking
//! over would make two Masters. A session taken down on purpose, by either side, says
//! nothing about the path (RFC 5882 §3.2).

use crate::bfd::{Diagnostic, State};

use super::BfdEvent;

/// The verdict on one session change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The session came (or stayed) Up.
    StillUp,
    /// It changed without leaving Up (Down to Init, Init to Down, ...).
    NotUp,
    /// Taken down on purpose: by us (AdminDown) or by the peer (its AdminDown).
    Administrative,
    /// Down because the peer said so: the peer was heard.
    PeerSpoke,
    /// Down after the detection time passed without a packet (RFC 5880 §6.8.4): the
    /// peer may be dead.
    Silent,
}

/// Judges a session change.
pub fn judge(event: &BfdEvent) -> Judgement {
    let t = &event.transition;
    if t.to == State::Up {
        return Judgement::StillUp;
    }
    if t.from != State::Up {
        return Judgement::NotUp;
    }
    if t.to == State::AdminDown || event.remote_admin_down {
        return Judgement::Administrative;
    }
    if t.diag == Diagnostic::ControlDetectionTimeExpired {
        Judgement::Silent
    } else {
        Judgement::PeerSpoke
    }
}

#[cfg(test)]
mod tests;
