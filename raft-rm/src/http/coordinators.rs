//! Coordinators as the RMs know them, and the relay that lets any
//! coordinator's web UI show a query another coordinator runs (the
//! disaggregated design: the RMs know every coordinator; coordinators need
//! not know each other).
//!
//! - `GET /v1/coordinators`: every coordinator with a live session in this
//!   replica's applied state or a live announcement here: its address, its
//!   sessions, its queued and running linearizable queries. Informational,
//!   so served from this replica as it stands, with its staleness.
//! - `GET /v1/coordinators/{name}/queries`: that coordinator's own list
//!   ([`common::api::CoordinatorQueries`]), relayed from its
//!   `/ui/api/local/queries`.
//! - `GET /v1/coordinators/{name}/queries/{id}`: one query's account
//!   ([`common::api::QueryDetail`]), relayed from its
//!   `/ui/api/local/queries/{id}`.
//!
//! The relay goes only to an announced coordinator's address and only to
//! those two read-only paths, with this RM's internal credentials: it is
//! no open proxy. A coordinator that does not answer within
//! [`RELAY_TIMEOUT`] is 502 `coordinator_unreachable`; its own error
//! answers (404 for a query it does not hold) are relayed unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::api::{is_query_id, CoordinatorView, CoordinatorsView};
use common::http::{HttpError, CONTENT_JSON};

use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/coordinators", get(list))
        .route("/v1/coordinators/{name}/queries", get(queries))
        .route("/v1/coordinators/{name}/queries/{id}", get(query))
}

/// Longest the relay waits for a coordinator.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(2);

async fn list(State(state): State<AppState>) -> Json<CoordinatorsView> {
    let announced = state.soft.nodes(Some("coordinator"));
    let now = state.core.clock().now_ms();
    let applied = state.core.applied().read();
    let adm = &applied.state.admission;
    let mut by_name: BTreeMap<String, CoordinatorView> = BTreeMap::new();
    for n in &announced {
        let c = slot(&mut by_name, &n.announcement.node_id);
        c.addr = Some(n.announcement.addr.clone());
        c.announced_ms_ago = Some(now.saturating_sub(n.last_seen_ms));
    }
    for (id, s) in &adm.sessions {
        slot(&mut by_name, &s.coordinator).sessions.push(*id);
    }
    for q in adm.queries.values() {
        if let Some(c) = by_name.get_mut(&q.coordinator) {
            match q.status {
                crate::machine::admission::QueryStatus::Running { .. } => c.ledger_running += 1,
                crate::machine::admission::QueryStatus::Queued { .. } => c.ledger_queued += 1,
            }
        }
    }
    let log_time = applied.state.log_time_ms;
    Json(CoordinatorsView {
        served_by: state.core.id(),
        staleness_ms: now.saturating_sub(log_time),
        coordinators: by_name.into_values().collect(),
    })
}

fn slot<'a>(
    by_name: &'a mut BTreeMap<String, CoordinatorView>,
    name: &str,
) -> &'a mut CoordinatorView {
    by_name
        .entry(name.to_string())
        .or_insert_with(|| CoordinatorView {
            name: name.to_string(),
            addr: None,
            announced_ms_ago: None,
            sessions: Vec::new(),
            ledger_queued: 0,
            ledger_running: 0,
        })
}

async fn queries(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    relay(&state, &name, "/ui/api/local/queries").await
}

async fn query(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    if !is_query_id(&id) {
        return ApiError::BadRequest(format!("'{id}' is not a query id")).into_response();
    }
    relay(&state, &name, &format!("/ui/api/local/queries/{id}")).await
}

/// GETs `path` from coordinator `name`'s announced address.
async fn relay(state: &AppState, name: &str, path: &str) -> Response {
    let announced = state.soft.nodes(Some("coordinator"));
    let Some(node) = announced.iter().find(|n| n.announcement.node_id == name) else {
        return ApiError::NotFound(format!(
            "no coordinator '{name}' has announced itself to RM {} lately",
            state.core.id()
        ))
        .into_response();
    };
    let url = state.http.url(&node.announcement.addr, path);
    match tokio::time::timeout(RELAY_TIMEOUT, state.http.get_bytes(&url, &[])).await {
        Ok(Ok(bytes)) => ([("content-type", CONTENT_JSON)], bytes).into_response(),
        Ok(Err(HttpError::Status { status, body, .. })) => {
            ApiError::Relayed { status, body }.into_response()
        }
        Ok(Err(e)) => ApiError::CoordinatorUnreachable(format!(
            "coordinator '{name}' at {} did not answer: {e}",
            node.announcement.addr
        ))
        .into_response(),
        Err(_) => ApiError::CoordinatorUnreachable(format!(
            "coordinator '{name}' at {} did not answer within {} ms",
            node.announcement.addr,
            RELAY_TIMEOUT.as_millis()
        ))
        .into_response(),
    }
}
