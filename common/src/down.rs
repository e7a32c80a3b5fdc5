//! The Master_Down_Timer as the kernel keeps it: per-VRID parameters the agent publishes,
//! and the arithmetic the XDP program's timer callback and the agent's election share.
//!
//! The program arms one `bpf_timer` per watched VRID at the arrival of an advert and,
//! when it fires, compares the newest arrival with the deadline computed here: a live
//! Master means re-arming for the remainder, silence means one ring event
//! ([`crate::event::EVENT_SILENCE`]). The agent's election still decides; the kernel only
//! wakes it.

/// Name of the array of down-timer parameters, by VRID slot (`VridStats::slot`), written
/// by the agent; `adverts` 0 means no kernel timer for that VRID.
pub const MAP_DOWN_PARAMS: &str = "down_params";
/// Name of the array holding the kernel timers, by VRID slot. The agent writes an element
/// only to cancel its timer (any update of an element from userspace does), when it stops
/// watching the VRID.
pub const MAP_DOWN_TIMERS: &str = "down_timers";

/// Name of the program's global switch: 1 when the kernel keeps the down timers.
pub const GLOBAL_KERNEL_TIMERS: &str = "KERNEL_TIMERS";

/// Per-VRID parameters of the kernel's down timer, published by the agent. Kept apart from
/// the timers themselves, which a userspace write would cancel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownParams {
    /// Advert intervals in Master_Down_Interval (keepalived `down_timer_adverts`; the RFC's 3).
    pub adverts: u32,
    /// The most the timer may fire ahead of the deadline to wake the agent, in ns
    /// ([`alarm_ns`]); 0 = at the deadline.
    pub lead_ns: u32,
    /// Master_Adver_Interval in ns when it is not learnt from adverts (VRRPv2: RFC 3768
    /// §7.1 makes a Backup discard adverts of another interval); 0 = take the interval of
    /// the last advert (VRRPv3, RFC 5798 §6.4.2).
    pub interval_ns: u64,
}

/// How soon the timer tries again when its silence event found the ring buffer full: the
/// agent is behind and will drain it, and an event lost for good would leave the Backup
/// deaf (no userspace timer runs while the kernel keeps the deadline).
pub const RETRY_NS: u64 = 1_000_000;

/// The advert interval field in ns: v3 centiseconds, v2 seconds.
#[inline(always)]
pub const fn interval_ns(version: u8, raw: u16) -> u64 {
    if version == 3 {
        raw as u64 * 10_000_000
    } else {
        raw as u64 * 1_000_000_000
    }
}

/// Skew_Time in ns: RFC 5798 §6.1 `((256 - Priority) * Master_Adver_Interval) / 256`;
/// RFC 3768 §6.1 (v2) `(256 - Priority) / 256` seconds.
#[inline(always)]
pub const fn skew_ns(version: u8, priority: u8, interval_ns: u64) -> u64 {
    let weight = 256 - priority as u64;
    if version == 3 {
        interval_ns * weight / 256
    } else {
        1_000_000_000 * weight / 256
    }
}

/// Master_Down_Interval in ns: `adverts` × Master_Adver_Interval + Skew_Time (RFC 5798 §6.1
/// has 3 ×; keepalived's `down_timer_adverts` makes it configurable).
#[inline(always)]
pub const fn master_down_ns(version: u8, priority: u8, interval_ns: u64, adverts: u32) -> u64 {
    interval_ns * adverts as u64 + skew_ns(version, priority, interval_ns)
}

/// The down deadline after an advert that arrived at `last_ns` with `last_priority`: a
/// priority-0 advert (the Master leaving) shortens it to Skew_Time (RFC 5798 §6.4.2).
#[inline(always)]
pub const fn deadline_ns(
    version: u8,
    local_priority: u8,
    interval_ns: u64,
    adverts: u32,
    last_ns: u64,
    last_priority: u8,
) -> u64 {
    if last_priority == 0 {
        last_ns + skew_ns(version, local_priority, interval_ns)
    } else {
        last_ns + master_down_ns(version, local_priority, interval_ns, adverts)
    }
}

