//! The one error type of the HTTP layer; it owns the status mapping and
//! names the kind of every error answer ([`ErrorKind`]), which
//! [`count_admission_errors`] counts for the coordinator-facing routes.

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::core::CoreError;
use crate::NodeId;

/// What an overloaded RM asks a client to wait before retrying (its
/// proposal queue drains within a commit timeout, or it lost its quorum
/// and another RM may lead).
pub const RETRY_AFTER_S: u64 = 1;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
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
    /// No leader is known (an election is under way): retry.
    #[error("no leader known (election in progress?); retry")]
    NoLeader,
    /// A leader is known but relaying the request to it failed (it may
    /// have died, or be cut off from this node): retry.
    #[error("cannot reach leader: {0}")]
    LeaderUnreachable(String),
    /// Temporarily unable (no quorum, transfer): retry.
    #[error("{0}")]
    Unavailable(String),
    /// Too much pending work: retry after [`RETRY_AFTER_S`] seconds, here or
    /// on another RM (503 with `Retry-After`).
    #[error("{0}")]
    Overloaded(String),
    /// This replica is staler than the caller allows, and the leader could
    /// not answer instead.
    #[error("staleness {staleness_ms} ms exceeds max_staleness_ms {bound_ms}: {detail}")]
    TooStale {
        bound_ms: u64,
        staleness_ms: u64,
        detail: String,
    },
    /// The coordinator session expired or never existed: register anew.
    #[error("session expired or unknown; register a new one")]
    SessionExpired,
    /// The outcome is unknown: the request may still take effect.
    #[error("{0}")]
    Timeout(String),
    /// An answer relayed from the leader, status and body unchanged.
    #[error("HTTP {status} from leader: {body}")]
    Relayed { status: u16, body: String },
    /// A coordinator this RM relays to did not answer.
    #[error("{0}")]
    CoordinatorUnreachable(String),
    #[error("{0}")]
    Internal(String),
}

/// The kind of an error answer, as a response extension: the
/// `kind` label of `raft_rm_admission_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorKind(pub &'static str);

impl ApiError {
    /// The `kind` label of this error in `raft_rm_admission_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::NotLeader { .. } => "not_leader",
            ApiError::NoLeader => "no_leader",
            ApiError::LeaderUnreachable(_) => "leader_unreachable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::TooStale { .. } => "too_stale",
            ApiError::SessionExpired => "session_expired",
            ApiError::Timeout(_) => "timeout",
            ApiError::Relayed { status, .. } => kind_of_status(*status),
            ApiError::CoordinatorUnreachable(_) => "coordinator_unreachable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// The kind of an error answer known only by its status: one relayed from
/// the leader, or an axum rejection (body too large, bad query string).
pub fn kind_of_status(status: u16) -> &'static str {
    match status {
        401 => "unauthorized",
        404 => "not_found",
        409 => "conflict",
        410 => "session_expired",
        503 => "unavailable",
        504 => "timeout",
        400..=499 => "bad_request",
        _ => "internal",
    }
}

/// Middleware of the coordinator-facing routes: counts every error answer
/// in `raft_rm_admission_errors_total{route,kind}`. A request relayed from
/// another RM is not counted here: the RM the client called counts it,
/// with the kind the leader answered, so the sum over RMs is what clients
/// saw.
pub async fn count_admission_errors(
    State(state): State<super::AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let relayed_to_me = super::forward::was_forwarded(request.headers());
    let response = next.run(request).await;
    let status = response.status();
    if relayed_to_me || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let kind = response
        .extensions()
        .get::<ErrorKind>()
        .map(|k| k.0)
        .unwrap_or_else(|| kind_of_status(status.as_u16()));
    state
        .core
        .metrics()
        .admission_error(route.as_deref().unwrap_or("unmatched"), kind);
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = ErrorKind(self.kind());
        let mut response = self.response();
        response.extensions_mut().insert(kind);
        response
    }
}

impl ApiError {
    fn response(self) -> Response {
        let (status, extra) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, json!({})),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, json!({})),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, json!({})),
            ApiError::NotLeader {
                leader_id,
                leader_addr,
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"leader_id": leader_id, "leader_addr": leader_addr}),
            ),
            ApiError::NoLeader | ApiError::LeaderUnreachable(_) | ApiError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({}))
            }
            ApiError::SessionExpired => (StatusCode::GONE, json!({})),
            ApiError::Overloaded(_) => {
                let body = Json(json!({"error": self.to_string(), "retry_after_s": RETRY_AFTER_S}));
                let retry = [(axum::http::header::RETRY_AFTER, RETRY_AFTER_S.to_string())];
                return (StatusCode::SERVICE_UNAVAILABLE, retry, body).into_response();
            }
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
                let mut r =
                    (status, [("content-type", "application/json")], body.clone()).into_response();
                // An overloaded leader's "come back later" reaches the
                // client through the relay too (the body says when).
                let retry_after = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|b| b["retry_after_s"].as_u64());
                if let Some(s) = retry_after {
                    if let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string()) {
                        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
                    }
                }
                return r;
            }
            ApiError::CoordinatorUnreachable(_) => (StatusCode::BAD_GATEWAY, json!({})),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, json!({})),
        };
        let mut body = json!({"error": self.to_string()});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        (status, Json(body)).into_response()
    }
}

