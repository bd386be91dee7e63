//! The worker's HTTP API.
//!
//! | route | auth | |
//! |---|---|---|
//! | `POST /v1/tasks` (a [`TaskSpec`]) | secret | start a task (idempotent per `task_id`); a task under a fencing token only if the RMs' ledger holds it (409 if not, 503 if no RM can say) |
//! | `GET /v1/tasks`, `GET /v1/tasks/{id}[?wait_ms=N]` | secret | task state (waiting up to N ms, at most 1 s, for the task to end) |
//! | `DELETE /v1/tasks/{id}` | secret | cancel; for a finished query, release its result |
//! | `GET /v1/tasks/{id}/results/{page}` | secret | a finished query's result, page by page ([`common::api::ResultPage`]) |
//! | `POST /v1/tasks/{id}/kill {"reason"}` | secret | kill (the low-memory killer) |
//! | `GET /v1/info`, `/v1/health`, `/metrics` | open | |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::api::{KillTask, WorkerInfo};
use common::auth::SharedSecret;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::fencing::{Fencing, Refusal};
use crate::tasks::{TaskError, TaskSpec, TaskState, TaskStop, Tasks};

#[derive(Clone)]
pub struct WorkerState {
    pub node_id: String,
    pub tasks: Arc<Tasks>,
    pub secret: Option<SharedSecret>,
    /// Client certificates are verified: the task API takes only
    /// `coordinator` and `admin` ones.
    pub mutual_tls: bool,
    pub metrics: Arc<WorkerMetrics>,
    pub fencing: Arc<Fencing>,
}

pub fn router(state: WorkerState) -> Router {
    let protected = Router::new()
        .route("/v1/tasks", post(create).get(list))
        .route("/v1/tasks/{id}", get(get_task).delete(cancel))
        .route("/v1/tasks/{id}/kill", post(kill))
        .route("/v1/tasks/{id}/results/{page}", get(result_page))
        // A query task carries its statement, and may carry the rows of
        // `system.runtime` tables.
        .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            common::auth::RoleGuard {
                roles: &["coordinator", "admin"],
                enforced: state.mutual_tls,
                reads_open: false,
            },
            common::auth::require_role,
        ))
        .layer(axum::middleware::from_fn_with_state(
            common::auth::SecretGuard::new(state.secret.clone()),
            common::auth::require_secret,
        ));
    Router::new()
        .route("/v1/info", get(info))
        .route(
            "/v1/health",
            get(|| async { Json(Status { status: "ok" }) }),
        )
        .route("/metrics", get(metrics))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// Every error answer.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
    /// A fencing refusal's code (`ADMISSION_REVOKED`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    error_name: Option<&'static str>,
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = ErrorBody {
        error: message.to_string(),
        error_name: None,
    };
    (status, Json(body)).into_response()
}

