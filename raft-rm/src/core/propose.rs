//! Proposing a command on the leader and waiting until it is applied.

use super::{Core, CoreError, COMMIT_TIMEOUT};
use crate::machine::{Command, Response};

impl Core {
    /// Proposes `command` through Raft on this node (which must be the
    /// leader) and waits until it is applied; answers its log index and the
    /// state machine's answer. Batchable commands share an entry with
    /// whatever else is being proposed (see [`super::proposer`]).
    pub async fn propose(&self, command: Command) -> Result<(u64, Response), CoreError> {
        if self.transferring() {
            return Err(CoreError::Transferring);
        }
        if command.batchable() {
            let answer = self.inner.proposals.submit(command).await;
            if matches!(answer, Err(CoreError::Overloaded { .. })) {
                self.inner.metrics.proposal_refused();
            }
            return answer;
        }
        self.propose_entry(command).await
    }

    /// Proposes `command` as one log entry of its own, now.
    pub(super) async fn propose_entry(
        &self,
        command: Command,
    ) -> Result<(u64, Response), CoreError> {
        let inner = &self.inner;
        let request = crate::machine::Request {
            leader_time_ms: inner.log_clock.stamp(
                inner.raft.metrics().borrow().current_term,
                inner.applied.read().state.log_time_ms,
                inner.clock.now_ms(),
            ),
            command,
        };
        let start = std::time::Instant::now();
        let written = tokio::time::timeout(COMMIT_TIMEOUT, inner.raft.client_write(request))
            .await
            .map_err(|_| CoreError::not_committed(COMMIT_TIMEOUT))??;
        inner.metrics.observe_commit(start.elapsed());
        Ok((written.log_id.index, written.data))
    }
}
