//! The node core: what a node does, apart from how it is asked.
//!
//! [`Core`] owns the Raft handle, the applied state, the log clock, the
//! group-commit proposer, the read barrier and the startup log it needs,
//! the ticker and leadership transfer. Every operation returns a
//! [`CoreError`]; the HTTP layer ([`crate::http`]) extracts requests, calls
//! the core and maps its errors to statuses, and the killer
//! ([`crate::killer`]) proposes through it.
//!
//! - [`propose`]: proposing a command and waiting until it is applied.
//! - [`proposer`]: group commit, concurrent commands sharing one entry.
//! - [`read`]: the linearizable read barrier and the startup log.
//! - [`ticker`]: the leader's log-time ticks and initial configuration.
//! - [`transfer`]: leadership hand-over (step-down) under a guard.
//! - [`snapshot`]: building a snapshot now, on request.
//! - [`error`]: the core's errors, [`CoreError`].

pub mod error;
pub mod propose;
pub mod proposer;
pub mod read;
pub mod snapshot;
pub mod ticker;
pub mod transfer;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::clock::SharedClock;
use common::http::HttpClient;
use openraft::ChangeMembers;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{AdmissionConfig, Timings};
use crate::log_clock::LogClock;
use crate::metrics::Metrics;
use crate::store::state_machine::AppliedReader;
use crate::{Node, NodeId, Raft};
pub use error::CoreError;
pub use read::StartupLog;

/// How long a proposal may wait to be committed before the caller is told
/// the outcome is unknown (it may still commit later).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest encoded command, and so (with the group-commit cap) largest log
/// entry: keeps every entry far below sled's unsynced-blob threshold (see
/// `store::durable`).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// What the core is built from.
pub struct CoreParts {
    pub id: NodeId,
    pub raft: Raft,
    pub applied: AppliedReader,
    pub clock: SharedClock,
    pub timings: Timings,
    pub metrics: Arc<Metrics>,
    /// For node-to-node calls of its own (asking a follower to campaign).
    pub http: HttpClient,
    pub startup_log: StartupLog,
    /// What this node proposes for admission (the log holds what is in force).
    pub admission: Arc<AdmissionConfig>,
}

/// The running node's logic; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    applied: AppliedReader,
    clock: SharedClock,
    timings: Timings,
    metrics: Arc<Metrics>,
    http: HttpClient,
    startup_log: StartupLog,
    admission: Arc<AdmissionConfig>,
    /// Stamps log time for this node's proposals.
    log_clock: LogClock,
    /// The group-commit queue of batchable proposals.
    proposals: proposer::Proposals,
    /// Set while this leader hands leadership over: new writes (and ticks)
    /// are refused so they cannot renew the followers' leader lease.
    transferring: AtomicBool,
}

impl Core {
    /// Builds the core and starts its tasks (the group-commit proposer and
    /// the ticker), which run until `stop`.
    pub fn start(parts: CoreParts, stop: watch::Receiver<bool>) -> (Core, Vec<JoinHandle<()>>) {
        let (proposals, queue) = proposer::Proposals::new();
        let core = Core {
            inner: Arc::new(Inner {
                id: parts.id,
                raft: parts.raft,
                applied: parts.applied,
                clock: parts.clock,
                timings: parts.timings,
                metrics: parts.metrics,
                http: parts.http,
                startup_log: parts.startup_log,
                admission: parts.admission,
                log_clock: LogClock::default(),
                proposals,
                transferring: AtomicBool::new(false),
            }),
        };
        let tasks = vec![
            tokio::spawn(proposer::run(core.clone(), queue, stop.clone())),
            tokio::spawn(ticker::run(core.clone(), stop)),
        ];
        (core, tasks)
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The state machine as applied on this node.
    pub fn applied(&self) -> &AppliedReader {
        &self.inner.applied
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    pub fn timings(&self) -> &Timings {
        &self.inner.timings
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// What this node proposes for admission.
    pub fn admission(&self) -> &AdmissionConfig {
        &self.inner.admission
    }

    /// True while a leadership transfer runs on this node.
    pub fn transferring(&self) -> bool {
        self.inner.transferring.load(Ordering::Acquire)
    }

    /// This node leads and is not handing leadership over: what the ticker
    /// and the killer check before proposing.
    pub fn may_propose(&self) -> bool {
        self.is_leader() && !self.transferring()
    }

    fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.inner.id)
    }

    /// The leader's id and address as this node knows them.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }

    /// `Ok` on the leader; otherwise `NotLeader` with the leader this node
    /// knows of.
    pub fn require_leader(&self) -> Result<(), CoreError> {
        let leader = self.inner.raft.metrics().borrow().current_leader;
        if leader == Some(self.inner.id) {
            return Ok(());
        }
        Err(CoreError::NotLeader {
            leader_id: leader,
            leader_addr: self.leader().map(|(_, a)| a),
        })
    }

    /// The membership this node currently knows.
    pub fn membership(&self) -> openraft::Membership<NodeId, Node> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    /// The address of member `id`, if it is one.
    pub fn address_of(&self, id: NodeId) -> Option<String> {
        self.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// Adds `id` (its address and incarnation) as a learner and waits until
    /// it has caught up; answers the log index of the change.
    pub async fn add_learner(&self, id: NodeId, node: Node) -> Result<u64, CoreError> {
        let written = self.inner.raft.add_learner(id, node, true).await?;
        Ok(written.log_id.index)
    }

    /// Adds voters or removes members; answers the log index of the change.
    pub async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, Node>,
    ) -> Result<u64, CoreError> {
        let written = self.inner.raft.change_membership(change, false).await?;
        Ok(written.log_id.index)
    }

    /// The voters of the membership this node knows.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.membership().voter_ids().collect()
    }

    /// Asks Raft to start an election on this node now (the old leader's
    /// request during a hand-over).
    pub async fn campaign(&self) -> Result<(), CoreError> {
        self.inner
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| CoreError::RaftStopped(e.to_string()))
    }
}
