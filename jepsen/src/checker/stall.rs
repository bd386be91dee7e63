//! Stalls: stretches of fault-free time in which a root group had work
//! waiting and nothing of it running. With nothing running under a root,
//! no concurrency limit on any waiting query's chain is reached, so the
//! query should start within a view refresh or a commit; a stretch of
//! seconds is admission that stopped (a view that never became fresh
//! again, a queue no one woke), whatever the mode.
//!
//! Fault-free time is the run outside every fault window, each window
//! extended by a recovery grace (an election, a restarted process
//! registering again). Only stretches of at least a minimum length count:
//! a client sees a start one poll late.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Validity, Verdict};

/// One query's wait or run, under its group's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub root: String,
    pub from_ns: u64,
    pub until_ns: u64,
}

/// A stretch of fault-free time with work waiting and nothing running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stall {
    pub root: String,
    pub from_seconds: f64,
    pub until_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stalls {
    pub stalls: Vec<Stall>,
    pub longest_seconds: f64,
    /// Settings: the grace after each fault window, the shortest stall.
    pub grace_seconds: f64,
    pub counted_from_seconds: f64,
}

/// `waiting`: from submission until the query ran or ended; `running`: as
/// the clients saw it; `windows`: fault windows (ns); `end_ns`: the run's
/// end.
pub fn check(
    waiting: &[Span],
    running: &[Span],
    windows: &[(u64, u64)],
    end_ns: u64,
    grace_ns: u64,
    min_ns: u64,
) -> Verdict<Stalls> {
    // Per root, a sweep over the boundaries of every span and window.
    #[derive(Clone, Copy)]
    enum Kind {
        Wait,
        Run,
        Fault,
    }
    let mut roots: BTreeMap<&str, Vec<(u64, i64, Kind)>> = BTreeMap::new();
    for (spans, kind) in [(waiting, Kind::Wait), (running, Kind::Run)] {
        for s in spans.iter().filter(|s| s.from_ns < s.until_ns) {
            let events = roots.entry(s.root.as_str()).or_default();
            events.push((s.from_ns, 1, kind));
            events.push((s.until_ns, -1, kind));
        }
    }
    let mut stalls = Vec::new();
    for (root, mut events) in roots {
        for (a, b) in windows {
            events.push((*a, 1, Kind::Fault));
            events.push((b.saturating_add(grace_ns), -1, Kind::Fault));
        }
        events.sort_by_key(|e| e.0);
        let (mut waits, mut runs, mut faults) = (0i64, 0i64, 0i64);
        let mut stalled_since: Option<u64> = None;
        let mut i = 0;
        while i < events.len() {
            let t = events[i].0;
            // Apply every boundary at `t` before judging the next stretch.
            while i < events.len() && events[i].0 == t {
                let (_, d, kind) = events[i];
                match kind {
                    Kind::Wait => waits += d,
                    Kind::Run => runs += d,
                    Kind::Fault => faults += d,
                }
                i += 1;
            }
            let stalled = waits > 0 && runs == 0 && faults == 0 && t < end_ns;
            match (stalled, stalled_since) {
                (true, None) => stalled_since = Some(t),
                (false, Some(from)) => {
                    let until = t.min(end_ns);
                    if until.saturating_sub(from) >= min_ns {
                        stalls.push(Stall {
                            root: root.to_string(),
                            from_seconds: from as f64 / 1e9,
                            until_seconds: until as f64 / 1e9,
                        });
                    }
                    stalled_since = None;
                }
                _ => {}
            }
        }
        if let Some(from) = stalled_since {
            if end_ns.saturating_sub(from) >= min_ns {
                stalls.push(Stall {
                    root: root.to_string(),
                    from_seconds: from as f64 / 1e9,
                    until_seconds: end_ns as f64 / 1e9,
                });
            }
        }
    }
    let longest_seconds = stalls
        .iter()
        .map(|s| s.until_seconds - s.from_seconds)
        .fold(0.0, f64::max);
    Verdict {
        valid: if stalls.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        details: Stalls {
            stalls,
            longest_seconds,
            grace_seconds: grace_ns as f64 / 1e9,
            counted_from_seconds: min_ns as f64 / 1e9,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn span(root: &str, from: f64, until: f64) -> Span {
        Span {
            root: root.into(),
            from_ns: (from * S as f64) as u64,
            until_ns: (until * S as f64) as u64,
        }
    }

    #[test]
    fn waiting_with_nothing_running_in_fault_free_time_is_a_stall() {
        // q waits 2 s .. 9 s; something of q runs until 3 s.
        let v = check(
            &[span("q", 2.0, 9.0)],
            &[span("q", 1.0, 3.0)],
            &[],
            10 * S,
            S,
            2 * S,
        );
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details.stalls, vec![span_stall("q", 3.0, 9.0)]);
    }

    fn span_stall(root: &str, from: f64, until: f64) -> Stall {
        Stall {
            root: root.into(),
            from_seconds: from,
            until_seconds: until,
        }
    }

    #[test]
    fn faults_and_their_grace_excuse_a_wait_and_other_roots_do_not_count() {
        // The wait 2 .. 8 s is all inside a fault (1 .. 5 s) and its 3 s
        // of grace; the other root's run does not matter.
        let v = check(
            &[span("q", 2.0, 8.0)],
            &[span("r", 0.0, 10.0)],
            &[(S, 5 * S)],
            10 * S,
            3 * S,
            2 * S,
        );
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.details);
        // With a 1 s grace, 6 .. 8 s is a stall.
        let v = check(&[span("q", 2.0, 8.0)], &[], &[(S, 5 * S)], 10 * S, S, 2 * S);
        assert_eq!(v.details.stalls, vec![span_stall("q", 6.0, 8.0)]);
    }

    #[test]
    fn short_waits_and_waits_beside_a_run_are_no_stall() {
        let v = check(
            &[span("q", 1.0, 2.5), span("q", 4.0, 9.0)],
            &[span("q", 3.9, 9.5)],
            &[],
            10 * S,
            S,
            2 * S,
        );
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.details);
        // A wait still open at the end counts up to the end.
        let v = check(&[span("q", 5.0, 20.0)], &[], &[], 10 * S, S, 2 * S);
        assert_eq!(v.details.stalls, vec![span_stall("q", 5.0, 10.0)]);
    }
}
