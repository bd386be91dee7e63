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
    /// The query's resource group: the RMs charge the task's memory and
    /// CPU to it.
    #[serde(default)]
    pub resource_group: String,
    pub work: TaskWork,
}

/// What a task does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskWork {
    /// Holds `memory_bytes` for `duration_ms`, using `cpu_ms` of CPU time
    /// evenly meanwhile: deterministic load for the harness.
    Simulated {
        duration_ms: u64,
        memory_bytes: u64,
        #[serde(default)]
        cpu_ms: u64,
    },
    /// Runs a query in a process of its own; its memory and CPU are what
    /// that process uses.
    Sql(SqlWork),
}

impl TaskWork {
    /// Memory reserved up front (a query's is measured as it runs).
    pub fn declared_memory_bytes(&self) -> u64 {
        match self {
            TaskWork::Simulated { memory_bytes, .. } => *memory_bytes,
            TaskWork::Sql(_) => 0,
        }
    }
}

/// A statement as the client sent it, with the client's path: the worker
/// analyzes it as the coordinator did (see `trino-sql`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlWork {
    pub sql: String,
    #[serde(default)]
    pub catalog: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    /// `system` tables whose rows only the coordinator knows
    /// (`runtime.queries`, `runtime.nodes`), when the query reads them.
    #[serde(default)]
    pub system_tables: Vec<InlineTable>,
}

/// A small table sent with the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineTable {
    pub schema: String,
    pub table: String,
    pub columns: Vec<InlineColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineColumn {
    pub name: String,
    pub values: ColumnValues,
}

/// A column's values, one per row, by Trino type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "values", rename_all = "snake_case")]
pub enum ColumnValues {
    Varchar(Vec<Option<String>>),
    Bigint(Vec<Option<i64>>),
    Boolean(Vec<Option<bool>>),
    /// `timestamp(3)`: milliseconds since the epoch, UTC.
    Timestamp(Vec<Option<i64>>),
    VarcharArray(Vec<Option<Vec<String>>>),
}

impl ColumnValues {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Varchar(v) => v.len(),
            ColumnValues::Bigint(v) => v.len(),
            ColumnValues::Boolean(v) => v.len(),
            ColumnValues::Timestamp(v) => v.len(),
            ColumnValues::VarcharArray(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `GET /v1/tasks/{id}/results/{page}`: a finished query task's result,
/// page by page (the first is page 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultPage {
    pub columns: Vec<crate::api::trino::Column>,
    /// Rows in Trino's JSON encoding of each column's type.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// The page that follows, if any.
    pub next_page: Option<u32>,
}

/// Where in the statement an error is (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorLocation {
    pub line_number: u32,
    pub column_number: u32,
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
    /// The query failed on its own (a user error, a crash of its process).
    Failed,
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
    /// Failed: where in the statement (a syntax error).
    #[serde(default)]
    pub error_location: Option<ErrorLocation>,
    /// Most memory the task held at once: its declaration, or for a
    /// query the most its process was measured to hold.
    #[serde(default)]
    pub peak_memory_bytes: u64,
    /// CPU time used so far (a query's process: measured).
    #[serde(default)]
    pub cpu_ms: u64,
    /// A query stopped early: how long its process took to be gone (and
    /// its memory free) after the stop.
    #[serde(default)]
    pub exit_after_stop_ms: Option<u64>,
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

/// The type of an [`InlineTable`]'s column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InlineType {
    Varchar,
    Bigint,
    Boolean,
    Timestamp,
    VarcharArray,
}

impl InlineType {
    pub fn trino(self) -> crate::api::trino::TrinoType {
        use crate::api::trino::TrinoType;
        match self {
            InlineType::Varchar => TrinoType::Varchar(None),
            InlineType::Bigint => TrinoType::Bigint,
            InlineType::Boolean => TrinoType::Boolean,
            InlineType::Timestamp => TrinoType::Timestamp(3),
            InlineType::VarcharArray => TrinoType::Array(Box::new(TrinoType::Varchar(None))),
        }
    }
}

impl ColumnValues {
    pub fn kind(&self) -> InlineType {
        match self {
            ColumnValues::Varchar(_) => InlineType::Varchar,
            ColumnValues::Bigint(_) => InlineType::Bigint,
            ColumnValues::Boolean(_) => InlineType::Boolean,
            ColumnValues::Timestamp(_) => InlineType::Timestamp,
            ColumnValues::VarcharArray(_) => InlineType::VarcharArray,
        }
    }
}

/// `system.runtime.nodes`, as Trino has it: every live node.
pub const RUNTIME_NODES: &[(&str, InlineType)] = &[
    ("node_id", InlineType::Varchar),
    ("http_uri", InlineType::Varchar),
    ("node_version", InlineType::Varchar),
    ("coordinator", InlineType::Boolean),
    ("state", InlineType::Varchar),
];

/// `system.runtime.queries`: Trino's columns (times in UTC), and the
/// coordinator that runs each query.
pub const RUNTIME_QUERIES: &[(&str, InlineType)] = &[
    ("query_id", InlineType::Varchar),
    ("state", InlineType::Varchar),
    ("user", InlineType::Varchar),
    ("source", InlineType::Varchar),
    ("query", InlineType::Varchar),
    ("resource_group_id", InlineType::VarcharArray),
    ("queued_time_ms", InlineType::Bigint),
    ("created", InlineType::Timestamp),
    ("started", InlineType::Timestamp),
    ("end", InlineType::Timestamp),
    ("error_type", InlineType::Varchar),
    ("error_code", InlineType::Varchar),
    ("coordinator", InlineType::Varchar),
];

/// The `system.runtime` tables and their columns.
pub const RUNTIME_TABLES: &[(&str, &[(&str, InlineType)])] =
    &[("nodes", RUNTIME_NODES), ("queries", RUNTIME_QUERIES)];
