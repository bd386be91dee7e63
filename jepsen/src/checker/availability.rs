//! Availability: when did operations succeed, set against the nemesis
//! windows. Not a safety property, so it is reported, and invalid only
//! when nothing succeeded at all.

use serde::Serialize;

use super::{Validity, Verdict};

/// When operations succeeded, against the fault windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Availability {
    /// Successful operations.
    pub successes: usize,
    pub per_second_during_faults: f64,
    pub per_second_otherwise: f64,
    /// Time in gaps of at least `gap_counted_from_seconds` without a success.
    pub seconds_unavailable: f64,
    pub longest_unavailable_seconds: f64,
    pub gap_counted_from_seconds: f64,
}

/// `successes`: completion times (ns) of successful ops; `windows`: nemesis
/// fault windows (ns); `end_ns`: the run's length. A gap of `gap_ns` or more
/// without a success counts as unavailable time.
pub fn check(
    successes: &[u64],
    windows: &[(u64, u64)],
    end_ns: u64,
    gap_ns: u64,
) -> Verdict<Availability> {
    let mut s = successes.to_vec();
    s.sort_unstable();
    let in_window = |t: u64| windows.iter().any(|(a, b)| t >= *a && t < *b);
    let faulted_ns: u64 = windows.iter().map(|(a, b)| b.saturating_sub(*a)).sum();
    let (inside, outside) = s.iter().fold((0u64, 0u64), |(i, o), t| {
        if in_window(*t) {
            (i + 1, o)
        } else {
            (i, o + 1)
        }
    });
    let mut unavailable_ns = 0;
    let mut longest_ns = 0;
    let mut last = 0;
    for t in s.iter().copied().chain(std::iter::once(end_ns)) {
        let gap = t.saturating_sub(last);
        if gap >= gap_ns {
            unavailable_ns += gap;
            longest_ns = longest_ns.max(gap);
        }
        last = t;
    }
    let rate = |n: u64, ns: u64| {
        if ns == 0 {
            0.0
        } else {
            n as f64 / (ns as f64 / 1e9)
        }
    };
    let valid = if s.is_empty() {
        Validity::Invalid
    } else {
        Validity::Valid
    };
    Verdict {
        valid,
        details: Availability {
            successes: s.len(),
            per_second_during_faults: rate(inside, faulted_ns),
            per_second_otherwise: rate(outside, end_ns.saturating_sub(faulted_ns)),
            seconds_unavailable: unavailable_ns as f64 / 1e9,
            longest_unavailable_seconds: longest_ns as f64 / 1e9,
            gap_counted_from_seconds: gap_ns as f64 / 1e9,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn gaps_count_as_unavailable_and_nothing_at_all_is_invalid() {
        let ok: Vec<u64> = (0..10).map(|i| i * S / 10).chain([4 * S, 5 * S]).collect();
        let v = check(&ok, &[(S, 4 * S)], 5 * S, S);
        assert_eq!(v.valid, Validity::Valid);
        // 0.9 s -> 4 s is one gap of 3.1 s; 4 -> 5 is one of 1 s.
        let secs = v.details.seconds_unavailable;
        assert!((secs - 4.1).abs() < 1e-6, "{secs}");
        assert_eq!(check(&[], &[], 5 * S, S).valid, Validity::Invalid);
    }
}
