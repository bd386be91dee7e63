//! Discovery and the cluster memory view: what each RM knows (soft state,
//! not replicated) of the live nodes and their memory pools, and the
//! low-memory killer's decisions (replicated).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::wire::{Announcement, WorkerHeartbeat};

/// One live node in `GET /v1/discovery/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub announcement: Announcement,
    pub last_seen_ms: u64,
    pub expires_in_ms: u64,
}

/// One worker's latest heartbeat in [`ClusterMemory`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerMemory {
    /// How long ago this RM received the heartbeat.
    pub age_ms: u64,
    /// Shared with the RM's soft state: its memory killer reads the whole
    /// view ten times a second, and a copy of every worker's pool each
    /// time cost more than the heartbeats themselves at 10,000 workers.
    #[serde(
        serialize_with = "shared::serialize",
        deserialize_with = "shared::deserialize"
    )]
    pub heartbeat: Arc<WorkerHeartbeat>,
}

/// serde for an `Arc<T>` as the `T` it holds (serde's own needs its `rc`
/// feature, which would let every `Arc` be serialized by value).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        T::serialize(v, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

/// The cluster memory view: live workers' pools, summed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterMemory {
    pub workers: usize,
    pub total_bytes: u64,
    pub reserved_bytes: u64,
    pub free_bytes: u64,
    /// Workers whose pool is blocked: full, with tasks waiting.
    pub blocked_workers: usize,
    /// query id -> bytes reserved across the cluster.
    pub queries: BTreeMap<String, u64>,
    pub nodes: Vec<WorkerMemory>,
}

/// `GET /v1/memory`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryView {
    #[serde(flatten)]
    pub pool: ClusterMemory,
    /// Some worker's pool is blocked (full, with tasks waiting).
    pub out_of_memory: bool,
    /// This RM's view of the current episode (each RM keeps its own).
    pub episode: Option<EpisodeView>,
    pub killer: KillerView,
    /// Low-memory episodes that ended in a kill (replicated).
    pub episodes_with_kills: u64,
    /// The newest kills first.
    pub kills: Vec<KillView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpisodeView {
    pub since_ms: u64,
    pub out_of_memory_ms: u64,
    /// How long until the killer may act, if nothing changes (0: due, or
    /// waiting for the previous kill to settle).
    pub kill_in_ms: u64,
    /// The low-memory kill of this episode, until it settles.
    pub unsettled_kill: Option<KillView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillerView {
    pub policy: String,
    pub delay_ms: u64,
    pub leak_timeout_ms: u64,
    pub query_max_memory: Option<u64>,
    pub query_max_memory_per_node: Option<u64>,
}

/// Whether a kill's memory came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillSettlement {
    /// Decided; the query's memory is still held.
    Unsettled,
    Freed,
    /// The memory was still held past the leak timeout.
    Leaked,
}

/// One memory kill (low-memory or a per-query limit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillView {
    /// Log index of the decision.
    pub decision: u64,
    /// 0 for limit kills.
    pub episode: u64,
    pub query_id: String,
    pub error_name: String,
    pub message: String,
    /// The policy, or the limit exceeded.
    pub reason: String,
    pub decided_ms: u64,
    pub figures: KillFigures,
    pub outcome: KillSettlement,
    pub settled_ms: Option<u64>,
}

/// The figures a kill was decided on, kept so an operator can check it.
/// The wire's own copy of the state machine's figures: the machine cannot
/// depend on this crate, and its state may change shape without changing
/// the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillFigures {
    pub workers: u32,
    pub cluster_total_bytes: u64,
    pub cluster_reserved_bytes: u64,
    /// Workers whose pool was blocked (full, with tasks waiting).
    pub blocked_nodes: Vec<String>,
    /// The query's reservation as the policy counted it.
    pub query_bytes: u64,
    /// The query's reservation over the whole cluster.
    pub query_total_bytes: u64,
    /// How long the cluster had been out of memory (0 for limit kills).
    pub out_of_memory_ms: u64,
}
