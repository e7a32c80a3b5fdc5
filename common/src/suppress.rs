//! What the datapath does with a valid advert of a watched virtual router, as pure
//! functions: whether the election must hear of it, whether a preempting Backup drops it
//! in the kernel, what the per-VRID state becomes, and how the ring-buffer record is
//! filled.
//!
//! The XDP program and the agent's raw-socket path both call these, and the simulator
//! models them, so the three cannot disagree.
//!
//! # The contract
//!
//! A Backup's election only needs to know that its Master is still there, and what it
//! says when that changes. The datapath keeps the last valid advert of each watched VRID
//! in a [`VridStats`] and reports an advert only when [`decide`] says
//! [`Fate::Report`]: its source, priority, interval, version or address count differs
//! from the last one; it is priority 0; it is the first; the agent asked for the next
//! one (by changing the watch entry's `epoch`, when a router starts listening); or the
//! agent asked for every advert ([`WATCH_REPORT_ALL`], set while Master). Everything
//! else is [`Fate::Quiet`]: the state's arrival time moves on and the agent sleeps.
//!
//! A repeat is quiet however long the silence before it. Silence is the down timer's
//! to judge, and whichever keeps it reads this state when it runs out: the kernel's
//! timer re-arms itself from the newest arrival, and the agent's own timer (without
//! kernel timers, or on the raw-socket path) hands the election the state's last
//! arrival first. A repeat that ended a silence shorter than Master_Down_Interval
//! changes nothing the election would do, and reporting it would wake the agent each
//! time a late Master's adverts arrive further apart than usual — at many instances, a
//! busy machine's one late round of adverts is one report per instance.
//!
//! The state always records the last valid advert ([`commit`]), reported or not. When a
//! report cannot be written (the ring buffer is full), the state is marked
//! `unreported`, so the next advert is reported whatever it says. And the agent, when
//! its down timer fires, re-reads the state (`last_ns`, `last_src`, `last_priority`,
//! `last_interval`) and hands the election that advert at that arrival time, so a lost
//! or raced report costs at most a delay, never a takeover from a live master.
//!
//! With [`WATCH_DROP_LOWER`] (set by the agent only while a Backup preempts and no
//! preempt delay runs) an advert below the local priority is [`Fate::Ignore`]: the
//! election would discard it (RFC 5798 §6.4.2), so it neither reaches the agent nor moves
//! the state's arrival time.

use crate::event::AdvertEvent;
use crate::maps::VridStats;
use crate::validate::{Advert, Verdict, WATCH_DROP_LOWER, WATCH_REPORT_ALL, WatchEntry};

/// What becomes of a valid advert for a watched VRID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Below the local priority while the Backup drops such adverts: counted as ignored,
    /// the state untouched, nothing reported.
    Ignore,
    /// A repeat of the last advert: the state's arrival time moves on, nothing reported.
    Quiet,
    /// News for the election: reported (and the state marked when that fails).
    Report,
}

/// Nanoseconds of an advert's raw interval field: v3 centiseconds, v2 seconds.
#[inline(always)]
pub fn interval_ns(version: u8, interval: u16) -> u64 {
    if version == 3 {
        interval as u64 * 10_000_000
    } else {
        interval as u64 * 1_000_000_000
    }
}

/// Decides the fate of a valid advert `a` for a VRID whose state is `s`, under its watch
/// entry `w`. When it arrives does not matter: a repeat after any silence is quiet.
#[inline(always)]
pub fn decide(s: &VridStats, a: &Advert, w: &WatchEntry) -> Fate {
    let (flags, local) = (w.flags, w.priority);
    let all = flags & WATCH_REPORT_ALL != 0;
    // RFC 5798 §6.4.2: a preempting Backup discards adverts below its own priority
    // (priority 0 is a goodbye, never below anyone).
    if !all && flags & WATCH_DROP_LOWER != 0 && a.priority != 0 && a.priority < local {
        return Fate::Ignore;
    }
    let changed = !same_run(s, a) || s.unreported != 0 || s.last_epoch != w.epoch;
    if all || changed || a.priority == 0 || s.last_ns == 0 {
        Fate::Report
    } else {
        Fate::Quiet
    }
}

/// Whether `a` says what the state's last advert said (a repeat).
#[inline(always)]
pub fn same_run(s: &VridStats, a: &Advert) -> bool {
    s.last_src == a.src
        && s.last_priority == a.priority
        && s.last_interval == a.interval
        && s.last_version == a.version
        && s.last_addr_count == a.addr_count
}

