//! One-hop forwarding of a request to the leader.
//!
//! A handler that gets `ApiError::NotLeader` passes the request here; the
//! leader's answer is relayed unchanged. The `x-rm-forwarded` header stops a
//! request from bouncing between nodes that disagree about the leader
//! (during an election): the second node answers `NotLeader` itself. A
//! relay gives up (504, outcome unknown) as soon as this node learns of a
//! new leader, so clients retry there instead of waiting on a dead one.

use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use common::http::{HttpError, CONTENT_JSON};

use super::{ApiError, AppState};

pub const FORWARDED_HEADER: &str = "x-rm-forwarded";

pub fn was_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

/// Answers with `result`, or relays the request to the leader when `result`
/// says this node is not it and the request has not been forwarded yet.
/// The relay gives up (504, outcome unknown) once a new leader is known.
pub async fn or_forward<T: IntoResponse>(
    state: &AppState,
    headers: &HeaderMap,
    method: Method,
    path_and_query: &str,
    body: Vec<u8>,
    result: Result<T, ApiError>,
) -> Response {
    forward(state, headers, method, path_and_query, body, result, true).await
}

/// As [`or_forward`], but the relay waits for the leader's own answer:
/// for admin requests (step-down, membership), which move the leader
/// themselves.
pub async fn or_forward_to_completion<T: IntoResponse>(
    state: &AppState,
    headers: &HeaderMap,
    method: Method,
    path_and_query: &str,
    body: Vec<u8>,
    result: Result<T, ApiError>,
) -> Response {
    forward(state, headers, method, path_and_query, body, result, false).await
}

async fn forward<T: IntoResponse>(
    state: &AppState,
    headers: &HeaderMap,
    method: Method,
    path_and_query: &str,
    body: Vec<u8>,
    result: Result<T, ApiError>,
    give_up_on_new_leader: bool,
) -> Response {
    match result {
        Err(ApiError::NotLeader {
            leader_id: Some(leader),
            leader_addr: Some(addr),
        }) if !was_forwarded(headers) && leader != state.core.id() => {
            let relayed = relay(state, method, &addr, path_and_query, body);
            if !give_up_on_new_leader {
                return relayed.await.into_response();
            }
            tokio::select! {
                answer = relayed => answer.into_response(),
                new = leader_replaced(state, leader) => ApiError::Timeout(format!(
                    "node {leader} stopped being the leader (now {new}) while this request was relayed to it; its outcome is unknown: retry (admission requests are idempotent)"
                ))
                .into_response(),
            }
        }
        Err(ApiError::NotLeader {
            leader_id: None, ..
        }) => ApiError::NoLeader.into_response(),
        other => other.into_response(),
    }
}

/// Resolves once this node follows a leader other than `leader`: a relay
/// to a frozen or cut-off leader would otherwise hold its client until the
/// client's own timeout, long after a new leader could have answered.
async fn leader_replaced(state: &AppState, leader: crate::NodeId) -> crate::NodeId {
    let mut metrics = state.core.raft().metrics();
    let changed = metrics
        .wait_for(|m| m.current_leader.is_some_and(|l| l != leader))
        .await
        .ok()
        .and_then(|m| m.current_leader);
    match changed {
        Some(new) => new,
        // The Raft core is shutting down: the relay decides.
        None => std::future::pending().await,
    }
}

pub(super) async fn relay(
    state: &AppState,
    method: Method,
    addr: &str,
    path_and_query: &str,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let url = state.http.url(addr, path_and_query);
    let me = state.core.id().to_string();
    let headers = [(FORWARDED_HEADER, me.as_str())];
    let answer = if method == Method::GET {
        state.http.get_bytes(&url, &headers).await
    } else {
        state
            .http
            .post_bytes(&url, CONTENT_JSON, body, None, &headers)
            .await
    };
    match answer {
        Ok(bytes) => Ok(([("content-type", CONTENT_JSON)], bytes).into_response()),
        Err(HttpError::Status { status, body, .. }) => Err(ApiError::Relayed { status, body }),
        Err(e) => Err(ApiError::LeaderUnreachable(e.to_string())),
    }
}
