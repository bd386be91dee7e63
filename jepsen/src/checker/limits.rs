//! Resource groups' memory and CPU limits, checked from what clients saw.
//!
//! The RMs learn queries' memory and CPU from workers' heartbeats and the
//! leader's stamps, so a limit binds only after a lag (a heartbeat, a
//! stamp, and in eventual mode the view's staleness): Trino's limits are
//! soft in the same way. Each check therefore counts only what had been
//! running for longer than that lag, `margin`:
//!
//! - memory (`softMemoryLimit`): when a query of the group starts, the
//!   queries of the group that had been running for at least `margin` and
//!   still ran held at most the limit (else none may start);
//! - CPU (`hardCpuLimit`, regenerated at `quota` per second): for a start
//!   at `s` and any earlier start `u`, the CPU of the group's queries that
//!   ran wholly inside `[u, s - margin]` is below the hard limit plus the
//!   quota regenerated over `[u, s]` plus one query's CPU (a stamp may
//!   come just before a query's last share).
//!
//! Starts within a fault window (and a grace after it) are not judged: a
//! new leader warms up before stamping, and a worker the leader cannot
//! hear is not counted. They are listed, not failed.

use serde::Serialize;

use super::{Validity, Verdict};

/// One query of a limited group as its client saw it run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub query_id: String,
    pub from_ns: u64,
    pub until_ns: u64,
    pub memory_bytes: u64,
    pub cpu_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub query_id: String,
    pub at_seconds: f64,
    /// Memory of the queries running for longer than the margin, or CPU
    /// of the queries that ended inside the window, as judged.
    pub used: u64,
    /// What the rule allowed at that start.
    pub allowed: u64,
    pub during_faults: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitReport {
    pub group: String,
    pub starts_judged: usize,
    pub breaches: Vec<Breach>,
    pub margin_seconds: f64,
}

fn during_faults(t: u64, windows: &[(u64, u64)], grace_ns: u64) -> bool {
    windows
        .iter()
        .any(|(a, b)| *a <= t && t <= b.saturating_add(grace_ns))
}

