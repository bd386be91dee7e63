//! Early replication: a leader sends its new entries to the followers while
//! its own fsync of them runs, instead of after it.
//!
//! openraft 0.9 runs the leader's log append inside its core task and waits
//! for the append's flush before it runs the replication commands queued
//! behind it. So a lone write pays two fsyncs in a row: the leader's, then
//! a follower's. Raft does not need that order (etcd's raft writes the
//! leader's log in parallel with sending it): a follower may persist an
//! entry before its leader has, and the leader still counts itself towards
//! the quorum only once its own append is durable, which openraft keeps
//! doing.
//!
//! So when the leader's log store appends entries of its own term, it also
//! hands them here, and each follower gets them at once in an ordinary
//! AppendEntries request from this leader. The follower persists them
//! (openraft answers only after its fsync) and our answer is dropped. Then
//! openraft's own replication, sent after the leader's fsync, finds them
//! already there: the follower answers without a second append, as soon as
//! the first one's fsync ends. The commit waits for the slower of the two
//! fsyncs, not their sum.
//!
//! What keeps this safe:
//! - The request is one openraft would send: this leader's committed vote,
//!   the entry before the batch as `prev_log_id`, entries of this term only,
//!   and a `leader_commit` no newer than what this node has applied (so
//!   never ahead of the commit). A follower with another log answers with
//!   a conflict, exactly as it would to openraft's request.
//! - Nothing is counted from the answers: commits still come only from
//!   openraft's replication, after the leader's own append is durable.
//! - At most one early request is in flight per follower: under load the
//!   entries are batched anyway, and a follower that is behind gets them
//!   from openraft's replication, so the extra traffic stays bounded.
//! - Only a quorum's worth of followers gets them early (one of two in a
//!   three-node group), the most caught up: that is all a commit waits
//!   for, and it halves the extra requests.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::{Entry, LogId, RaftMetrics, RaftNetwork, ServerState, Vote};
use tokio::sync::watch;

use super::{NetworkFactory, PeerClient};
use crate::metrics::Metrics;
use crate::{Node, NodeId, TypeConfig};

/// How long an early request may take; a follower slower than this gets
/// the entries from openraft's replication (which has its own deadline).
const EARLY_TIMEOUT: Duration = Duration::from_millis(500);

/// The leader's early sender, shared by the log store and the node.
#[derive(Clone)]
pub struct EarlyReplication {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    network: NetworkFactory,
    /// openraft's metrics: the vote, role, membership and applied id this
    /// node is at. Set once Raft has started ([`EarlyReplication::attach`]).
    metrics: OnceLock<watch::Receiver<RaftMetrics<NodeId, Node>>>,
    /// Followers with an early request in flight.
    in_flight: Mutex<HashSet<NodeId>>,
    metrics_out: Arc<Metrics>,
}

impl EarlyReplication {
    pub fn new(id: NodeId, network: NetworkFactory, metrics_out: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                network,
                metrics: OnceLock::new(),
                in_flight: Mutex::new(HashSet::new()),
                metrics_out,
            }),
        }
    }

    /// Starts sending: before this, offers are ignored.
    pub fn attach(&self, metrics: watch::Receiver<RaftMetrics<NodeId, Node>>) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// Called by the log store with a batch it has just written (not yet
    /// synced) and the id of the entry before it. Sends the batch to the
    /// most caught-up followers a quorum needs, each unless an early
    /// request to it is in flight, if this node is the leader whose term
    /// the entries carry; otherwise does nothing.
    pub fn offer(&self, prev_log_id: Option<LogId<NodeId>>, entries: &[Entry<TypeConfig>]) {
        let Some(request) = self.request(prev_log_id, entries) else {
            return;
        };
        for (target, node) in request.targets {
            {
                let mut in_flight = self
                    .inner
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if !in_flight.insert(target) {
                    continue;
                }
            }
            self.inner.metrics_out.early_append_sent();
            let mut client = PeerClient {
                target,
                node,
                factory: self.inner.network.clone(),
            };
            let (rpc, inner) = (request.rpc.clone(), self.inner.clone());
            tokio::spawn(async move {
                let option = RPCOption::new(EARLY_TIMEOUT);
                // The answer is not used: openraft's own request learns
                // the same, and only it may count towards a commit.
                if let Err(e) = client.append_entries(rpc, option).await {
                    tracing::trace!(target_node = target, error = %e, "early append failed");
                }
                inner
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&target);
            });
        }
    }

    fn request(
        &self,
        prev_log_id: Option<LogId<NodeId>>,
        entries: &[Entry<TypeConfig>],
    ) -> Option<EarlyRequest> {
        let first = entries.first()?;
        let metrics = self.inner.metrics.get()?.borrow();
        // Only the leader whose term the entries carry sends them.
        let vote = metrics.vote;
        let leads = metrics.state == ServerState::Leader
            && vote.is_committed()
            && vote.leader_id().voted_for() == Some(self.inner.id)
            && entries
                .iter()
                .all(|e| e.log_id.leader_id == *vote.leader_id());
        if !leads || prev_log_id.map(|p| p.index + 1).unwrap_or(0) != first.log_id.index {
            return None;
        }
        let membership = metrics.membership_config.membership();
        let voters = membership.voter_ids().count();
        let mut followers: Vec<(Option<LogId<NodeId>>, NodeId)> = membership
            .voter_ids()
            .filter(|id| *id != self.inner.id)
            .map(|id| {
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).copied().flatten());
                (matched, id)
            })
            .collect();
        // Only as many followers as a quorum needs besides the leader
        // (one of two, two of four), the most caught up first: the others
        // get the entries from openraft's replication, and each early
        // request is work for both ends.
        followers.sort_by(|a, b| b.cmp(a));
        followers.truncate(voters / 2);
        let targets: Vec<(NodeId, Node)> = followers
            .into_iter()
            .filter_map(|(_, id)| membership.get_node(&id).map(|n| (id, n.clone())))
            .collect();
        if targets.is_empty() {
            return None;
        }
        let rpc = AppendEntriesRequest {
            // The vote checked above, whose term the entries carry.
            vote: Vote::new_committed(first.log_id.leader_id.term, self.inner.id),
            prev_log_id,
            entries: entries.to_vec(),
            // Never ahead of the commit: what this node has applied.
            leader_commit: metrics.last_applied,
        };
        Some(EarlyRequest { rpc, targets })
    }
}

struct EarlyRequest {
    rpc: AppendEntriesRequest<TypeConfig>,
    targets: Vec<(NodeId, Node)>,
}
