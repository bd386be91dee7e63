//! What the node core can fail with; `http::error` maps each kind to a
//! status, so the core knows nothing of HTTP.

use openraft::error::{ClientWriteError, RaftError};

use crate::NodeId;

#[derive(Clone, Debug, thiserror::Error)]
pub enum CoreError {
    /// This node is not the leader; the hint says who is, if known.
    #[error("not the leader; leader is {leader_id:?} at {leader_addr:?}")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// This leader is handing leadership over and refuses writes meanwhile.
    #[error("leadership transfer in progress; retry shortly")]
    Transferring,
    /// The request does not fit the cluster as it is (a step-down to a
    /// non-voter, removing the last voter, ...).
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with what the cluster is doing or holds.
    #[error("{0}")]
    Conflict(String),
    /// Temporarily unable (leadership not confirmed, no follower to hand
    /// over to, shutting down): retry.
    #[error("{0}")]
    Unavailable(String),
    /// The leader's proposal queue is full (no quorum, or far more load
    /// than it can commit): refused at once, nothing was queued; retry
    /// later or on another RM.
    #[error("too many writes pending on this leader ({pending} pending; no quorum?); nothing was done: retry later or on another RM")]
    Overloaded { pending: usize },
    /// Gave up waiting; the operation may still take effect.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The Raft core has stopped.
    #[error("raft stopped: {0}")]
    RaftStopped(String),
    /// A bug: an answer or a state this node should never see.
    #[error("{0}")]
    Internal(String),
}

impl CoreError {
    /// A proposal not committed within `within`.
    pub fn not_committed(within: std::time::Duration) -> Self {
        CoreError::OutcomeUnknown(format!(
            "not committed within {} s (no quorum?); the write may still commit",
            within.as_secs()
        ))
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, crate::Node>>> for CoreError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, crate::Node>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => CoreError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                CoreError::Conflict(c.to_string())
            }
            RaftError::Fatal(f) => CoreError::RaftStopped(f.to_string()),
        }
    }
}