fn verdict(report: LimitReport) -> Verdict<LimitReport> {
    let valid = if report.breaches.iter().any(|b| !b.during_faults) {
        Validity::Invalid
    } else if report.starts_judged == 0 {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Verdict {
        valid,
        details: report,
    }
}

/// `softMemoryLimit` of `limit_bytes` on `group`'s queries `ran`.
pub fn check_memory(
    group: &str,
    ran: &[Ran],
    limit_bytes: u64,
    margin_ns: u64,
    windows: &[(u64, u64)],
    grace_ns: u64,
) -> Verdict<LimitReport> {
    let mut breaches = Vec::new();
    for q in ran {
        let s = q.from_ns;
        let used: u64 = ran
            .iter()
            .filter(|r| r.query_id != q.query_id)
            .filter(|r| r.from_ns.saturating_add(margin_ns) <= s && r.until_ns > s)
            .map(|r| r.memory_bytes)
            .sum();
        if used > limit_bytes {
            breaches.push(Breach {
                query_id: q.query_id.clone(),
                at_seconds: s as f64 / 1e9,
                used,
                allowed: limit_bytes,
                during_faults: during_faults(s, windows, grace_ns),
            });
        }
    }
    verdict(LimitReport {
        group: group.to_string(),
        starts_judged: ran.len(),
        breaches,
        margin_seconds: margin_ns as f64 / 1e9,
    })
}

/// `hardCpuLimit` of `hard_ms`, regenerated at `quota_ms_per_s`, on
/// `group`'s queries `ran`.
pub fn check_cpu(
    group: &str,
    ran: &[Ran],
    hard_ms: u64,
    quota_ms_per_s: u64,
    margin_ns: u64,
    windows: &[(u64, u64)],
    grace_ns: u64,
) -> Verdict<LimitReport> {
    let most_cpu = ran.iter().map(|r| r.cpu_ms).max().unwrap_or(0);
    let mut breaches = Vec::new();
    for q in ran {
        let s = q.from_ns;
        let Some(window_end) = s.checked_sub(margin_ns) else {
            continue;
        };
        // The worst window ending at s - margin, over every start u.
        let worst = ran
            .iter()
            .map(|u| u.from_ns)
            .filter(|u| *u < window_end)
            .map(|u| {
                let used: u64 = ran
                    .iter()
                    .filter(|r| r.from_ns >= u && r.until_ns <= window_end)
                    .map(|r| r.cpu_ms)
                    .sum();
                let regenerated = (s - u) / 1_000_000_000 * quota_ms_per_s + quota_ms_per_s;
                (used, hard_ms + regenerated + most_cpu)
            })
            .find(|(used, allowed)| used > allowed);
        if let Some((used, allowed)) = worst {
            breaches.push(Breach {
                query_id: q.query_id.clone(),
                at_seconds: s as f64 / 1e9,
                used,
                allowed,
                during_faults: during_faults(s, windows, grace_ns),
            });
        }
    }
    verdict(LimitReport {
        group: group.to_string(),
        starts_judged: ran.len(),
        breaches,
        margin_seconds: margin_ns as f64 / 1e9,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ran(id: &str, from_s: f64, until_s: f64, memory_bytes: u64, cpu_ms: u64) -> Ran {
        Ran {
            query_id: id.into(),
            from_ns: (from_s * S as f64) as u64,
            until_ns: (until_s * S as f64) as u64,
            memory_bytes,
            cpu_ms,
        }
    }

    #[test]
    fn a_start_while_old_queries_hold_more_than_the_limit_is_a_breach() {
        // Limit 300: three old queries of 150 hold 450 when q4 starts.
        let ok = [
            ran("q1", 0.0, 10.0, 150, 0),
            ran("q2", 0.0, 10.0, 150, 0),
            // Started with 300 held: equal still runs.
            ran("q3", 5.0, 10.0, 150, 0),
        ];
        let v = check_memory("m", &ok, 300, 2 * S, &[], S);
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.details);
        let mut bad = ok.to_vec();
        bad.push(ran("q4", 8.0, 12.0, 150, 0));
        let v = check_memory("m", &bad, 300, 2 * S, &[], S);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details.breaches[0].query_id, "q4");
        assert_eq!(v.details.breaches[0].used, 450);
        // Within a fault window: listed, not failed.
        let v = check_memory("m", &bad, 300, 2 * S, &[(7 * S, 8 * S)], S);
        assert_eq!(v.valid, Validity::Valid);
        assert!(v.details.breaches[0].during_faults);
    }

    #[test]
    fn queries_younger_than_the_margin_are_not_counted_yet() {
        // q2 started 1 s before q3: the RMs may not have stamped it yet.
        let qs = [
            ran("q1", 0.0, 10.0, 200, 0),
            ran("q2", 4.0, 10.0, 200, 0),
            ran("q3", 5.0, 10.0, 200, 0),
        ];
        let v = check_memory("m", &qs, 300, 2 * S, &[], S);
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.details);
    }

    #[test]
    fn starts_past_the_cpu_quota_are_breaches() {
        // Hard 3 s, 1 s of CPU regenerated per second, 1 s of CPU a query.
        let mut qs: Vec<Ran> = (0..3)
            .map(|i| ran(&format!("a{i}"), 0.0, 0.5, 0, 1_000))
            .collect();
        // One query a second after that is what the quota allows.
        for i in 0..5 {
            let t = 3.0 + i as f64;
            qs.push(ran(&format!("b{i}"), t, t + 0.5, 0, 1_000));
        }
        let v = check_cpu("c", &qs, 3_000, 1_000, S, &[], S);
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.details);
        // Ten more at once, right after: far past the quota.
        for i in 0..10 {
            let t = 8.0 + i as f64 * 0.01;
            qs.push(ran(&format!("c{i}"), t, t + 0.2, 0, 1_000));
        }
        qs.push(ran("late", 9.5, 10.0, 0, 1_000));
        let v = check_cpu("c", &qs, 3_000, 1_000, S, &[], S);
        assert_eq!(v.valid, Validity::Invalid, "{:?}", v.details);
        assert_eq!(
            v.details.breaches.last().map(|b| b.query_id.as_str()),
            Some("late")
        );
    }
}
