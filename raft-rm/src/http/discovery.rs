//! Soft state over HTTP (see [`crate::soft`]): not replicated, each RM
//! answers from what it heard itself.
//!
//! - `POST /v1/announce` (an [`Announcement`]), `GET /v1/discovery/nodes[?role=worker]`
//! - `POST /v1/heartbeat/worker` (a [`WorkerHeartbeat`]): answers the
//!   unsettled memory kills ([`HeartbeatAnswer`]), which the worker carries out.
//! - `GET /v1/memory`: the pool summed over live workers, this RM's view of
//!   the out-of-memory episode, the killer's settings and recent kills.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::json_body;
use super::{ApiError, AppState};
use crate::machine::memory::{KillDecision, KillOutcome};
use crate::soft::{Announcement, ClusterMemory, NodeView, SoftError, WorkerHeartbeat};
use common::wire::{HeartbeatAnswer, KillOrder};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/announce", post(announce))
        .route("/v1/heartbeat/worker", post(heartbeat))
        .route("/v1/discovery/nodes", get(nodes))
        .route("/v1/memory", get(memory))
}

fn check(field: &str, value: &str) -> Result<(), ApiError> {
    common::auth::check_name(field, value).map_err(ApiError::BadRequest)
}

fn soft_error(e: SoftError) -> ApiError {
    match e {
        SoftError::Ttl => ApiError::BadRequest(e.to_string()),
        SoftError::Full => ApiError::Unavailable(e.to_string()),
    }
}

async fn announce(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let a: Announcement = json_body(&body)?;
    check("node_id", &a.node_id)?;
    check("addr", &a.addr)?;
    if a.role != "worker" && a.role != "coordinator" {
        return Err(ApiError::BadRequest(format!(
            "role: '{}' is not worker or coordinator",
            a.role
        )));
    }
    state.soft.announce(a).map_err(soft_error)?;
    Ok(Json(json!({"ok": true})))
}

async fn heartbeat(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let hb: WorkerHeartbeat = json_body(&body)?;
    check("node_id", &hb.node_id)?;
    if hb.memory.reserved_bytes > hb.memory.total_bytes {
        return Err(ApiError::BadRequest(
            "memory.reserved_bytes: exceeds total_bytes".into(),
        ));
    }
    if !hb.cpu_cores.is_finite() || hb.cpu_cores < 0.0 {
        return Err(ApiError::BadRequest(
            "cpu_cores: must be a non-negative number".into(),
        ));
    }
    state.soft.heartbeat(hb).map_err(soft_error)?;
    let applied = state.core.applied().read();
    let kills = applied
        .state
        .memory
        .decisions
        .iter()
        .filter(|d| d.outcome.is_none())
        .map(|d| KillOrder {
            query_id: d.query_id.clone(),
            error_name: d.reason.error_name().to_string(),
            message: d.reason.message(),
            decision: d.index,
        })
        .collect();
    Ok(Json(HeartbeatAnswer { kills }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesParams {
    role: Option<String>,
}

async fn nodes(State(state): State<AppState>, Query(p): Query<NodesParams>) -> Json<Vec<NodeView>> {
    Json(state.soft.nodes(p.role.as_deref()))
}

/// Kills listed by `GET /v1/memory`, newest first.
const KILLS_SHOWN: usize = 50;

/// `GET /v1/memory`.
#[derive(Debug, Serialize, Deserialize)]
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
    pub kills: Vec<KillView>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EpisodeView {
    pub since_ms: u64,
    pub out_of_memory_ms: u64,
    /// How long until the killer may act, if nothing changes (0: due, or
    /// waiting for the previous kill to settle).
    pub kill_in_ms: u64,
    /// The low-memory kill of this episode, until it settles.
    pub unsettled_kill: Option<KillView>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KillerView {
    pub policy: String,
    pub delay_ms: u64,
    pub leak_timeout_ms: u64,
    pub query_max_memory: Option<u64>,
    pub query_max_memory_per_node: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillView {
    pub decision: u64,
    /// 0 for limit kills.
    pub episode: u64,
    pub query_id: String,
    pub error_name: String,
    pub message: String,
    /// The policy, or the limit exceeded.
    pub reason: String,
    pub decided_ms: u64,
    pub figures: crate::machine::memory::MemoryFigures,
    /// `unsettled`, `freed` or `leaked`.
    pub outcome: String,
    pub settled_ms: Option<u64>,
}

impl From<&KillDecision> for KillView {
    fn from(d: &KillDecision) -> Self {
        let (outcome, settled_ms) = match d.outcome {
            None => ("unsettled", None),
            Some(KillOutcome::Freed { at_ms }) => ("freed", Some(at_ms)),
            Some(KillOutcome::Leaked { at_ms }) => ("leaked", Some(at_ms)),
        };
        KillView {
            decision: d.index,
            episode: d.episode,
            query_id: d.query_id.clone(),
            error_name: d.reason.error_name().to_string(),
            message: d.reason.message(),
            reason: d.reason.label().to_string(),
            decided_ms: d.decided_ms,
            figures: d.figures.clone(),
            outcome: outcome.to_string(),
            settled_ms,
        }
    }
}

async fn memory(State(state): State<AppState>) -> Json<MemoryView> {
    let pool = state.soft.memory();
    let now = state.core.clock().now_ms();
    let config = &state.killer.config;
    let applied = state.core.applied().read();
    let memory = &applied.state.memory;
    let unsettled = memory.unsettled_low_memory().map(KillView::from);
    let delay_ms = config.delay.as_millis() as u64;
    let episode = state.killer.episode().map(|e| EpisodeView {
        since_ms: e.since_ms,
        out_of_memory_ms: now.saturating_sub(e.since_ms),
        kill_in_ms: if unsettled.is_some() {
            0
        } else {
            (e.delay_from_ms + delay_ms).saturating_sub(now)
        },
        unsettled_kill: unsettled,
    });
    Json(MemoryView {
        out_of_memory: pool.blocked_workers > 0,
        episode,
        killer: KillerView {
            policy: config.policy.map_or("none", |p| p.name()).to_string(),
            delay_ms,
            leak_timeout_ms: config.leak_timeout.as_millis() as u64,
            query_max_memory: config.max_memory,
            query_max_memory_per_node: config.max_memory_per_node,
        },
        episodes_with_kills: memory.episodes,
        kills: memory
            .decisions
            .iter()
            .rev()
            .take(KILLS_SHOWN)
            .map(KillView::from)
            .collect(),
        pool,
    })
}
