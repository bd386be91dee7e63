//! The web UI's data: what each coordinator serves under `/ui/api/` (the
//! pages' JSON, also for scripts), and what coordinators tell each other
//! about their own queries through the RMs' relay (`GET
//! /v1/coordinators/{name}/queries[/{id}]` on an RM, which asks that
//! coordinator's internal `/ui/api/local/queries[/{id}]`).

use serde::{Deserialize, Serialize};

use crate::api::{ClusterView, Health, KillView, LedgerStatus, Mode};

/// A query's state as Trino's protocol names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueryState {
    Queued,
    Running,
    /// Its work is done; its resource-group slot is being released. Not
    /// RUNNING: the RMs may give the slot to another query meanwhile.
    Finishing,
    Finished,
    Failed,
}

/// One query as the coordinator that runs it knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerySummary {
    pub query_id: String,
    pub coordinator: String,
    pub state: QueryState,
    /// The selected group (none before selection, or when nothing matched).
    pub group: Option<String>,
    pub mode: Option<Mode>,
    pub user: String,
    pub source: Option<String>,
    /// Wall clock, ms since the epoch.
    pub created_ms: u64,
    pub queued_ms: u64,
    pub elapsed_ms: u64,
    pub worker: Option<String>,
    pub peak_memory_bytes: u64,
    pub cpu_ms: u64,
    pub error_name: Option<String>,
    /// The statement's first [`SQL_HEAD_CHARS`] characters.
    pub sql_head: String,
}

/// How much of a statement a query list shows.
pub const SQL_HEAD_CHARS: usize = 160;

/// One step of a query's life, at a wall-clock time (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineStep {
    /// `queued`, `admitted`, `finishing`, `finished` or `failed`.
    pub step: String,
    pub at_ms: u64,
}

/// A query's error, as its client got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryFailure {
    pub error_name: String,
    pub error_type: String,
    pub message: String,
}

/// One query, in full, from the coordinator that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryDetail {
    pub summary: QuerySummary,
    pub sql: String,
    /// Linearizable groups: the admission's fencing token.
    pub fencing_token: Option<u64>,
    pub timeline: Vec<TimelineStep>,
    pub error: Option<QueryFailure>,
}

/// One group's admission decisions made by one coordinator in the last
/// minute (eventual groups are decided there; linearizable ones are the
/// RMs' answers it received).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDecisions {
    pub group: String,
    pub admitted: u64,
    pub rejected: u64,
}

/// `GET /ui/api/local/queries` on a coordinator (internal): its queries,
/// newest first, and its recent decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorQueries {
    pub coordinator: String,
    pub queries: Vec<QuerySummary>,
    /// How many it holds beyond those listed (the list is capped).
    pub omitted: usize,
    pub decisions_last_minute: Vec<GroupDecisions>,
}

/// Most queries one coordinator lists to the UI.
pub const MAX_LISTED_QUERIES: usize = 500;

/// One coordinator as an RM knows it, in `GET /v1/coordinators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorView {
    pub name: String,
    /// Where it serves, from its announcement (none: not announced lately).
    pub addr: Option<String>,
    /// How long ago this RM received its announcement.
    pub announced_ms_ago: Option<u64>,
    /// Its live sessions (one, or none while it registers again).
    pub sessions: Vec<u64>,
    /// Its linearizable queries in the ledger.
    pub ledger_queued: u32,
    pub ledger_running: u32,
}

/// `GET /v1/coordinators` on an RM: every coordinator with a live session
/// or a live announcement, from this replica's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorsView {
    pub served_by: crate::NodeId,
    pub staleness_ms: u64,
    pub coordinators: Vec<CoordinatorView>,
}

/// One RM replica on the cluster page: its health, or why it did not
/// answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub addr: String,
    pub health: Option<Health>,
    pub error: Option<String>,
    /// Its staleness passed the tightest eventual group's bound (replicas
    /// that far behind cannot serve those groups' views).
    pub past_bound: bool,
}

/// One worker on the cluster page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub node_id: String,
    pub addr: Option<String>,
    pub total_bytes: u64,
    pub reserved_bytes: u64,
    pub blocked: bool,
    pub blocked_tasks: u32,
    pub running_tasks: u32,
    pub cpu_cores: f64,
    pub heartbeat_age_ms: u64,
}

/// One coordinator on the cluster page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorStatus {
    #[serde(flatten)]
    pub view: CoordinatorView,
    /// The coordinator serving this page.
    pub this: bool,
    /// Queries it holds by state (none: it did not answer).
    pub queued: Option<u32>,
    pub running: Option<u32>,
    pub held: Option<u32>,
    pub error: Option<String>,
}