/// When the run `a` (arrived at `ts` under watch epoch `epoch`) belongs to began: `ts`
/// when `a` starts one.
#[inline(always)]
pub fn run_start(s: &VridStats, a: &Advert, ts: u64, epoch: u8) -> u64 {
    if s.last_ns == 0 || !same_run(s, a) || s.last_epoch != epoch {
        ts
    } else {
        s.first_ns
    }
}

/// Makes `a`, arrived at `ts` under watch epoch `epoch`, the VRID's last advert.
/// `digest` is the address digest when it was computed (for a report); a quiet repeat
/// keeps the one before.
#[inline(always)]
pub fn commit(s: &mut VridStats, a: &Advert, ts: u64, epoch: u8, digest: Option<u32>) {
    // A new epoch starts a new run: the agent asked to hear from here on.
    s.first_ns = run_start(s, a, ts, epoch);
    s.last_epoch = epoch;
    s.last_ns = ts;
    s.last_src = a.src;
    s.last_priority = a.priority;
    s.last_interval = a.interval;
    s.last_version = a.version;
    s.last_addr_count = a.addr_count;
    if let Some(d) = digest {
        s.last_digest = d;
    }
}

/// First half of the per-VRID step for one judged frame: counts it and decides its fate
/// (`None` for an invalid advert, which is only counted).
#[inline(always)]
pub fn judge(s: &mut VridStats, a: &Advert, verdict: Verdict, w: &WatchEntry) -> Option<Fate> {
    if verdict != Verdict::Accept {
        s.dropped += 1;
        return None;
    }
    s.received += 1;
    Some(decide(s, a, w))
}

/// What became of a report: the address digest it carried, and whether the ring buffer
/// took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// [`crate::validate::address_digest`] of the advert.
    pub digest: u32,
    /// False when the ring buffer was full.
    pub written: bool,
}

/// Second half: records the advert after a report was attempted (`attempt`, for a
/// [`Fate::Report`]).
#[inline(always)]
pub fn settle(
    s: &mut VridStats,
    a: &Advert,
    ts: u64,
    w: &WatchEntry,
    fate: Option<Fate>,
    attempt: Option<Attempt>,
) {
    match fate {
        None => {}
        Some(Fate::Ignore) => {
            // Kept apart from the last advert, so that the agent can say whom it
            // preempted.
            s.ignored += 1;
            s.ignored_ns = ts;
            s.ignored_src = a.src;
            s.ignored_priority = a.priority;
            s.ignored_interval = a.interval;
        }
        Some(Fate::Quiet) => {
            // The steady state: a repeat of the run the state holds, under the same
            // epoch. `commit` would rewrite every field with what it holds already;
            // only the arrival time moves.
            if s.last_ns != 0 && s.last_epoch == w.epoch && same_run(s, a) {
                s.last_ns = ts;
                return;
            }
            // Another CPU recorded another advert since this one was judged a repeat:
            // the agent heard of that one, not of this; count it lost.
            if !same_run(s, a) {
                s.lost += 1;
                s.lost_ns = ts;
                s.unreported = 1;
            }
            commit(s, a, ts, w.epoch, None);
        }
        Some(Fate::Report) => {
            // The digest is recorded even when the report is lost: the agent re-reads it.
            commit(s, a, ts, w.epoch, attempt.map(|t| t.digest));
            if attempt.is_some_and(|t| t.written) {
                s.reported += 1;
                s.unreported = 0;
            } else {
                s.lost += 1;
                s.lost_ns = ts;
                s.unreported = 1;
            }
        }
    }
}

/// Both halves around `emit`, which writes the record and says what became of it.
#[inline(always)]
pub fn track<E: FnOnce() -> Attempt>(
    s: &mut VridStats,
    a: &Advert,
    verdict: Verdict,
    ts: u64,
    w: &WatchEntry,
    emit: E,
) -> Option<Fate> {
    let fate = judge(s, a, verdict, w);
    let attempt = (fate == Some(Fate::Report)).then(emit);
    settle(s, a, ts, w, fate, attempt);
    fate
}

