//! Decoding the records the XDP program writes into something people and the election use.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use vigil_common::event::FAMILY_V4;
use vigil_common::{AdvertEvent, Verdict};

/// An [`AdvertEvent`] read out of the ring buffer, with typed fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Raw record.
    pub raw: AdvertEvent,
}

impl Record {
    /// Reads a record from ring-buffer bytes; `None` when the size is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != std::mem::size_of::<AdvertEvent>() {
            return None;
        }
        // SAFETY: the length matches and AdvertEvent is plain old data (every bit pattern
        // is valid); read_unaligned copes with the ring buffer's alignment.
        let raw = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<AdvertEvent>()) };
        Some(Self { raw })
    }

    /// Source address of the advert.
    pub fn source(&self) -> IpAddr {
        addr(self.raw.family, &self.raw.src)
    }

    /// Destination address of the advert.
    pub fn destination(&self) -> IpAddr {
        addr(self.raw.family, &self.raw.dst)
    }

    /// The program's verdict, if the code is known.
    pub fn verdict(&self) -> Option<Verdict> {
        Verdict::from_code(self.raw.verdict)
    }

    /// Advertisement interval: v3 centiseconds, v2 seconds.
    pub fn interval(&self) -> Duration {
        if self.raw.version == 3 {
            Duration::from_millis(u64::from(self.raw.interval) * 10)
        } else {
            Duration::from_secs(u64::from(self.raw.interval))
        }
    }

    /// Kernel arrival time, CLOCK_MONOTONIC.
    pub fn arrival(&self) -> Duration {
        Duration::from_nanos(self.raw.ts_ns)
    }

    /// One JSON object, for `vigil trace --json` and tests.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ts_ns": self.raw.ts_ns,
            "ifindex": self.raw.ifindex,
            "verdict": self.verdict().map_or("unknown", Verdict::name),
            "source": self.source().to_string(),
            "destination": self.destination().to_string(),
            "ttl": self.raw.ttl,
            "version": self.raw.version,
            "type": self.raw.kind,
            "vrid": self.raw.vrid,
            "priority": self.raw.priority,
            "interval_ms": self.interval().as_millis() as u64,
            "addr_count": self.raw.addr_count,
            "auth_type": self.raw.auth_type,
        })
    }
}

fn addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ts = self.arrival();
        let verdict = match self.verdict() {
            Some(Verdict::Accept) | Some(Verdict::Foreign) => "ok".to_owned(),
            Some(v) => format!("DROP {}", v.name()),
            None => format!("verdict {}", self.raw.verdict),
        };
        write!(
            f,
            "{}.{:06} {} > {} VRRPv{} vrid {} prio {} interval {:?} addrs {} ttl {} {}",
            ts.as_secs(),
            ts.subsec_micros(),
            self.source(),
            self.destination(),
            self.raw.version,
            self.raw.vrid,
            self.raw.priority,
            self.interval(),
            self.raw.addr_count,
            self.raw.ttl,
            verdict
        )
    }
}
