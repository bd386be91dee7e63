//! The election timer: ours, not openraft's.
//!
//! openraft 0.9 draws a node's random election timeout once per process
//! (`EngineConfig::new`). Two followers whose draws happen to be close then
//! time out together and split the vote after every leader failure, for as
//! long as both processes live: the failover drill saw elections of 1.1 to
//! 1.4 s in 2 of 20 rounds. So openraft's timer is switched off
//! (`enable_elect: false` in [`crate::config::NodeConfig::raft_config`]) and
//! this task triggers elections itself (`trigger().elect()`), drawing a
//! fresh timeout for every wait, under openraft's own rules:
//! - the wait restarts on leader contact (an accepted AppendEntries) and on
//!   every change of this node's vote (it voted, or campaigned);
//! - a node that knew a leader waits the leader lease (`election_max`) on
//!   top, because voters refuse candidates until their lease runs out;
//! - a node that learnt of a longer log than its own (a vote answer says
//!   so) since the last sign of a working leader backs off by
//!   `2 * election_max`, openraft's `smaller_log_timeout`: it cannot win,
//!   and its campaigns would only raise the term and depose the node that
//!   can (the drill saw a shorter log win the term race for 1.2 s).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;

use crate::config::Timings;
use crate::{NodeId, Raft};

/// What the Raft network and the Raft RPC server learn that the timer
/// needs (the metrics read the leader contact from here too).
#[derive(Debug, Default)]
pub struct Signals {
    greater_log_at: Mutex<Option<Instant>>,
    /// When this node last accepted an AppendEntries (or snapshot chunk)
    /// from a leader.
    leader_contact_at: Mutex<Option<Instant>>,
}

impl Signals {
    /// This node accepted an AppendEntries or snapshot chunk from a leader.
    pub fn leader_contacted(&self, now: Instant) {
        *self
            .leader_contact_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    /// When this node last accepted an AppendEntries or snapshot chunk
    /// from a leader: the election timer restarts from it.
    pub fn last_leader_contact(&self) -> Option<Instant> {
        *self
            .leader_contact_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A voter answered with a longer log than this node's.
    pub fn saw_greater_log(&self) {
        *self
            .greater_log_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn greater_log_since(&self, t: Instant) -> bool {
        self.greater_log_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|g| g >= t)
    }
}

/// How long to wait without contact before campaigning.
fn wait(timings: &Timings, fresh_draw: Duration, knew_leader: bool, behind: bool) -> Duration {
    let mut w = fresh_draw;
    if knew_leader {
        w += timings.election_max;
    }
    if behind {
        w += timings.election_max * 2;
    }
    w
}

fn draw(timings: &Timings) -> Duration {
    let (lo, hi) = (
        timings.election_min,
        timings.election_max.max(timings.election_min),
    );
    if lo == hi {
        return lo;
    }
    rand::thread_rng().gen_range(lo..hi)
}

/// Runs the timer until `stop`.
pub async fn run(
    id: NodeId,
    raft: Raft,
    timings: Timings,
    signals: Arc<Signals>,
    mut stop: watch::Receiver<bool>,
) {
    let watch = raft.metrics();
    let tick =
        (timings.election_min / 10).clamp(Duration::from_millis(2), Duration::from_millis(20));
    let mut since = Instant::now();
    // Since the last sign of a working leader (contact, or a vote that
    // became committed): a longer log seen after it still means this node
    // cannot win, whatever campaigns happened since.
    let mut epoch = since;
    let mut last_vote = watch.borrow().vote;
    let mut timeout = draw(&timings);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = Instant::now();
        let (vote, is_leader, is_voter) = {
            let m = watch.borrow();
            (
                m.vote,
                m.state == openraft::ServerState::Leader,
                m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == id),
            )
        };
        if vote != last_vote {
            if vote.is_committed() {
                epoch = now;
            }
            last_vote = vote;
            since = now;
            timeout = draw(&timings);
        }
        if let Some(contact) = signals.last_leader_contact() {
            since = since.max(contact);
            epoch = epoch.max(contact);
        }
        if is_leader || !is_voter {
            since = now;
            continue;
        }
        let w = wait(
            &timings,
            timeout,
            vote.is_committed(),
            signals.greater_log_since(epoch),
        );
        if now.duration_since(since) >= w {
            tracing::debug!(
                waited_ms = w.as_millis() as u64,
                "no leader contact: campaigning"
            );
            if raft.trigger().elect().await.is_err() {
                return; // Raft has stopped
            }
            since = Instant::now();
            timeout = draw(&timings);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings() -> Timings {
        Timings {
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            ..Timings::default()
        }
    }

    #[test]
    fn every_draw_is_fresh_and_in_range() {
        let t = timings();
        let draws: std::collections::BTreeSet<Duration> = (0..200).map(|_| draw(&t)).collect();
        assert!(draws.len() > 50, "draws repeat: {}", draws.len());
        assert!(draws
            .iter()
            .all(|d| *d >= t.election_min && *d < t.election_max));
    }

    #[test]
    fn the_wait_adds_the_lease_and_the_back_off_as_openraft_does() {
        let t = timings();
        let d = Duration::from_millis(200);
        assert_eq!(wait(&t, d, false, false), d);
        assert_eq!(wait(&t, d, true, false), d + t.election_max);
        assert_eq!(wait(&t, d, true, true), d + t.election_max * 3);
    }

    #[test]
    fn a_longer_log_seen_before_the_wait_began_is_forgotten() {
        let s = Signals::default();
        s.saw_greater_log();
        std::thread::sleep(Duration::from_millis(2));
        let later = Instant::now();
        assert!(!s.greater_log_since(later));
        s.saw_greater_log();
        assert!(s.greater_log_since(later));
    }
}
