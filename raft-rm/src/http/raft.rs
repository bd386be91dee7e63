//! Raft RPC, server side: bincode in, bincode out. The answer body is the
//! codec encoding of `Result<Response, RaftError>`, so a Raft-level refusal
//! reaches the caller's openraft as a `RemoteError`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use common::http::CONTENT_BINCODE;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::network::{APPEND_PATH, CLUSTER_HEADER, SNAPSHOT_PATH, VOTE_PATH};
use crate::store::IdentityError;
use crate::TypeConfig;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
}

/// Checks the sender's cluster and decodes the body.
async fn admit<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let cluster = headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok());
    match state.identity.check_or_adopt(cluster).await {
        Ok(()) => {}
        Err(e @ IdentityError::WrongCluster { .. }) => {
            tracing::warn!(error = %e, "refused Raft RPC from another cluster");
            return Err(ApiError::Conflict(e.to_string()));
        }
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    }
    common::codec::decode(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid Raft RPC body: {e}")))
}

fn bincode_reply<T: Serialize>(value: &T) -> Response {
    match common::codec::encode(value) {
        Ok(bytes) => ([("content-type", CONTENT_BINCODE)], bytes).into_response(),
        Err(e) => ApiError::Internal(format!("cannot encode reply: {e}")).into_response(),
    }
}

async fn append(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match admit(&state, &headers, &body).await {
        Ok(req) => {
            let req: AppendEntriesRequest<TypeConfig> = req;
            // A leader this node will accept (its vote is no older than
            // ours) is in contact now, on arrival: the answer waits for the
            // entries' fsync, which under load can take longer than the
            // election timeout, and the election timer must not campaign
            // meanwhile (openraft's own timer also counts the arrival).
            if req.vote >= state.core.raft().metrics().borrow().vote {
                state.elections.leader_contacted(Instant::now());
            }
            bincode_reply(&state.core.raft().append_entries(req).await)
        }
        Err(e) => e.into_response(),
    }
}

async fn vote(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match admit(&state, &headers, &body).await {
        Ok(req) => bincode_reply(&state.core.raft().vote(req).await),
        Err(e) => e.into_response(),
    }
}

async fn snapshot(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match admit(&state, &headers, &body).await {
        Ok(req) => {
            let req: InstallSnapshotRequest<TypeConfig> = req;
            let vote = req.vote;
            let answer = state.core.raft().install_snapshot(req).await;
            // Accepted when this node's vote is no newer than the sender's.
            if matches!(&answer, Ok(r) if r.vote <= vote) {
                state.elections.leader_contacted(Instant::now());
            }
            bincode_reply(&answer)
        }
        Err(e) => e.into_response(),
    }
}
