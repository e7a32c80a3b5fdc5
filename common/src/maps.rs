//! Keys and values of the maps the XDP program shares with the agent (and with people,
//! through `bpftool map dump pinned <bpf_pin_dir>/<router_id>/<map>`).

use crate::validate::VERDICTS;

/// Name of the array of watched virtual routers' configuration, by slot (see
/// [`VridStats::slot`]), written by the agent.
pub const MAP_WATCH: &str = "watch";
/// Name of the per-VRID state and counters map, keyed by [`VridKey`]: the one hash lookup
/// a frame costs. Created by the agent (with the slot), then written by the program.
pub const MAP_VRID_STATS: &str = "vrid_stats";
/// Name of the per-interface verdict counters map: a per-CPU array by interface slot.
pub const MAP_IFACE_STATS: &str = "iface_stats";
/// Name of the map from interface index to interface slot (the index into
/// `iface_stats`), written by the agent when it attaches.
pub const MAP_IFACES: &str = "ifaces";
/// Name of the ring buffer of advert events.
pub const MAP_EVENTS: &str = "events";
/// Name of the single-entry settings array.
pub const MAP_SETTINGS: &str = "settings";

/// Most virtual routers one agent can watch.
pub const MAX_WATCHED: u32 = 1024;
/// Most interfaces one agent can count for (interface slots).
pub const MAX_IFACES: u32 = 64;

/// Key of a watched virtual router: (interface, family, VRID).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VridKey {
    /// Interface index.
    pub ifindex: u32,
    /// `event::FAMILY_V4` or `event::FAMILY_V6`.
    pub family: u8,
    /// Virtual router identifier.
    pub vrid: u8,
    /// Reserved, zero.
    pub _pad: u16,
}

/// What the datapath knows of a watched virtual router: the last valid advert and
/// counters. Written by the XDP program (or the raw-socket path's twin of it) through
/// `crate::suppress`; the agent re-reads it when a down timer fires.
///
/// Its entry is what makes a VRID watched: the program finds it with the frame's
/// (interface, family, VRID), and everything else about the VRID (configuration,
/// timer, down-timer parameters, interface counters) by the slots it holds, in arrays
/// whose lookups cost no hashing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VridStats {
    /// Valid adverts received (the kernel's accepted count for this VRID).
    pub received: u64,
    /// Adverts reported to the agent through the ring buffer.
    pub reported: u64,
    /// Arrival time of the last valid advert the state holds, CLOCK_MONOTONIC ns.
    pub last_ns: u64,
    /// Source address of the last valid advert (IPv4 in the first 4 bytes).
    pub last_src: [u8; 16],
    /// Priority of the last valid advert.
    pub last_priority: u8,
    /// VRRP version of the last valid advert.
    pub last_version: u8,
    /// Raw interval field of the last valid advert.
    pub last_interval: u16,
    /// Address digest of the last reported advert.
    pub last_digest: u32,
    /// Adverts for this VRID dropped as invalid.
    pub dropped: u64,
    /// Valid adverts below the local priority that a preempting Backup ignores
    /// (RFC 5798 §6.4.2): low-priority noise never wakes the agent.
    pub ignored: u64,
    /// Reports that could not be written (ring buffer full), and repeats recorded over
    /// another CPU's report.
    pub lost: u64,
    /// Address count of the last valid advert.
    pub last_addr_count: u8,
    /// 1 when the last advert's report was lost: the next advert is reported whatever
    /// it says.
    pub unreported: u8,
    /// The watch entry's `epoch` when the last advert was recorded.
    pub last_epoch: u8,
    /// Reserved, zero.
    pub _pad: u8,
    /// This VRID's slot: its index in the arrays `watch`, `down_params` and
    /// `down_timers`. Set by the agent when it creates the entry, never by the program.
    pub slot: u16,
    /// Its interface's slot: the index in `iface_stats`. Set by the agent with `slot`.
    pub iface: u16,
    /// Arrival time of the first advert of the current run: the same source, priority,
    /// interval, version and address count as the last one, under the same watch epoch.
    pub first_ns: u64,
    /// Arrival time of the last advert ignored as below the local priority.
    pub ignored_ns: u64,
    /// Its source address.
    pub ignored_src: [u8; 16],
    /// Its priority.
    pub ignored_priority: u8,
    /// Reserved, zero.
    pub _pad3: u8,
    /// Its raw interval field.
    pub ignored_interval: u16,
    /// Reserved, zero.
    pub _pad4: u32,
    /// Arrival time of the last advert whose report was lost: the agent cannot know
    /// what it said, only when.
    pub lost_ns: u64,
}

