//! Leadership hand-over (step-down).
//!
//! openraft 0.9 has no leadership transfer, and followers refuse votes while
//! they hold a live leader lease (`election_timeout_max` since they last
//! heard from the leader). So: stop heartbeats and refuse writes and ticks
//! here, let the leases lapse, wait until the target has every entry, then
//! ask the target to campaign ([`ELECT_PATH`]). The old leader grants the
//! vote (its log is no longer than the target's) and steps down on seeing
//! the higher term.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use common::api::StepDownReport;

use super::{Core, CoreError};
use crate::NodeId;

/// Where the old leader asks the chosen follower to campaign.
pub const ELECT_PATH: &str = "/v1/admin/elect";

impl Core {
    /// Hands leadership to `to`, or to the most up-to-date follower.
    ///
    /// The transfer runs as a task of its own holding a `TransferGuard`:
    /// a caller that goes away (a client hanging up drops this future) must
    /// not leave heartbeats off and writes refused.
    pub async fn step_down(&self, to: Option<NodeId>) -> Result<StepDownReport, CoreError> {
        self.require_leader()?;
        let me = self.id();
        let voters = self.voters();
        let target = match to {
            Some(t) if t == me => {
                return Err(CoreError::Invalid("cannot step down to itself".into()))
            }
            Some(t) if !voters.contains(&t) => {
                return Err(CoreError::Invalid(format!("node {t} is not a voter")))
            }
            Some(t) => t,
            None => self.most_caught_up_follower(&voters).ok_or_else(|| {
                CoreError::Unavailable("no follower to hand leadership to".into())
            })?,
        };
        let Some(guard) = TransferGuard::take(self) else {
            return Err(CoreError::Conflict(
                "a step-down is already in progress".into(),
            ));
        };
        let start = Instant::now();
        let task = {
            let core = self.clone();
            tokio::spawn(async move {
                let _guard = guard;
                core.hand_over(target).await
            })
        };
        let new_leader = task
            .await
            .map_err(|e| CoreError::Internal(format!("the step-down task failed: {e}")))??;
        tracing::info!(from = me, to = target, ?new_leader, "stepped down");
        Ok(StepDownReport {
            from: me,
            to: target,
            new_leader,
            elapsed_ms: start.elapsed().as_millis() as u64,
        })
    }

    fn most_caught_up_follower(&self, voters: &BTreeSet<NodeId>) -> Option<NodeId> {
        let replication = self.raft().metrics().borrow().replication.clone()?;
        voters
            .iter()
            .filter(|v| **v != self.id())
            .max_by_key(|v| {
                (
                    replication.get(v).copied().flatten().map(|l| l.index),
                    std::cmp::Reverse(**v),
                )
            })
            .copied()
    }

    async fn hand_over(&self, target: NodeId) -> Result<Option<NodeId>, CoreError> {
        let me = self.id();
        let timings = self.timings();
        let lease = timings.election_max + timings.heartbeat;
        let deadline = Instant::now() + lease + timings.election_max * 4;
        tokio::time::sleep(lease).await;
        // The target must hold every entry, or the others will not vote for it.
        loop {
            let m = self.raft().metrics().borrow().clone();
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).copied().flatten())
                .map(|l| l.index);
            if m.current_leader != Some(me) {
                return Ok(m.current_leader);
            }
            if matched.is_some() && matched == m.last_log_index {
                break;
            }
            if Instant::now() > deadline {
                return Err(CoreError::Unavailable(format!(
                    "node {target} did not catch up (matched {matched:?}, last log {:?})",
                    m.last_log_index
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let addr = self
            .address_of(target)
            .ok_or_else(|| CoreError::Invalid(format!("node {target} has no address")))?;
        self.inner
            .http
            .post_bytes(
                &self.inner.http.url(&addr, ELECT_PATH),
                common::http::CONTENT_JSON,
                Vec::new(),
                None,
                &[],
            )
            .await
            .map_err(|e| {
                CoreError::Unavailable(format!("cannot ask node {target} to campaign: {e}"))
            })?;
        let mut metrics = self.raft().metrics();
        let waited = tokio::time::timeout_at(deadline.into(), async {
            loop {
                let leader = metrics.borrow().current_leader;
                if leader.is_some() && leader != Some(me) {
                    return leader;
                }
                if metrics.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match waited {
            Ok(leader) => Ok(leader),
            Err(_) => Err(CoreError::Unavailable(format!(
                "node {target} did not take over within {} ms",
                timings.election_max.as_millis() * 4
            ))),
        }
    }
}

/// Holds a leadership transfer: while it lives this node sends no
/// heartbeats and refuses writes and ticks; dropping it (the transfer
/// finished, failed, or its task was cancelled) turns both back on.
struct TransferGuard {
    core: Core,
}

impl TransferGuard {
    /// `None` when a transfer is already running.
    fn take(core: &Core) -> Option<TransferGuard> {
        core.inner
            .transferring
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        core.raft().runtime_config().heartbeat(false);
        Some(TransferGuard { core: core.clone() })
    }
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.core.raft().runtime_config().heartbeat(true);
        self.core.inner.transferring.store(false, Ordering::Release);
    }
}