/// A fencing refusal: final (409) or for the coordinator to retry (503).
fn refusal(r: Refusal) -> Response {
    let status = match r {
        Refusal::Revoked { .. } | Refusal::NotAdmitted(_) => StatusCode::CONFLICT,
        Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = ErrorBody {
        error: r.to_string(),
        error_name: Some(r.error_name()),
    };
    (status, Json(body)).into_response()
}

fn task_error(e: TaskError) -> Response {
    let status = match e {
        TaskError::NotFound(_) => StatusCode::NOT_FOUND,
        TaskError::Conflict(_) | TaskError::Revoked { .. } => StatusCode::CONFLICT,
        TaskError::TooLarge { .. } | TaskError::NoQueries => StatusCode::BAD_REQUEST,
        TaskError::NoResult(..) => StatusCode::CONFLICT,
    };
    error(status, e)
}

async fn create(State(state): State<WorkerState>, body: Bytes) -> Response {
    let spec: TaskSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    if let Err(problem) = common::auth::check_name("task_id", &spec.task_id)
        .and(common::auth::check_name("query_id", &spec.query_id))
    {
        return error(StatusCode::BAD_REQUEST, problem);
    }
    // A repeat is answered from the task (its token was checked); a new
    // task is checked locally first, then against the ledger.
    if !state.tasks.contains(&spec.task_id) {
        if let Err(e) = state.tasks.check_fits(&spec) {
            return task_error(e);
        }
        if let Err(r) = state.fencing.check(&spec).await {
            tracing::info!(task = %spec.task_id, query = %spec.query_id, token = spec.fencing_token, reason = %r, "task refused");
            return refusal(r);
        }
    }
    match state.tasks.create(spec) {
        Ok(info) => Json(info).into_response(),
        Err(e) => task_error(e),
    }
}

async fn result_page(
    State(state): State<WorkerState>,
    Path((id, page)): Path<(String, u32)>,
) -> Response {
    match state.tasks.result_page(&id, page) {
        Ok(p) => Json(p).into_response(),
        Err(e) => task_error(e),
    }
}

async fn list(State(state): State<WorkerState>) -> Response {
    Json(state.tasks.list()).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GetTaskParams {
    /// Wait up to this long (at most 1 s) for the task to end.
    #[serde(default)]
    wait_ms: u64,
}

async fn get_task(
    State(state): State<WorkerState>,
    Path(id): Path<String>,
    axum::extract::Query(params): axum::extract::Query<GetTaskParams>,
) -> Response {
    let wait = std::time::Duration::from_millis(params.wait_ms.min(1000));
    match state.tasks.wait_done(&id, wait).await {
        Ok(info) => Json(info).into_response(),
        Err(e) => task_error(e),
    }
}

async fn cancel(State(state): State<WorkerState>, Path(id): Path<String>) -> Response {
    match state.tasks.stop(
        &id,
        TaskStop::new(TaskState::Cancelled, "cancelled by the coordinator"),
    ) {
        Ok(info) => Json(info).into_response(),
        Err(e) => task_error(e),
    }
}

async fn kill(State(state): State<WorkerState>, Path(id): Path<String>, body: Bytes) -> Response {
    let k: KillTask = match serde_json::from_slice(&body) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let why = TaskStop {
        error_name: k.error_name,
        ..TaskStop::new(TaskState::Killed, k.reason)
    };
    match state.tasks.stop(&id, why) {
        Ok(info) => Json(info).into_response(),
        Err(e) => task_error(e),
    }
}

async fn info(State(state): State<WorkerState>) -> Response {
    Json(WorkerInfo {
        node_id: state.node_id.clone(),
        starting: false,
        memory: state.tasks.pool().snapshot(),
        running_tasks: state.tasks.running(),
    })
    .into_response()
}

pub struct WorkerMetrics {
    registry: Registry,
    total: Gauge,
    reserved: Gauge,
    blocked: Gauge,
    running: Gauge,
    query_processes: Gauge,
    query_memory: Gauge,
    /// Tasks fencing stopped, by error name.
    fenced: Family<Vec<(String, String)>, Counter>,
}

impl WorkerMetrics {
    /// `n` tasks stopped by fencing for `error_name`.
    pub fn count_fenced(&self, error_name: &str, n: usize) {
        self.fenced
            .get_or_create(&vec![("reason".into(), error_name.into())])
            .inc_by(n as u64);
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("worker");
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let total = gauge("memory_total_bytes", "Size of the general memory pool");
        let reserved = gauge("memory_reserved_bytes", "Bytes reserved by tasks");
        let blocked = gauge("blocked_tasks", "Tasks waiting for memory");
        let running = gauge("running_tasks", "Tasks running");
        let query_processes = gauge(
            "query_processes",
            "Query processes running (one per running query task)",
        );
        let query_memory = gauge(
            "query_memory_bytes",
            "Resident memory of the query processes, as last sampled",
        );
        let fenced = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "fenced_tasks",
            "Tasks stopped by fencing: revoked, gone from the ledger, or unverifiable (no fresh RM)",
            fenced.clone(),
        );
        Self {
            fenced,
            registry,
            total,
            reserved,
            blocked,
            running,
            query_processes,
            query_memory,
        }
    }
}

async fn metrics(State(state): State<WorkerState>) -> Response {
    let m = &state.metrics;
    let pool = state.tasks.pool().snapshot();
    m.total.set(pool.total_bytes as i64);
    m.reserved.set(pool.reserved_bytes as i64);
    m.blocked.set(i64::from(pool.blocked_tasks));
    m.running.set(i64::from(state.tasks.running()));
    let (processes, bytes) = state.tasks.pool().measured();
    m.query_processes.set(processes as i64);
    m.query_memory.set(bytes as i64);
    let mut out = String::new();
    let _ = encode(&mut out, &m.registry);
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}
