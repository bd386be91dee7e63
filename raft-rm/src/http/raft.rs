//! Raft RPC, server side: bincode in, bincode out. The answer body is the
//! codec encoding of `Result<Response, RaftError>`, so a Raft-level refusal
//! reaches the caller's openraft as a `RemoteError`.
//!
//! Before any of that, [`admit`] refuses with 409 a call from another
//! cluster or addressed to another incarnation of this node (its disk was
//! lost: it must be replaced, not trusted with an empty log), and [`vote`]
//! refuses a candidate that is not the incarnation this node's membership
//! records for it. Appends and snapshots are not checked against this
//! node's record of the leader: that record may predate the replacement the
//! leader's own entries are bringing.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use common::http::CONTENT_BINCODE;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::network::{
    APPEND_PATH, CLUSTER_HEADER, INCARNATION_HEADER, SNAPSHOT_PATH, TO_INCARNATION_HEADER,
    VOTE_PATH,
};
use crate::store::identity::check_sender;
use crate::store::IdentityError;
use crate::{NodeId, TypeConfig};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
}

/// An incarnation header (hex), if present.
fn incarnation_header(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest(format!("{name} is not a hex u64")))
}

/// Checks that the call is meant for this incarnation of this node and
/// comes from its cluster (adopting the cluster id if this node has none
/// yet, only then), and decodes the body.
async fn admit<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let addressed_to = incarnation_header(headers, TO_INCARNATION_HEADER)?;
    // Logged (once) by the check itself: the line tells the operator what to do.
    state
        .identity
        .check_addressed_to(addressed_to)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
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

/// Refuses a candidate whose incarnation is not the one this node's
/// membership records for it: a node whose disk was lost must not win
/// votes (and lead with an empty log) under its old identity.
fn admit_candidate(
    state: &AppState,
    headers: &HeaderMap,
    req: &VoteRequest<NodeId>,
) -> Result<(), ApiError> {
    let Some(candidate) = req.vote.leader_id().voted_for() else {
        return Ok(());
    };
    let recorded = state
        .core
        .membership()
        .get_node(&candidate)
        .map_or(0, |n| n.incarnation);
    let theirs = incarnation_header(headers, INCARNATION_HEADER)?;
    check_sender(candidate, theirs, recorded).map_err(|e| {
        tracing::warn!(error = %e, "refused vote request");
        ApiError::Conflict(e.to_string())
    })
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
    let req: VoteRequest<NodeId> = match admit(&state, &headers, &body).await {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    match admit_candidate(&state, &headers, &req) {
        Ok(()) => bincode_reply(&state.core.raft().vote(req).await),
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
