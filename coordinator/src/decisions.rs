//! This coordinator's admission decisions per group over the last minute,
//! for the web UI's rates: eventual groups are decided here, linearizable
//! ones are the RMs' answers received here. Counted per second, so a
//! group costs at most [`WINDOW_S`] small buckets however busy it is.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use common::api::GroupDecisions;

/// The window the rates cover, in seconds.
pub const WINDOW_S: u64 = 60;

/// Most groups tracked at once: a `${USER}` template makes a group per
/// user. Past it, the group idle longest is dropped.
pub const MAX_GROUPS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Second {
    at: u64,
    admitted: u64,
    rejected: u64,
}

pub struct Decisions {
    origin: Instant,
    groups: Mutex<BTreeMap<String, VecDeque<Second>>>,
}

/// What a decision was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Admitted,
    /// Refused by the group: its queue was full, or it cannot take the
    /// query (`QUERY_QUEUE_FULL`, `QUERY_REJECTED`).
    Rejected,
}

impl Default for Decisions {
    fn default() -> Self {
        Decisions::new(Instant::now())
    }
}

impl Decisions {
    pub fn new(origin: Instant) -> Decisions {
        Decisions {
            origin,
            groups: Mutex::new(BTreeMap::new()),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    pub fn record(&self, group: &str, outcome: Outcome) {
        self.record_at(group, outcome, Instant::now());
    }

    pub fn record_at(&self, group: &str, outcome: Outcome, now: Instant) {
        let at = self.second(now);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if !groups.contains_key(group) && groups.len() >= MAX_GROUPS {
            let idle = groups
                .iter()
                .min_by_key(|(_, s)| s.back().map_or(0, |b| b.at))
                .map(|(g, _)| g.clone());
            if let Some(idle) = idle {
                groups.remove(&idle);
            }
        }
        let seconds = groups.entry(group.to_string()).or_default();
        if seconds.back().is_none_or(|b| b.at != at) {
            seconds.push_back(Second {
                at,
                admitted: 0,
                rejected: 0,
            });
        }
        if let Some(b) = seconds.back_mut() {
            match outcome {
                Outcome::Admitted => b.admitted += 1,
                Outcome::Rejected => b.rejected += 1,
            }
        }
        while seconds.front().is_some_and(|f| f.at + WINDOW_S <= at) {
            seconds.pop_front();
        }
    }

    /// Each group's decisions in the last [`WINDOW_S`] seconds (groups
    /// with none are dropped).
    pub fn last_minute(&self) -> Vec<GroupDecisions> {
        self.last_minute_at(Instant::now())
    }

    pub fn last_minute_at(&self, now: Instant) -> Vec<GroupDecisions> {
        let at = self.second(now);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.retain(|_, seconds| {
            while seconds.front().is_some_and(|f| f.at + WINDOW_S <= at) {
                seconds.pop_front();
            }
            !seconds.is_empty()
        });
        groups
            .iter()
            .map(|(group, seconds)| GroupDecisions {
                group: group.clone(),
                admitted: seconds.iter().map(|s| s.admitted).sum(),
                rejected: seconds.iter().map(|s| s.rejected).sum(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_the_last_minute_only() {
        let t0 = Instant::now();
        let d = Decisions::new(t0);
        d.record_at("g", Outcome::Admitted, t0);
        d.record_at("g", Outcome::Admitted, t0 + Duration::from_millis(300));
        d.record_at("g", Outcome::Rejected, t0 + Duration::from_secs(30));
        d.record_at("h", Outcome::Admitted, t0 + Duration::from_secs(59));
        let at = |s| {
            d.last_minute_at(t0 + Duration::from_secs(s))
                .into_iter()
                .map(|g| (g.group, g.admitted, g.rejected))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(59),
            vec![("g".into(), 2, 1), ("h".into(), 1, 0)],
            "all within the minute"
        );
        assert_eq!(
            at(60),
            vec![("g".into(), 0, 1), ("h".into(), 1, 0)],
            "second 0 left the window"
        );
        assert_eq!(at(119), vec![], "every group idle for a minute is dropped");
    }
}