/// The most the kernel's alarm leads a down deadline. Waking an idle CPU and the agent's
/// thread takes 0.1–0.5 ms, now and then a few ms; woken this much ahead, the agent is
/// running when the deadline comes and its advert leaves within the RFC's time.
pub const ALARM_LEAD_NS: u32 = 2_000_000;

/// When the kernel's timer fires for a down deadline: up to `lead_ns` ahead of it, so
/// that the agent is awake at the deadline, but never so early that a Master merely late
/// wakes it: the lead is at most a quarter of the slack a live Master has
/// (Master_Down_Interval less one interval, or Skew_Time after a priority-0 advert).
/// The agent, woken, waits out the deadline itself and judges the silence then.
#[inline(always)]
pub const fn alarm_ns(
    version: u8,
    local_priority: u8,
    interval_ns: u64,
    adverts: u32,
    last_ns: u64,
    last_priority: u8,
    lead_ns: u32,
) -> u64 {
    let deadline = deadline_ns(
        version,
        local_priority,
        interval_ns,
        adverts,
        last_ns,
        last_priority,
    );
    let slack = if last_priority == 0 {
        skew_ns(version, local_priority, interval_ns)
    } else {
        master_down_ns(version, local_priority, interval_ns, adverts).saturating_sub(interval_ns)
    };
    let lead = if slack / 4 < lead_ns as u64 {
        slack / 4
    } else {
        lead_ns as u64
    };
    deadline.saturating_sub(lead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_values() {
        // v3, 1 s, priority 100: 3 s + 156/256 s = 3.609375 s.
        assert_eq!(master_down_ns(3, 100, 1_000_000_000, 3), 3_609_375_000);
        // v3, 10 ms, priority 100, one advert: 10 ms + 6.09375 ms.
        assert_eq!(master_down_ns(3, 100, 10_000_000, 1), 16_093_750);
        // v2 skew ignores the interval.
        assert_eq!(skew_ns(2, 255, 5_000_000_000), 3_906_250);
        assert_eq!(interval_ns(3, 100), 1_000_000_000);
        assert_eq!(interval_ns(2, 1), 1_000_000_000);
        // Priority 0 from the Master: Skew_Time after its arrival.
        assert_eq!(deadline_ns(3, 128, 1_000_000_000, 3, 5, 0), 5 + 500_000_000);
        assert_eq!(
            deadline_ns(3, 128, 1_000_000_000, 3, 5, 200),
            5 + 3_500_000_000
        );
    }

    #[test]
    fn the_alarm_leads_the_deadline_by_at_most_a_quarter_of_the_slack() {
        let lead = ALARM_LEAD_NS;
        // v3, 10 ms × 3, priority 100: slack 26.09 ms, so the full 2 ms lead.
        let d = deadline_ns(3, 100, 10_000_000, 3, 0, 200);
        assert_eq!(alarm_ns(3, 100, 10_000_000, 3, 0, 200, lead), d - 2_000_000);
        // One advert in the interval at priority 254: the slack is Skew_Time, 78 µs; a
        // Master 20 µs late must not wake the agent.
        let d = deadline_ns(3, 254, 10_000_000, 1, 0, 200);
        assert_eq!(d, 10_078_125);
        assert_eq!(alarm_ns(3, 254, 10_000_000, 1, 0, 200, lead), d - 19_531);
        // A priority-0 advert: a quarter of Skew_Time.
        let d = deadline_ns(3, 128, 1_000_000_000, 3, 5, 0);
        assert_eq!(
            alarm_ns(3, 128, 1_000_000_000, 3, 5, 0, lead),
            d - 2_000_000
        );
        assert_eq!(
            alarm_ns(3, 255, 10_000_000, 3, 5, 0, lead),
            5 + 39_062 - 9_765
        );
        // No lead asked for: the deadline itself.
        assert_eq!(
            alarm_ns(2, 100, 1_000_000_000, 3, 7, 100, 0),
            deadline_ns(2, 100, 1_000_000_000, 3, 7, 100)
        );
    }

    #[test]
    fn params_layout() {
        assert_eq!(core::mem::size_of::<DownParams>(), 16);
    }
}
