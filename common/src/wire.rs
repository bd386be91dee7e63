//! Messages between processes that more than one crate reads: what workers
//! and coordinators send the RMs, and what the RMs' watch answers. (Each
//! endpoint's request-only shapes stay with its handler.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/announce`: "I am here" (discovery), valid for `ttl_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    pub node_id: String,
    /// `worker` or `coordinator`.
    pub role: String,
    /// Where the node serves its API, HOST:PORT.
    pub addr: String,
    pub ttl_ms: u64,
}

/// A worker's memory pool, as it reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPool {
    pub total_bytes: u64,
    pub reserved_bytes: u64,
    /// Tasks waiting for memory: the node counts as blocked (as in Presto).
    pub blocked_tasks: u32,
    /// query id -> bytes reserved for it on this worker.
    pub queries: BTreeMap<String, u64>,
}

impl MemoryPool {
    /// Blocked as in Presto's cluster memory manager: no memory free and
    /// tasks waiting for some. (A task that waits while memory is free
    /// only waits for a larger share; the pool is not out of memory.)
    pub fn is_blocked(&self) -> bool {
        self.blocked_tasks > 0 && self.reserved_bytes >= self.total_bytes
    }
}

/// A memory kill the RMs decided, for the workers that hold the query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillOrder {
    pub query_id: String,
    /// Trino's error name for the failure.
    pub error_name: String,
    pub message: String,
    /// Log index of the decision.
    pub decision: u64,
}

/// The RM's answer to a heartbeat: the kills it knows of that are not
/// settled yet. A worker stops its tasks for them, whether or not the
/// query's coordinator is alive to do it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    pub kills: Vec<KillOrder>,
}

/// `POST /v1/heartbeat/worker`: a worker's state, kept for `ttl_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerHeartbeat {
    pub node_id: String,
    pub memory: MemoryPool,
    /// The worker process's CPU use over the last interval, in cores.
    pub cpu_cores: f64,
    pub running_tasks: u32,
    pub ttl_ms: u64,
    /// query id -> its resource group and the CPU time its tasks here have
    /// used (their memory is in `memory.queries`).
    #[serde(default)]
    pub queries: BTreeMap<String, QueryResources>,
}

/// One query's use of a worker, beyond memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResources {
    pub group: String,
    pub cpu_ms: u64,
}

/// One admission event from `GET /v1/watch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// Log index of the entry that caused it.
    pub index: u64,
    pub query_id: String,
    pub group: String,
    pub coordinator: String,
    pub session: u64,
    pub kind: WatchEventKind,
    pub fencing_token: Option<u64>,
    pub reason: Option<String>,
    /// `killed`: Trino's error name (`CLUSTER_OUT_OF_MEMORY`, ...).
    #[serde(default)]
    pub error_name: Option<String>,
}

/// What happened to a query's admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchEventKind {
    /// Admitted from the queue (the event carries the fencing token).
    Promoted,
    /// Its session expired: the admission (and its fencing token) is void.
    Revoked,
    /// It left the queue without running (queue timeout, group removed).
    Failed,
    /// Killed for memory (the event carries Trino's error name).
    Killed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchAnswer {
    pub events: Vec<WatchEvent>,
    /// Where to continue: pass it as `after` next time.
    pub next_after: u64,
    /// Events after `after` were already dropped: resynchronise.
    pub truncated: bool,
    /// The answering replica's staleness when it answered (its clock minus
    /// the leader time of its last applied entry): how current "no event"
    /// is. `None` from an RM that does not say (or has applied no stamped
    /// entry yet): a fencing worker does not count such an answer as fresh.
    #[serde(default)]
    pub staleness_ms: Option<u64>,
    /// The leader the answering replica knows of, if any.
    #[serde(default)]
    pub leader_id: Option<crate::NodeId>,
}
