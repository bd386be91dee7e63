//! Building a snapshot now, on request.

use std::time::{Duration, Instant};

pub use common::api::SnapshotReport;

use super::{Core, CoreError};

impl Core {
    /// Builds a snapshot on this node (leader or not) and waits until one
    /// built after the call covers the index applied when it arrived.
    ///
    /// openraft ignores a trigger while a build is running, and that build may
    /// stop short of the index we want, so every build that finishes short is
    /// followed by another trigger. A snapshot installed from the leader may
    /// cover the index too, but it is not a build of ours: we wait for ours,
    /// so the report's build time is a build of at least this state.
    pub async fn snapshot_now(&self, wait: Duration) -> Result<SnapshotReport, CoreError> {
        let start = Instant::now();
        let deadline = start + wait;
        let raft = self.raft();
        let metrics = self.metrics();
        let mut reports = raft.metrics();
        let (target, mut last_seen) = {
            let m = reports.borrow_and_update();
            (m.last_applied.map(|l| l.index), m.snapshot)
        };
        let builds_before = metrics.snapshot.builds();
        let stopped = |e: &dyn std::fmt::Display| CoreError::RaftStopped(e.to_string());
        let trigger = || async { raft.trigger().snapshot().await.map_err(|e| stopped(&e)) };
        trigger().await?;
        loop {
            let snapshot = reports.borrow_and_update().snapshot;
            let index = snapshot.map(|s| s.index);
            if index >= target && metrics.snapshot.builds() > builds_before {
                let (build, bytes) = metrics.snapshot.last_build();
                return Ok(SnapshotReport {
                    node_id: self.id(),
                    applied_index: target,
                    snapshot_index: index,
                    build_ms: build.as_secs_f64() * 1000.0,
                    bytes,
                    elapsed_ms: start.elapsed().as_millis() as u64,
                });
            }
            if snapshot != last_seen {
                // A build (or install) finished short of the target, or was
                // not ours: ask again; a no-op if ours is still running.
                last_seen = snapshot;
                trigger().await?;
            }
            match tokio::time::timeout_at(deadline.into(), reports.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(stopped(&e)),
                Err(_) => {
                    return Err(CoreError::OutcomeUnknown(format!(
                        "no snapshot covering index {target:?} within {} ms (latest covers {index:?}); \
                         the build may still finish",
                        wait.as_millis()
                    )))
                }
            }
        }
    }
}
