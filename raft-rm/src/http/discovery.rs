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
use common::api::{
    EpisodeView, KillFigures, KillSettlement, KillView, KillerView, MemoryView, NodeView,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::json_body;
use super::{ApiError, AppState};
use crate::machine::memory::{KillDecision, KillOutcome};
use crate::soft::{Announcement, SoftError, WorkerHeartbeat};
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

/// Largest memory pool a worker may report (1 PiB): with at most
/// `soft::MAX_NODES` workers, cluster sums stay below `u64::MAX`.
pub const MAX_POOL_BYTES: u64 = 1 << 50;

async fn heartbeat(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let hb: WorkerHeartbeat = json_body(&body)?;
    check("node_id", &hb.node_id)?;
    if hb.memory.total_bytes > MAX_POOL_BYTES {
        return Err(ApiError::BadRequest(format!(
            "memory.total_bytes: at most {MAX_POOL_BYTES} (1 PiB)"
        )));
    }
    // What the worker's pool guarantees: each query's reservation is part
    // of the pool's. So sums over every worker stay far from overflowing.
    let queries = hb
        .memory
        .queries
        .values()
        .try_fold(0u64, |sum, b| sum.checked_add(*b));
    if queries.is_none_or(|sum| sum > hb.memory.reserved_bytes) {
        return Err(ApiError::BadRequest(
            "memory.queries: the reservations add up to more than reserved_bytes".into(),
        ));
    }
    // Measured memory may run over the pool (query processes, sampled:
    // several of them, or one between two samples), so reserved may exceed
    // total; the pool then reads as full. Only the bound on sums holds.
    if hb.memory.reserved_bytes > MAX_POOL_BYTES {
        return Err(ApiError::BadRequest(format!(
            "memory.reserved_bytes: at most {MAX_POOL_BYTES} (1 PiB)"
        )));
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

fn kill_view(d: &KillDecision) -> KillView {
    let (outcome, settled_ms) = match d.outcome {
        None => (KillSettlement::Unsettled, None),
        Some(KillOutcome::Freed { at_ms }) => (KillSettlement::Freed, Some(at_ms)),
        Some(KillOutcome::Leaked { at_ms }) => (KillSettlement::Leaked, Some(at_ms)),
    };
    let f = &d.figures;
    KillView {
        decision: d.index,
        episode: d.episode,
        query_id: d.query_id.clone(),
        error_name: d.reason.error_name().to_string(),
        message: d.reason.message(),
        reason: d.reason.label().to_string(),
        decided_ms: d.decided_ms,
        figures: KillFigures {
            workers: f.workers,
            cluster_total_bytes: f.cluster_total_bytes,
            cluster_reserved_bytes: f.cluster_reserved_bytes,
            blocked_nodes: f.blocked_nodes.clone(),
            query_bytes: f.query_bytes,
            query_total_bytes: f.query_total_bytes,
            out_of_memory_ms: f.out_of_memory_ms,
        },
        outcome,
        settled_ms,
    }
}

async fn memory(State(state): State<AppState>) -> Json<MemoryView> {
    let pool = state.soft.memory();
    let now = state.core.clock().now_ms();
    let config = &state.killer.config;
    let applied = state.core.applied().read();
    let memory = &applied.state.memory;
    let unsettled = memory.unsettled_low_memory().map(kill_view);
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
            .map(kill_view)
            .collect(),
        pool,
    })
}
