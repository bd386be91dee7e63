//! The one error type of the HTTP layer; it owns the status mapping.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::error::{ClientWriteError, RaftError};
use serde_json::json;

use crate::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong shared secret")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// This node is not the leader; the caller (or `forward`) should go to it.
    #[error("not the leader; leader is {leader_id:?} at {leader_addr:?}")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// Temporarily unable (no quorum, election, transfer): retry.
    #[error("{0}")]
    Unavailable(String),
    /// This replica is staler than the caller allows, and the leader could
    /// not answer instead.
    #[error("staleness {staleness_ms} ms exceeds max_staleness_ms {bound_ms}: {detail}")]
    TooStale {
        bound_ms: u64,
        staleness_ms: u64,
        detail: String,
    },
    /// The outcome is unknown: the request may still take effect.
    #[error("{0}")]
    Timeout(String),
    /// An answer relayed from the leader, status and body unchanged.
    #[error("HTTP {status} from leader: {body}")]
    Relayed { status: u16, body: String },
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, extra) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, json!({})),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, json!({})),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, json!({})),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, json!({})),
            ApiError::NotLeader {
                leader_id,
                leader_addr,
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"leader_id": leader_id, "leader_addr": leader_addr}),
            ),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, json!({})),
            ApiError::TooStale {
                bound_ms,
                staleness_ms,
                ..
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"max_staleness_ms": bound_ms, "staleness_ms": staleness_ms}),
            ),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, json!({"indeterminate": true})),
            ApiError::Relayed { status, body } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
                return (status, [("content-type", "application/json")], body.clone())
                    .into_response();
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, json!({})),
        };
        let mut body = json!({"error": self.to_string()});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        (status, Json(body)).into_response()
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, crate::Node>>> for ApiError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, crate::Node>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ApiError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                ApiError::Conflict(c.to_string())
            }
            RaftError::Fatal(f) => ApiError::Internal(format!("raft stopped: {f}")),
        }
    }
}

/// Decodes a JSON body; any problem is a 400 that says what was wrong.
pub fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
