//! Over-admission: intervals in which queries were certainly running (or
//! permits certainly held) must never overlap more than the limit of any
//! group on their chain (`a.b.c` counts toward `a.b.c`, `a.b` and `a`).
//!
//! Reports, per group and in all: how many times the count rose above the
//! limit, the largest excess, and excess-seconds (the integral of the
//! excess over time).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Validity, Verdict};

#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub group: String,
    pub from_ns: u64,
    pub until_ns: u64,
    pub query_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Excess {
    pub violations: u64,
    pub max_excess: u64,
    pub excess_seconds: f64,
    pub peak: u64,
    pub limit: u64,
}

/// `a.b.c` -> `a`, `a.b`, `a.b.c`.
fn chain(group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prefix = String::new();
    for part in group.split('.') {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(part);
        out.push(prefix.clone());
    }
    out
}

/// Sweeps the intervals per group; `limits`: group id -> hard limit.
/// Groups without a known limit are skipped.
pub fn excess(intervals: &[Interval], limits: &BTreeMap<String, u64>) -> BTreeMap<String, Excess> {
    // group -> (time, +1 / -1); ends sort before starts at the same time,
    // so back-to-back intervals do not count as overlapping.
    let mut events: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    for iv in intervals.iter().filter(|i| i.until_ns > i.from_ns) {
        for g in chain(&iv.group) {
            if limits.contains_key(&g) {
                let e = events.entry(g).or_default();
                e.push((iv.from_ns, 1));
                e.push((iv.until_ns, -1));
            }
        }
    }
    let mut out = BTreeMap::new();
    for (g, mut ev) in events {
        ev.sort();
        let limit = limits[&g];
        let mut x = Excess {
            limit,
            ..Default::default()
        };
        let mut count: i64 = 0;
        let mut last_t = 0;
        for (t, d) in ev {
            let over = (count as u64).saturating_sub(limit);
            x.excess_seconds += over as f64 * (t - last_t) as f64 / 1e9;
            let before = count;
            count += d;
            last_t = t;
            x.peak = x.peak.max(count as u64);
            if before as u64 <= limit && count as u64 > limit {
                x.violations += 1;
            }
            x.max_excess = x.max_excess.max((count as u64).saturating_sub(limit));
        }
        out.insert(g, x);
    }
    out
}

/// Over-admission as one view of the run saw it, summed over the groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overlap {
    /// Whose intervals: the clients', the workers'.
    pub view: String,
    pub intervals: usize,
    pub violations: u64,
    pub max_excess: u64,
    pub excess_seconds: f64,
    pub groups: BTreeMap<String, Excess>,
}

/// The verdict: invalid when any group ran over its limit.
pub fn check(
    view: &str,
    intervals: &[Interval],
    limits: &BTreeMap<String, u64>,
) -> Verdict<Overlap> {
    let per_group = excess(intervals, limits);
    let violations: u64 = per_group.values().map(|x| x.violations).sum();
    let max_excess = per_group.values().map(|x| x.max_excess).max().unwrap_or(0);
    let excess_seconds: f64 = per_group.values().map(|x| x.excess_seconds).sum();
    let valid = if intervals.is_empty() {
        Validity::Unknown
    } else if violations == 0 {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    Verdict {
        valid,
        details: Overlap {
            view: view.to_string(),
            intervals: intervals.len(),
            violations,
            max_excess,
            excess_seconds,
            groups: per_group,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(group: &str, from: u64, until: u64) -> Interval {
        Interval {
            group: group.into(),
            from_ns: from,
            until_ns: until,
            query_id: format!("{group}-{from}"),
        }
    }

    fn limits(l: &[(&str, u64)]) -> BTreeMap<String, u64> {
        l.iter().map(|(g, n)| (g.to_string(), *n)).collect()
    }

    #[test]
    fn within_the_limit_is_valid_and_back_to_back_is_not_overlap() {
        let ivs = [iv("g", 0, 10), iv("g", 10, 20), iv("g", 5, 15)];
        let v = check("client", &ivs, &limits(&[("g", 2)]));
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.details);
    }

    #[test]
    fn overlap_over_the_limit_is_measured() {
        // Three at once for 1 s over a limit of 2, then again later.
        let s = 1_000_000_000;
        let ivs = [
            iv("g", 0, 2 * s),
            iv("g", 0, 2 * s),
            iv("g", s, 2 * s),
            iv("g", 5 * s, 6 * s),
            iv("g", 5 * s, 6 * s),
            iv("g", 5 * s, 6 * s),
            iv("g", 5 * s, 6 * s),
        ];
        let v = check("client", &ivs, &limits(&[("g", 2)]));
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details.violations, 2);
        assert_eq!(v.details.max_excess, 2);
        let secs = v.details.excess_seconds;
        assert!((secs - 3.0).abs() < 1e-9, "{secs}");
    }

    #[test]
    fn children_count_toward_their_parents() {
        let ivs = [iv("r.a", 0, 10), iv("r.b", 0, 10)];
        let ok = check("client", &ivs, &limits(&[("r", 2), ("r.a", 1), ("r.b", 1)]));
        assert_eq!(ok.valid, Validity::Valid);
        let over = check("client", &ivs, &limits(&[("r", 1), ("r.a", 1), ("r.b", 1)]));
        assert_eq!(over.valid, Validity::Invalid);
        assert_eq!(over.details.groups["r"].peak, 2);
    }

    #[test]
    fn no_evidence_is_unknown() {
        assert_eq!(
            check("client", &[], &limits(&[("g", 1)])).valid,
            Validity::Unknown
        );
    }
}
