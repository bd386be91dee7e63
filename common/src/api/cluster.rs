//! What an RM says of itself, of its group, and of the resource groups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A node's part in the Raft group, as `GET /v1/health` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Candidate,
    /// A voter that follows.
    Follower,
    /// A non-voting member (catching up, or kept as a read replica).
    Learner,
    Shutdown,
}

impl Role {
    /// The wire name (`leader`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Candidate => "candidate",
            Role::Follower => "follower",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub node_id: NodeId,
    pub role: Role,
    pub leader_id: Option<NodeId>,
    pub leader_addr: Option<String>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// Now (this node's clock) minus the leader time of the last applied
    /// entry; the leader stamps its time into the log every tick. `None`
    /// before the first stamped entry is applied.
    pub staleness_ms: Option<u64>,
    /// False until this node has a vote or a log entry: only an
    /// uninitialized node may bootstrap a cluster.
    pub initialized: bool,
    /// The incarnation of this node's data dir (random, fixed when the dir
    /// was created): what the leader records when it adds the node. 0 from
    /// a version without incarnations.
    #[serde(default)]
    pub incarnation: u64,
    /// Leaders this node has seen take over since it started.
    #[serde(default)]
    pub leader_changes: u64,
}

/// `GET /v1/health/leader` (200 on the leader, 503 elsewhere), and the body
/// of a "not the leader" refusal: where the leader is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    #[serde(default)]
    pub node_id: Option<NodeId>,
    pub leader_id: Option<NodeId>,
    pub leader_addr: Option<String>,
    #[serde(default)]
    pub term: Option<u64>,
}

/// One member of the Raft group in [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
    /// Highest log index known replicated to it (leader only).
    pub matched: Option<u64>,
    /// The incarnation the membership records for it; 0: not recorded.
    #[serde(default)]
    pub incarnation: u64,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub cluster_id: Option<String>,
    pub served_by: NodeId,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub members: Vec<Member>,
    /// This node's applied index, its snapshot and a digest of its state:
    /// replicas at the same `last_applied` must show the same digest.
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub state_digest: String,
}

/// How a group admits: through the log, or by coordinators from a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Linearizable,
    Eventual,
}

/// One group in [`View`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub id: String,
    pub mode: Mode,
    /// Eventual groups: how stale a view a coordinator may decide on.
    pub max_staleness_ms: Option<u64>,
    pub running: u32,
    pub queued: u32,
    pub hard_concurrency_limit: u32,
    pub max_queued: u32,
    /// Gone from the configuration; kept until its queries end.
    pub draining: bool,
    /// Memory of its running queries (descendants' too), as last stamped.
    #[serde(default)]
    pub memory_bytes: u64,
    /// CPU time charged to it and not yet regenerated (see
    /// `resource_groups::limits`), as last stamped.
    #[serde(default)]
    pub cpu_ms: u64,
}

/// `GET /v1/resource-groups?max_staleness_ms=N`: the groups' counts, as of
/// the replica's applied state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub served_by: NodeId,
    /// Leader time of the last applied entry.
    pub as_of_ms: u64,
    pub staleness_ms: u64,
    pub last_applied: Option<u64>,
    pub config_version: Option<u64>,
    pub groups: Vec<GroupView>,
    /// The eventual-mode usage report of each coordinator that the counts
    /// include, by its sequence number: a coordinator subtracts exactly
    /// that report of its own, not its newest (which a lagging replica may
    /// not have applied yet).
    #[serde(default)]
    pub reports: BTreeMap<String, u64>,
    /// For each report in `reports`, how old it is (ms): the serving
    /// replica's clock minus the log time at which the report was applied.
    /// It includes the replica's own staleness, and grows on every replica
    /// when a coordinator stops reporting (its session still alive), so a
    /// coordinator can discount usage that is too old to trust.
    #[serde(default)]
    pub report_ages_ms: BTreeMap<String, u64>,
    /// The live workers' memory, summed, as last stamped: a
    /// `softMemoryLimit` in percent is of this.
    #[serde(default)]
    pub cluster_memory_bytes: u64,
}

impl GroupView {
    /// Its memory and CPU, as admission's rules read them.
    pub fn usage(&self) -> crate::resource_groups::ResourceUsage {
        crate::resource_groups::ResourceUsage {
            memory_bytes: self.memory_bytes,
            cpu_ms: self.cpu_ms,
        }
    }
}

impl View {
    pub fn group(&self, id: &str) -> Option<&GroupView> {
        self.groups.iter().find(|g| g.id == id)
    }
}
