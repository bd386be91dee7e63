//! The linearizable read barrier, and the startup log it needs.

use openraft::storage::RaftLogStorage;

use super::{Core, CoreError, COMMIT_TIMEOUT};
use crate::{NodeId, TypeConfig};

/// What the log held when this process started.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartupLog {
    pub term: u64,
    pub last_log_index: Option<u64>,
}

impl StartupLog {
    /// Reads the vote's term and the last log index from storage (not from
    /// openraft's metrics, which may not have reported yet right after
    /// `Raft::new`).
    pub async fn read<S: RaftLogStorage<TypeConfig>>(
        log: &mut S,
    ) -> Result<StartupLog, openraft::StorageError<NodeId>> {
        let vote = log.read_vote().await?;
        let state = log.get_log_state().await?;
        Ok(StartupLog {
            term: vote.map(|v| v.leader_id().term).unwrap_or(0),
            last_log_index: state.last_log_id.map(|l| l.index),
        })
    }
}

impl Core {
    /// Returns once this node's applied state reflects every write that
    /// was acknowledged before the call began (a read index, confirmed with
    /// a quorum); fails with `NotLeader` elsewhere.
    ///
    /// openraft's `ensure_linearizable` is not enough on its own after a
    /// restart. A leader whose vote survived the restart is restored as
    /// leader of the same term without an election and without a new noop
    /// entry. Its read index is then `max(first entry of its term, persisted
    /// committed)`, and the persisted committed id lags (it is not synced).
    /// So a read could miss writes that were committed and acknowledged
    /// just before the crash. A restored leader (same term as at startup)
    /// therefore also waits until it has applied everything its log held at
    /// startup. It will commit those entries, because a leader never
    /// truncates its own log.
    pub async fn linearizable_barrier(&self) -> Result<(), CoreError> {
        use openraft::error::{CheckIsLeaderError, RaftError};
        let raft = self.raft();
        raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => CoreError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            other => CoreError::Unavailable(format!("cannot confirm leadership: {other}")),
        })?;
        let term = raft.metrics().borrow().current_term;
        let startup = self.inner.startup_log;
        if let (true, Some(floor)) = (term == startup.term, startup.last_log_index) {
            raft.wait(Some(COMMIT_TIMEOUT))
                .applied_index_at_least(Some(floor), "restored leader catches up")
                .await
                .map_err(|e| {
                    CoreError::Unavailable(format!(
                        "restored leader has not applied its log yet: {e}"
                    ))
                })?;
        }
        Ok(())
    }
}