const _: () = assert!(core::mem::size_of::<VridStats>() == 128);

/// Verdict counters of one interface, one field per [`crate::Verdict`] in its order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceStats {
    /// Valid adverts for watched VRIDs.
    pub accepted: u64,
    /// Valid adverts for VRIDs vigil does not watch (passed).
    pub foreign_vrid: u64,
    /// Dropped: TTL / hop limit not 255.
    pub ttl: u64,
    /// Dropped: VRRP version not 2 or 3.
    pub version: u64,
    /// Dropped: VRRP type not ADVERTISEMENT.
    pub kind: u64,
    /// Dropped: bad IP or VRRP length.
    pub length: u64,
    /// Dropped: address count does not fit the length.
    pub count: u64,
    /// Dropped: bad checksum.
    pub checksum: u64,
    /// Dropped: v2 authentication mismatch.
    pub auth: u64,
    /// Dropped: IPv4 fragment.
    pub fragment: u64,
    /// Dropped: malformed IPv4 header.
    pub header: u64,
    /// Dropped: neither the VRRP group nor an expected unicast destination.
    pub destination: u64,
    /// Dropped: other VRRP version than configured for the VRID.
    pub version_mismatch: u64,
    /// Dropped: VRRPv2 over IPv6.
    pub family: u64,
    /// Dropped: an advert interval of 0.
    pub interval: u64,
    /// Ring buffer full: an event could not be reported (the agent falls behind).
    pub ring_full: u64,
}

const _: () = assert!(core::mem::size_of::<IfaceStats>() == (VERDICTS + 1) * 8);

impl IfaceStats {
    /// Adds one to the counter of `verdict`.
    pub fn count(&mut self, verdict: crate::Verdict) {
        use crate::Verdict as V;
        let c = match verdict {
            V::Accept => &mut self.accepted,
            V::Foreign => &mut self.foreign_vrid,
            V::Ttl => &mut self.ttl,
            V::Version => &mut self.version,
            V::Type => &mut self.kind,
            V::Length => &mut self.length,
            V::Count => &mut self.count,
            V::Checksum => &mut self.checksum,
            V::Auth => &mut self.auth,
            V::Fragment => &mut self.fragment,
            V::Header => &mut self.header,
            V::Destination => &mut self.destination,
            V::VersionMismatch => &mut self.version_mismatch,
            V::Family => &mut self.family,
            V::Interval => &mut self.interval,
        };
        *c += 1;
    }

    /// The counter of a verdict.
    pub fn get(&self, verdict: crate::Verdict) -> u64 {
        let all: [u64; VERDICTS] = [
            self.accepted,
            self.foreign_vrid,
            self.ttl,
            self.version,
            self.kind,
            self.length,
            self.count,
            self.checksum,
            self.auth,
            self.fragment,
            self.header,
            self.destination,
            self.version_mismatch,
            self.family,
            self.interval,
        ];
        all[verdict as usize]
    }
}

/// Global switches of the program, entry 0 of the `settings` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Report every VRRP frame, any verdict, watched or not (`vigil trace --all`).
    pub trace_all: u8,
    /// Report every valid advert, watched or not (`vigil trace`).
    pub trace_valid: u8,
    /// Reserved, zero.
    pub _pad: [u8; 6],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all six): repr(C), integers and byte arrays only, no implicit padding.
    unsafe impl aya::Pod for super::VridKey {}
    unsafe impl aya::Pod for super::VridStats {}
    unsafe impl aya::Pod for super::IfaceStats {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for crate::validate::WatchEntry {}
    unsafe impl aya::Pod for crate::down::DownParams {}
}
