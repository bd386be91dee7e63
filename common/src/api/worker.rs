//! A worker's API: the tasks a coordinator starts on it, and what it says
//! of itself.

use serde::{Deserialize, Serialize};

use crate::wire::MemoryPool;

/// `POST /v1/tasks`: start a task (idempotent per `task_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub task_id: String,
    pub query_id: String,
    /// The admission's fencing token; tasks under a revoked token stop.
    pub fencing_token: u64,
    pub duration_ms: u64,
    pub memory_bytes: u64,
    /// CPU time the task uses, evenly over its duration.
    #[serde(default)]
    pub cpu_ms: u64,
    /// The query's resource group: the RMs charge the task's memory and
    /// CPU to it.
    #[serde(default)]
    pub resource_group: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for memory.
    Blocked,
    Running,
    Finished,
    Cancelled,
    Killed,
    Revoked,
}

impl TaskState {
    pub fn is_done(self) -> bool {
        !matches!(self, TaskState::Blocked | TaskState::Running)
    }
}

/// A task as `GET /v1/tasks/{id}` (and every task route) answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    #[serde(flatten)]
    pub spec: TaskSpec,
    pub state: TaskState,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub reason: Option<String>,
    /// Killed: Trino's error name for the query's failure
    /// (`CLUSTER_OUT_OF_MEMORY`, `EXCEEDED_LOCAL_MEMORY_LIMIT`, ...).
    pub error_name: Option<String>,
}

/// `POST /v1/tasks/{id}/kill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillTask {
    pub reason: String,
    /// Trino's error name for the query's failure.
    #[serde(default)]
    pub error_name: Option<String>,
}

/// A worker's `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub node_id: String,
    /// Always false once the server answers (Trino's field: clients wait on it).
    pub starting: bool,
    pub memory: MemoryPool,
    pub running_tasks: u32,
}
