//! Canary writes: a deduplicated counter per client, through the full
//! durable write path. Operators use it to check that a cluster commits;
//! the crash tests use it to prove every acknowledged write is applied
//! exactly once.
//!
//! - `POST /v1/canary {"client","seq"}`: applies once per `(client, seq)`
//!   with `seq` increasing; a retry answers `"applied": false`.
//! - `GET /v1/canary`: all counters, read linearizably on the leader;
//!   `?read=local` answers from this replica without asking anyone.

pub use common::api::{CanaryWrite, CanaryWritten};
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::json_body;
use super::forward::or_forward;
use super::{ApiError, AppState};
use crate::machine::{CanaryCounter, Command, Response as MachineResponse};

pub const PATH: &str = "/v1/canary";

pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(write).get(read))
}

async fn write(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = apply_write(&state, &body).await;
    or_forward(&state, &headers, Method::POST, PATH, body.to_vec(), result).await
}

async fn apply_write(state: &AppState, body: &[u8]) -> Result<Json<CanaryWritten>, ApiError> {
    let req: CanaryWrite = json_body(body)?;
    if req.client.is_empty() || req.client.len() > 128 {
        return Err(ApiError::BadRequest(
            "client: must be 1 to 128 bytes".into(),
        ));
    }
    if req.seq == 0 {
        return Err(ApiError::BadRequest("seq: must be positive".into()));
    }
    let (index, response) = state
        .core
        .propose(Command::Canary {
            client: req.client,
            seq: req.seq,
        })
        .await?;
    let MachineResponse::Canary(outcome) = response else {
        return Err(ApiError::Internal(format!(
            "unexpected state machine answer {response:?}"
        )));
    };
    Ok(Json(CanaryWritten {
        served_by: state.core.id(),
        index,
        applied: outcome.applied,
        count: outcome.count,
        last_seq: outcome.last_seq,
    }))
}

#[derive(Debug, Deserialize)]
pub struct ReadParams {
    /// `linearizable` (default) or `local`.
    #[serde(default)]
    pub read: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CanaryView {
    pub served_by: u64,
    pub last_applied: Option<u64>,
    pub canaries: BTreeMap<String, CanaryCounter>,
}

async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<ReadParams>,
) -> Response {
    let result = read_view(&state, params.read.as_deref()).await;
    let path = match params.read.as_deref() {
        Some(mode) => format!("{PATH}?read={mode}"),
        None => PATH.to_string(),
    };
    or_forward(&state, &headers, Method::GET, &path, Vec::new(), result).await
}

async fn read_view(state: &AppState, mode: Option<&str>) -> Result<Json<CanaryView>, ApiError> {
    match mode.unwrap_or("linearizable") {
        "local" => {}
        "linearizable" => state.core.linearizable_barrier().await?,
        other => {
            return Err(ApiError::BadRequest(format!(
                "read: '{other}' is not one of linearizable, local"
            )))
        }
    }
    let applied = state.core.applied().read();
    Ok(Json(CanaryView {
        served_by: state.core.id(),
        last_applied: applied.last_applied.map(|l| l.index),
        canaries: applied.state.canaries.clone(),
    }))
}