/// The one mapping of the node core's errors to HTTP answers.
impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::NotLeader {
                leader_id,
                leader_addr,
            } => ApiError::NotLeader {
                leader_id,
                leader_addr,
            },
            CoreError::Invalid(m) => ApiError::BadRequest(m),
            CoreError::Conflict(m) => ApiError::Conflict(m),
            e @ (CoreError::Transferring | CoreError::Unavailable(_)) => {
                ApiError::Unavailable(e.to_string())
            }
            e @ CoreError::Overloaded { .. } => ApiError::Overloaded(e.to_string()),
            CoreError::OutcomeUnknown(m) => ApiError::Timeout(m),
            e @ (CoreError::RaftStopped(_) | CoreError::Internal(_)) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

/// Decodes a JSON body; any problem is a 400 that says what was wrong.
pub fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ApiError) -> (u16, Option<ErrorKind>, serde_json::Value) {
        let r = e.into_response();
        let status = r.status().as_u16();
        let kind = r.extensions().get::<ErrorKind>().copied();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, kind, body)
    }

    /// An overloaded RM says when to come back.
    #[tokio::test]
    async fn an_overloaded_rm_answers_503_with_retry_after() {
        let r = ApiError::from(CoreError::Overloaded { pending: 3 }).into_response();
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let (s, k, body) = answer(ApiError::Overloaded("full".into())).await;
        assert_eq!((s, k), (503, Some(ErrorKind("overloaded"))));
        assert_eq!(
            (&body["error"], &body["retry_after_s"]),
            (&"full".into(), &1.into())
        );
    }

    /// Through a follower, the leader's overload answer keeps its hint.
    #[tokio::test]
    async fn a_relayed_overload_keeps_its_retry_after() {
        let leader = ApiError::Overloaded("full".into()).into_response();
        let body = axum::body::to_bytes(leader.into_body(), 1 << 16)
            .await
            .unwrap();
        let relayed = ApiError::Relayed {
            status: 503,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
        .into_response();
        assert_eq!(relayed.status().as_u16(), 503);
        assert_eq!(relayed.headers()["retry-after"], "1");
    }

    #[tokio::test]
    async fn every_error_answer_names_its_kind_and_keeps_its_wire_form() {
        let cases = [
            (ApiError::BadRequest("x".into()), 400, "bad_request", "x"),
            (
                ApiError::NoLeader,
                503,
                "no_leader",
                "no leader known (election in progress?); retry",
            ),
            (
                ApiError::LeaderUnreachable("refused".into()),
                503,
                "leader_unreachable",
                "cannot reach leader: refused",
            ),
            (
                ApiError::SessionExpired,
                410,
                "session_expired",
                "session expired or unknown; register a new one",
            ),
            (ApiError::Timeout("t".into()), 504, "timeout", "t"),
            (ApiError::Internal("i".into()), 500, "internal", "i"),
        ];
        for (e, status, kind, text) in cases {
            let (s, k, body) = answer(e).await;
            assert_eq!((s, k), (status, Some(ErrorKind(kind))));
            assert_eq!(body["error"], text);
        }
        let relayed = ApiError::Relayed {
            status: 410,
            body: r#"{"error":"gone"}"#.into(),
        };
        let (s, k, body) = answer(relayed).await;
        assert_eq!((s, k), (410, Some(ErrorKind("session_expired"))));
        assert_eq!(body["error"], "gone");
    }

    /// The core's errors keep the statuses and texts they had when the
    /// HTTP layer raised them itself.
    #[tokio::test]
    async fn core_errors_answer_as_before() {
        let cases = [
            (
                CoreError::NotLeader {
                    leader_id: Some(2),
                    leader_addr: Some("h:1".into()),
                },
                503,
                "not_leader",
                "not the leader; leader is Some(2) at Some(\"h:1\")",
            ),
            (
                CoreError::Transferring,
                503,
                "unavailable",
                "leadership transfer in progress; retry shortly",
            ),
            (
                CoreError::not_committed(crate::core::COMMIT_TIMEOUT),
                504,
                "timeout",
                "not committed within 5 s (no quorum?); the write may still commit",
            ),
            (CoreError::Invalid("v".into()), 400, "bad_request", "v"),
            (CoreError::Conflict("c".into()), 409, "conflict", "c"),
            (CoreError::Unavailable("u".into()), 503, "unavailable", "u"),
            (
                CoreError::Overloaded { pending: 10_000 },
                503,
                "overloaded",
                "too many writes pending on this leader (10000 pending; no quorum?); nothing was done: retry later or on another RM",
            ),
            (
                CoreError::RaftStopped("f".into()),
                500,
                "internal",
                "raft stopped: f",
            ),
            (CoreError::Internal("i".into()), 500, "internal", "i"),
        ];
        for (e, status, kind, text) in cases {
            let (s, k, body) = answer(ApiError::from(e)).await;
            assert_eq!((s, k), (status, Some(ErrorKind(kind))), "{text}");
            assert_eq!(body["error"], text);
            if kind == "not_leader" {
                assert_eq!(
                    (&body["leader_id"], &body["leader_addr"]),
                    (&2.into(), &"h:1".into())
                );
            }
        }
    }
}