/// `GET /ui/api/cluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterPage {
    /// The coordinator serving the page.
    pub coordinator: String,
    pub replicas: Vec<ReplicaStatus>,
    /// The group as the leader (else any replica) describes it.
    pub cluster: Option<ClusterView>,
    pub leader_id: Option<crate::NodeId>,
    pub term: Option<u64>,
    /// The tightest eventual group's staleness bound, if any.
    pub staleness_bound_ms: Option<u64>,
    /// The configuration version this coordinator follows, and the one the
    /// RMs have applied.
    pub config_version: Option<u64>,
    pub rm_config_version: Option<u64>,
    pub workers: Vec<WorkerStatus>,
    pub memory_total_bytes: u64,
    pub memory_reserved_bytes: u64,
    pub out_of_memory: bool,
    pub recent_kills: Vec<KillView>,
    pub coordinators: Vec<CoordinatorStatus>,
    /// What an operator must see first: no leader, replicas down or past
    /// the bound, workers blocked.
    pub banners: Vec<String>,
    pub errors: Vec<String>,
}

/// This coordinator's own eventual-mode view of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionView {
    pub running: u32,
    pub queued: u32,
    /// The view's staleness as its RM stated it, plus its age here.
    pub staleness_ms: u64,
}

/// One group on the resource-groups page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRow {
    pub id: String,
    /// Nesting depth (0: a root).
    pub depth: usize,
    pub leaf: bool,
    pub mode: Mode,
    pub max_staleness_ms: Option<u64>,
    /// Trino's `CAN_RUN`, `CAN_QUEUE` or `FULL`.
    pub state: String,
    pub running: u32,
    pub queued: u32,
    pub hard_concurrency_limit: u32,
    /// The concurrency limit after the CPU penalty.
    pub running_limit: u32,
    pub max_queued: u32,
    pub memory_bytes: u64,
    pub soft_memory_limit_bytes: Option<u64>,
    pub cpu_ms: u64,
    pub soft_cpu_limit_ms: Option<u64>,
    pub hard_cpu_limit_ms: Option<u64>,
    /// Gone from the configuration; kept until its queries end.
    pub draining: bool,
    /// Decisions in the last minute, by every coordinator that answered.
    pub admitted_last_minute: u64,
    pub rejected_last_minute: u64,
    /// Eventual groups: the view this coordinator decides on.
    pub decision_view: Option<DecisionView>,
}

/// `GET /ui/api/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsPage {
    pub coordinator: String,
    /// The RMs' view the counts come from: its replica and staleness.
    pub served_by: Option<crate::NodeId>,
    pub view_staleness_ms: Option<u64>,
    pub config_version: Option<u64>,
    pub groups: Vec<GroupRow>,
    /// Coordinators whose decisions are not counted (they did not answer).
    pub decisions_missing: Vec<String>,
    pub errors: Vec<String>,
}

/// One row of the queries page: a coordinator's account of a query, or
/// the RMs' ledger entry where its coordinator did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRow {
    #[serde(flatten)]
    pub summary: QuerySummary,
    pub origin: RowOrigin,
    /// The memory the workers hold for it now, by the RMs' memory view
    /// (a running query's peak is known only once it ends).
    pub reserved_bytes: Option<u64>,
}

/// Where a [`QueryRow`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowOrigin {
    /// The coordinator that runs the query.
    Coordinator,
    /// The RMs' ledger: its coordinator did not answer.
    Ledger,
}

/// `GET /ui/api/queries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueriesPage {
    pub coordinator: String,
    pub queries: Vec<QueryRow>,
    /// Coordinators that did not answer (their ledger entries stand in).
    pub unreachable: Vec<String>,
    pub errors: Vec<String>,
}

/// A query's ledger entry as the UI shows it: the statement and user read
/// from its stored payload, never the payload itself (it holds the slug
/// that lets a client poll and cancel the query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub query_id: String,
    pub group: String,
    pub coordinator: String,
    pub session: u64,
    /// False once the session expired: the query waits for adoption.
    pub session_alive: bool,
    pub status: LedgerStatus,
    pub fencing_token: Option<u64>,
    pub sql: Option<String>,
    pub user: Option<String>,
}

/// `GET /ui/api/query/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPage {
    /// The coordinator serving the page.
    pub coordinator: String,
    /// The coordinator that runs the query, as far as is known.
    pub owner: Option<String>,
    /// The RM that relayed the owner's answer (the page came from another
    /// coordinator).
    pub proxied_via: Option<String>,
    /// The owner's account (none when it did not answer).
    pub detail: Option<QueryDetail>,
    /// What the RMs' ledger holds (queued or running linearizable queries).
    pub ledger: Option<LedgerRecord>,
    /// Why the owner's account is missing.
    pub owner_error: Option<String>,
    /// The memory the workers hold for it now, summed, by the RMs'
    /// memory view (none: they hold none, or the view did not answer).
    pub reserved_bytes: Option<u64>,
}