/// Fills the ring-buffer record of a judged frame, field by field (in the XDP program
/// `e` is the reserved ring slot itself: the record never sits on the small eBPF stack).
#[inline(always)]
pub fn fill(
    e: &mut AdvertEvent,
    ts: u64,
    first_ns: u64,
    ifindex: u32,
    a: &Advert,
    verdict: Verdict,
    digest: u32,
) {
    e.first_ns = first_ns;
    e.ts_ns = ts;
    e.ifindex = ifindex;
    e.verdict = verdict as u8;
    e.family = a.family;
    e.ttl = a.ttl;
    e.version = a.version;
    e.kind = a.kind;
    e.vrid = a.vrid;
    e.priority = a.priority;
    e.addr_count = a.addr_count;
    e.interval = a.interval;
    e.auth_type = a.auth_type;
    e.event = crate::event::EVENT_ADVERT;
    e.addr_digest = digest;
    e._pad2 = 0;
    e.src = a.src;
    e.dst = a.dst;
    e.deadline_ns = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FAMILY_V4;

    const SEC: u64 = 1_000_000_000;

    fn advert(src: u8, priority: u8) -> Advert {
        let mut a = Advert {
            family: FAMILY_V4,
            ttl: 255,
            version: 3,
            kind: 1,
            vrid: 51,
            priority,
            addr_count: 1,
            interval: 100,
            ..Advert::default()
        };
        a.src[..4].copy_from_slice(&[192, 0, 2, src]);
        a
    }

    fn seen(a: &Advert, ts: u64) -> VridStats {
        let mut s = VridStats::default();
        commit(&mut s, a, ts, 0, Some(7));
        s
    }

    fn watch(flags: u8, priority: u8) -> WatchEntry {
        WatchEntry {
            version: 3,
            flags,
            priority,
            ..WatchEntry::default()
        }
    }

    #[test]
    fn the_first_advert_is_reported() {
        let a = advert(1, 100);
        assert_eq!(
            decide(&VridStats::default(), &a, &watch(0, 150)),
            Fate::Report
        );
    }

    /// A repeat is quiet however long the silence before it, a whole Master_Down_Interval
    /// included: the down timer judges silence from the state, whose arrival time moves
    /// on; a report would only wake the agent.
    #[test]
    fn a_repeat_after_any_silence_is_quiet_and_moves_the_arrival_on() {
        // 1 s adverts.
        let a = advert(1, 100);
        let w = watch(0, 50);
        let mut s = VridStats::default();
        let written = || Attempt {
            digest: 7,
            written: true,
        };
        assert_eq!(
            track(&mut s, &a, Verdict::Accept, SEC, &w, written),
            Some(Fate::Report)
        );
        let mut ts = SEC;
        for gap in [SEC / 2, 2 * SEC + 1, 5 * SEC / 2, 4 * SEC, 10 * SEC] {
            ts += gap;
            let fate = track(&mut s, &a, Verdict::Accept, ts, &w, || {
                panic!("a repeat after {gap} ns of silence was reported")
            });
            assert_eq!(fate, Some(Fate::Quiet), "after {gap} ns");
            assert_eq!(s.last_ns, ts);
        }
        // One run since the first advert, reported once.
        assert_eq!((s.received, s.reported, s.first_ns), (6, 1, SEC));
    }

    #[test]
    fn each_changed_field_is_reported() {
        let a = advert(1, 100);
        let s = seen(&a, SEC);
        let mut other = [a; 5];
        other[0].src[3] = 2;
        other[1].priority = 101;
        other[2].interval = 50;
        other[3].version = 2;
        other[4].addr_count = 2;
        for b in &other {
            assert_eq!(decide(&s, b, &watch(0, 50)), Fate::Report, "{b:?}");
        }
    }

    #[test]
    fn a_new_epoch_reports_the_next_repeat() {
        let a = advert(1, 100);
        let s = seen(&a, SEC);
        let mut w = watch(0, 50);
        w.epoch = 1;
        assert_eq!(decide(&s, &a, &w), Fate::Report);
        let mut s2 = s;
        let ok = Attempt {
            digest: 7,
            written: true,
        };
        settle(&mut s2, &a, SEC + 1, &w, Some(Fate::Report), Some(ok));
        assert_eq!(decide(&s2, &a, &w), Fate::Quiet);
    }

    #[test]
    fn priority_zero_is_always_reported() {
        let a = advert(1, 0);
        let s = seen(&a, SEC);
        assert_eq!(decide(&s, &a, &watch(WATCH_DROP_LOWER, 150)), Fate::Report);
    }

    #[test]
    fn report_all_reports_repeats_and_lower_priorities() {
        let a = advert(1, 100);
        let s = seen(&a, SEC);
        let flags = WATCH_REPORT_ALL | WATCH_DROP_LOWER;
        assert_eq!(decide(&s, &a, &watch(flags, 150)), Fate::Report);
    }

    #[test]
    fn drop_lower_ignores_only_adverts_below_the_local_priority() {
        let a = advert(1, 100);
        let s = seen(&a, SEC);
        assert_eq!(decide(&s, &a, &watch(WATCH_DROP_LOWER, 150)), Fate::Ignore);
        assert_eq!(decide(&s, &a, &watch(WATCH_DROP_LOWER, 100)), Fate::Quiet);
        // Without the flag (preempt off, or a preempt delay running) it is heard.
        assert_eq!(decide(&s, &a, &watch(0, 150)), Fate::Quiet);
    }

    #[test]
    fn a_lost_report_is_recorded_and_the_next_advert_reported_again() {
        let a = advert(1, 100);
        let mut s = VridStats::default();
        // The ring is full: the report is lost, but the state records the advert (the
        // agent re-reads it) and marks it, so the next advert is news again.
        assert_eq!(
            track(&mut s, &a, Verdict::Accept, SEC, &watch(0, 50), || {
                Attempt {
                    digest: 7,
                    written: false,
                }
            }),
            Some(Fate::Report)
        );
        assert_eq!((s.received, s.reported, s.lost, s.last_ns), (1, 0, 1, SEC));
        assert_eq!((s.unreported, s.last_priority, s.last_digest), (1, 100, 7));
        assert_eq!(
            track(&mut s, &a, Verdict::Accept, SEC + 1, &watch(0, 50), || {
                Attempt {
                    digest: 7,
                    written: true,
                }
            }),
            Some(Fate::Report)
        );
        assert_eq!(
            (s.reported, s.last_ns, s.last_digest, s.unreported),
            (1, SEC + 1, 7, 0)
        );
        assert_eq!(
            track(&mut s, &a, Verdict::Accept, SEC + 2, &watch(0, 50), || {
                panic!("a repeat is not emitted")
            }),
            Some(Fate::Quiet)
        );
        assert_eq!((s.received, s.last_ns, s.last_digest), (3, SEC + 2, 7));
        // The run of identical adverts began with the first one.
        assert_eq!(s.first_ns, SEC);
        let low = advert(1, 10);
        assert_eq!(
            track(
                &mut s,
                &low,
                Verdict::Accept,
                SEC + 3,
                &watch(WATCH_DROP_LOWER, 50),
                || Attempt {
                    digest: 7,
                    written: true
                }
            ),
            Some(Fate::Ignore)
        );
        assert_eq!((s.ignored, s.last_ns, s.last_priority), (1, SEC + 2, 100));
        assert_eq!((s.ignored_ns, s.ignored_priority), (SEC + 3, 10));
        assert_eq!(
            track(
                &mut s,
                &a,
                Verdict::Checksum,
                SEC + 4,
                &watch(0, 50),
                || Attempt {
                    digest: 7,
                    written: true
                }
            ),
            None
        );
        assert_eq!((s.dropped, s.received), (1, 4));
    }

    #[test]
    fn a_repeat_overtaken_by_another_cpu_is_counted_lost() {
        let (a, b) = (advert(1, 100), advert(2, 200));
        let w = watch(0, 50);
        let mut s = seen(&a, SEC);
        // Both CPUs read the state (a's); b is news, a a repeat.
        let fa = judge(&mut s, &a, Verdict::Accept, &w);
        let fb = judge(&mut s, &b, Verdict::Accept, &w);
        assert_eq!((fa, fb), (Some(Fate::Quiet), Some(Fate::Report)));
        // b's report is written first, then a's repeat is recorded over it.
        let ok = Attempt {
            digest: 7,
            written: true,
        };
        settle(&mut s, &b, SEC + 1, &w, fb, Some(ok));
        settle(&mut s, &a, SEC + 1, &w, fa, None);
        assert_eq!((s.lost, s.unreported, s.last_src[3]), (1, 1, 1));
        // So a's next advert is reported.
        assert_eq!(decide(&s, &a, &w), Fate::Report);
    }

    #[test]
    fn a_quiet_repeat_records_what_commit_would() {
        let a = advert(1, 100);
        let w = watch(0, 50);
        let mut s = seen(&a, SEC);
        s.first_ns = SEC / 2;
        let fate = judge(&mut s, &a, Verdict::Accept, &w);
        assert_eq!(fate, Some(Fate::Quiet));
        let mut expected = s;
        commit(&mut expected, &a, 2 * SEC, w.epoch, None);
        settle(&mut s, &a, 2 * SEC, &w, fate, None);
        assert_eq!(s, expected);
        // The run still began where it began; only the arrival moved.
        assert_eq!(
            (s.first_ns, s.last_ns, s.last_digest),
            (SEC / 2, 2 * SEC, 7)
        );
    }

    #[test]
    fn fill_copies_every_field() {
        let a = advert(9, 77);
        let mut e = AdvertEvent::zeroed();
        fill(&mut e, 42, 40, 3, &a, Verdict::Accept, 5);
        assert_eq!(
            (e.ts_ns, e.ifindex, e.verdict, e.priority, e.addr_digest),
            (42, 3, 0, 77, 5)
        );
        assert_eq!(e.first_ns, 40);
        assert_eq!((e.src, e.interval, e.version, e.vrid), (a.src, 100, 3, 51));
    }
}
