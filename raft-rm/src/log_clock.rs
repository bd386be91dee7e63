//! The time a leader stamps into the log.
//!
//! Log time expires sessions and times out queued queries, so a leader
//! whose wall clock jumps forward would revoke every admission at once
//! (the clock nemesis showed it). The stamp therefore follows the wall
//! clock only within ±10% of the leader's monotonic clock, measured over
//! windows of one second: a jump of +5 s reaches the log at about 100 ms
//! per second, far slower than sessions are renewed. A clock that falls
//! behind still lets log time advance at 90% of real time. A new leader
//! starts from the log time it has applied plus at most `TAKEOVER_GAP` of
//! its own wall clock: enough for the election that made it leader, so
//! replicas do not look stale afterwards, and at most that much of a
//! jumped clock gets in.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far log time may run ahead of (or behind) the leader's monotonic
/// clock.
const RATE_SLACK: f64 = 0.10;
/// The window over which the rate is measured.
const WINDOW: Duration = Duration::from_secs(1);
/// The most a new leader's first stamp may be ahead of the log it applied
/// (an election takes well under this on the default timings).
const TAKEOVER_GAP_MS: u64 = 1_000;

#[derive(Debug, Clone, Copy)]
struct Anchor {
    term: u64,
    log_ms: f64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct LogClock {
    state: Mutex<Option<(Anchor, u64)>>,
}

impl LogClock {
    /// The stamp for a new entry proposed in `term`, given this node's
    /// wall clock and the log time it has applied.
    pub fn stamp(&self, term: u64, applied_log_ms: u64, wall_ms: u64) -> u64 {
        self.stamp_at(term, applied_log_ms, wall_ms, Instant::now())
    }

    fn stamp_at(&self, term: u64, applied_log_ms: u64, wall_ms: u64, now: Instant) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (anchor, last) = match *state {
            Some((a, last)) if a.term == term => (a, last),
            // A new leadership (or the first entry ever): start from the
            // log as applied, or from the wall clock on an empty log.
            _ => {
                let start = if applied_log_ms == 0 {
                    wall_ms
                } else {
                    wall_ms.clamp(applied_log_ms, applied_log_ms + TAKEOVER_GAP_MS)
                };
                let a = Anchor {
                    term,
                    log_ms: start as f64,
                    at: now,
                };
                (a, start)
            }
        };
        let elapsed = now.saturating_duration_since(anchor.at).as_secs_f64() * 1000.0;
        let lo = anchor.log_ms + elapsed * (1.0 - RATE_SLACK);
        let hi = anchor.log_ms + elapsed * (1.0 + RATE_SLACK);
        let stamp = (wall_ms as f64).clamp(lo, hi).round() as u64;
        let stamp = stamp.max(last);
        let anchor = if now.saturating_duration_since(anchor.at) >= WINDOW {
            Anchor {
                term,
                log_ms: stamp as f64,
                at: now,
            }
        } else {
            anchor
        };
        *state = Some((anchor, stamp));
        stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stamps every 200 ms (the tick) for `secs`, with the wall clock
    /// `offset_ms` off true time from the start; answers the last stamp.
    fn run(c: &LogClock, term: u64, t0: Instant, true_ms: u64, offset_ms: i64, secs: u64) -> u64 {
        let mut last = 0;
        for i in 0..=(secs * 5) {
            let now = t0 + Duration::from_millis(i * 200);
            let wall = (true_ms as i64 + (i * 200) as i64 + offset_ms) as u64;
            last = c.stamp_at(term, 0, wall, now);
        }
        last
    }

    #[test]
    fn a_true_clock_is_followed_exactly() {
        let c = LogClock::default();
        let t0 = Instant::now();
        assert_eq!(run(&c, 1, t0, 1_000_000, 0, 10), 1_010_000);
    }

    #[test]
    fn a_jump_forward_reaches_the_log_slowly() {
        let c = LogClock::default();
        let t0 = Instant::now();
        run(&c, 1, t0, 1_000_000, 0, 2);
        // The wall clock jumps +5 s; 3 s later log time is at most 10% ahead.
        let c2 = c;
        let mut last = 0;
        for i in 0..=15u64 {
            let now = t0 + Duration::from_millis(2_000 + i * 200);
            last = c2.stamp_at(1, 0, 1_002_000 + i * 200 + 5_000, now);
        }
        let true_now = 1_005_000;
        assert!(last <= true_now + 300 + 1, "log time jumped: {last}");
        assert!(last >= true_now, "log time fell behind: {last}");
    }

    #[test]
    fn a_clock_behind_still_moves_log_time_and_never_backwards() {
        let c = LogClock::default();
        let t0 = Instant::now();
        run(&c, 1, t0, 1_000_000, 0, 1);
        let mut stamps = Vec::new();
        for i in 1..=10u64 {
            let now = t0 + Duration::from_millis(1_000 + i * 200);
            stamps.push(c.stamp_at(1, 0, 1_001_000 + i * 200 - 5_000, now));
        }
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
        // Two seconds later, at least 90% of them have passed in the log.
        assert!(stamps[9] >= 1_001_000 + 1_800 - 1, "{stamps:?}");
    }

    #[test]
    fn a_new_leader_starts_from_the_applied_log_time() {
        let c = LogClock::default();
        let t0 = Instant::now();
        // An election of 400 ms: the new leader picks up its wall clock.
        let first = c.stamp_at(2, 1_000_000, 1_000_400, t0);
        assert_eq!(first, 1_000_400);
        // Its wall clock is 5 s ahead: at most a second of that gets in.
        let c = LogClock::default();
        let first = c.stamp_at(3, 1_000_000, 1_005_500, t0);
        assert_eq!(first, 1_001_000);
        let later = c.stamp_at(3, 1_000_000, 1_006_500, t0 + Duration::from_secs(1));
        assert!(later <= 1_002_100, "{later}");
    }
}
