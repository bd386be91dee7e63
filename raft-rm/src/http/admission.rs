//! Coordinator-facing writes: sessions, acquire, release, adopt, usage
//! reports. Every one is a command in the log; any node accepts it and
//! relays it to the leader. A rejection is an answer (200), not an error.
//!
//! - `POST /v1/sessions {"coordinator"}` -> `{"session","lease_ms","expires_at_ms"}`
//! - `POST /v1/sessions/renew {"session"}` -> the same, or 410 if it expired
//! - `POST /v1/admission/acquire {"query_id","group","coordinator","session","priority"?,"payload"?}`
//!   -> `{"status","reason","fencing_token","position"}`
//! - `POST /v1/admission/release {"query_id"}` -> `{"outcome"}`
//! - `POST /v1/admission/batch {"ops":[{"acquire":{..}}|{"release":{..}}]}`
//!   -> `{"answers":[{"acquire":{..}}|{"release":{..}}|{"error":{"status","body"}}]}`:
//!   each operation decided and answered as its single route would, in order
//! - `POST /v1/admission/adopt {"query_id","coordinator","session"}`
//! - `POST /v1/usage {"coordinator","seq","groups":{"id":{"running","queued"}}}`
//!   -> `{"applied","rejected_groups"}`: groups with an invalid id are
//!   dropped and named, the rest applied

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use common::api::{
    self, Acquire, AdmissionBatch, AdmissionBatchAnswer, AdmissionOp, AdmissionOpAnswer, Adopt,
    RegisterSession, Release, RenewSession, SessionAnswer, UsageAnswer, UsageReport, MAX_BATCH_OPS,
};

use super::error::json_body;
use super::forward::or_forward;
use super::{ApiError, AppState};
use crate::machine::{Command, Decision, RejectReason, ReleaseOutcome, Response as Answer};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", post(register))
        .route("/v1/sessions/renew", post(renew))
        .route("/v1/admission/acquire", post(acquire))
        .route("/v1/admission/release", post(release))
        .route("/v1/admission/batch", post(batch))
        .route("/v1/admission/adopt", post(adopt))
        .route("/v1/usage", post(usage))
}

/// Names a coordinator or query: non-empty, bounded, printable.
fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    common::auth::check_name(field, value).map_err(ApiError::BadRequest)
}

/// Proposes the command decoded from `body` by `build`, relaying to the
/// leader when this node is not it, and shapes the answer with `shape`.
async fn write<Req: serde::de::DeserializeOwned>(
    state: AppState,
    headers: HeaderMap,
    path: &'static str,
    body: Bytes,
    build: impl FnOnce(Req) -> Result<Command, ApiError>,
    shape: impl FnOnce(u64, Answer) -> Result<Response, ApiError>,
) -> Response {
    let result = async {
        let command = build(json_body(&body)?)?;
        let (index, answer) = state.core.propose(command).await?;
        shape(index, answer)
    }
    .await;
    or_forward(&state, &headers, Method::POST, path, body.to_vec(), result).await
}

fn unexpected(answer: Answer) -> ApiError {
    ApiError::Internal(format!("unexpected state machine answer {answer:?}"))
}

fn session_answer(state: &AppState, answer: Answer) -> Result<Response, ApiError> {
    match answer {
        Answer::Session {
            session,
            expires_at_ms,
        } => {
            let lease_ms = state
                .core
                .applied()
                .read()
                .state
                .admission
                .settings
                .session_lease_ms;
            Ok(Json(SessionAnswer {
                session,
                lease_ms,
                expires_at_ms,
            })
            .into_response())
        }
        Answer::SessionExpired => Err(ApiError::SessionExpired),
        other => Err(unexpected(other)),
    }
}

async fn register(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let s = state.clone();
    write(
        state,
        headers,
        "/v1/sessions",
        body,
        |r: RegisterSession| {
            check_name("coordinator", &r.coordinator)?;
            Ok(Command::RegisterSession {
                coordinator: r.coordinator,
            })
        },
        move |_, answer| session_answer(&s, answer),
    )
    .await
}

async fn renew(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let s = state.clone();
    write(
        state,
        headers,
        "/v1/sessions/renew",
        body,
        |r: RenewSession| Ok(Command::RenewSession { session: r.session }),
        move |_, answer| session_answer(&s, answer),
    )
    .await
}

/// Largest acquire payload (a statement and its client context).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

pub use common::api::AcquireAnswer;

/// The wire name of the machine's reason.
pub(crate) fn wire_reason(reason: &RejectReason) -> common::api::RejectReason {
    use common::api::RejectReason as Wire;
    match reason {
        RejectReason::QueueFull => Wire::QueueFull,
        RejectReason::NoSuchGroup => Wire::NoSuchGroup,
        RejectReason::NotALeaf => Wire::NotALeaf,
        RejectReason::EventualGroup => Wire::EventualGroup,
        RejectReason::SessionExpired => Wire::SessionExpired,
        RejectReason::NoConfiguration => Wire::NoConfiguration,
        RejectReason::AlreadyFinished => Wire::AlreadyFinished,
        RejectReason::GroupMismatch => Wire::GroupMismatch,
        RejectReason::NotAdoptable => Wire::NotAdoptable,
    }
}

/// The answer to an acquire or adopt. A cluster that has not applied its
/// resource-group configuration yet is starting, not refusing: that is a
/// retryable 503, never a final "rejected" (nothing was recorded).
fn admission_decision(d: &Decision) -> Result<AcquireAnswer, ApiError> {
    match d {
        Decision::Rejected {
            reason: RejectReason::NoConfiguration,
        } => Err(ApiError::Unavailable(
            "no resource-group configuration is applied yet (the cluster is starting); retry"
                .into(),
        )),
        d => Ok(answer_of(d)),
    }
}

pub fn answer_of(d: &Decision) -> AcquireAnswer {
    match d {
        Decision::Admitted { fencing_token } => AcquireAnswer::admitted(*fencing_token),
        Decision::Queued { position } => AcquireAnswer::queued(*position),
        Decision::Rejected { reason } => AcquireAnswer::rejected(wire_reason(reason)),
    }
}

fn acquire_command(r: Acquire) -> Result<Command, ApiError> {
    check_name("query_id", &r.query_id)?;
    check_name("coordinator", &r.coordinator)?;
    check_name("group", &r.group)?;
    if r.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::BadRequest(format!(
            "payload: at most {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    Ok(Command::Acquire(crate::machine::AcquireRequest {
        query_id: r.query_id,
        group: r.group,
        coordinator: r.coordinator,
        session: r.session,
        priority: r.priority,
        payload: r.payload,
        max_queued_ms: r.max_queued_ms,
        template: r.template,
    }))
}

fn acquire_answer(answer: Answer) -> Result<AcquireAnswer, ApiError> {
    match answer {
        Answer::Admission(d) => admission_decision(&d),
        other => Err(unexpected(other)),
    }
}

async fn acquire(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    write(
        state,
        headers,
        "/v1/admission/acquire",
        body,
        acquire_command,
        |_, answer| acquire_answer(answer).map(|a| Json(a).into_response()),
    )
    .await
}

fn release_command(r: Release) -> Result<Command, ApiError> {
    check_name("query_id", &r.query_id)?;
    Ok(Command::Release {
        query_id: r.query_id,
    })
}

fn release_answer(answer: Answer) -> Result<api::ReleaseAnswer, ApiError> {
    match answer {
        Answer::Release(outcome) => {
            let outcome = match outcome {
                ReleaseOutcome::Released => api::ReleaseOutcome::Released,
                ReleaseOutcome::Cancelled => api::ReleaseOutcome::Cancelled,
                ReleaseOutcome::Unknown => api::ReleaseOutcome::Unknown,
            };
            Ok(api::ReleaseAnswer { outcome })
        }
        other => Err(unexpected(other)),
    }
}

async fn release(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    write(
        state,
        headers,
        "/v1/admission/release",
        body,
        release_command,
        |_, answer| release_answer(answer).map(|a| Json(a).into_response()),
    )
    .await
}

/// One operation of a batch, proposed as its single route would.
async fn batch_op(state: &AppState, op: AdmissionOp) -> Result<AdmissionOpAnswer, ApiError> {
    match op {
        AdmissionOp::Acquire(r) => {
            let (_, answer) = state.core.propose(acquire_command(r)?).await?;
            acquire_answer(answer).map(AdmissionOpAnswer::Acquire)
        }
        AdmissionOp::Release(r) => {
            let (_, answer) = state.core.propose(release_command(r)?).await?;
            release_answer(answer).map(AdmissionOpAnswer::Release)
        }
    }
}

/// The status and body an error answers on a single route.
async fn error_answer(e: ApiError) -> AdmissionOpAnswer {
    let response = e.into_response();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    AdmissionOpAnswer::Error { status, body }
}

/// Every operation is submitted at once, so they share the leader's next
/// entries (group commit) instead of one entry each. A node that is not
/// the leader relays the whole batch (its operations all answer
/// "not the leader"); operations are idempotent, so a batch relayed or
/// retried after a leader change decides each one as a retry would.
async fn batch(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let batch: AdmissionBatch = json_body(&body)?;
        if batch.ops.len() > MAX_BATCH_OPS {
            return Err(ApiError::BadRequest(format!(
                "ops: at most {MAX_BATCH_OPS} operations"
            )));
        }
        let results =
            futures_util::future::join_all(batch.ops.into_iter().map(|op| batch_op(&state, op)))
                .await;
        let mut answers = Vec::with_capacity(results.len());
        for result in results {
            answers.push(match result {
                Ok(answer) => answer,
                Err(e @ ApiError::NotLeader { .. }) => return Err(e),
                Err(e) => error_answer(e).await,
            });
        }
        Ok(Json(AdmissionBatchAnswer { answers }))
    }
    .await;
    or_forward(
        &state,
        &headers,
        Method::POST,
        "/v1/admission/batch",
        body.to_vec(),
        result,
    )
    .await
}

async fn adopt(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    write(
        state,
        headers,
        "/v1/admission/adopt",
        body,
        |r: Adopt| {
            check_name("query_id", &r.query_id)?;
            check_name("coordinator", &r.coordinator)?;
            Ok(Command::Adopt {
                query_id: r.query_id,
                coordinator: r.coordinator,
                session: r.session,
            })
        },
        |_, answer| match answer {
            Answer::Adopted(Some(d)) => Ok(Json(answer_of(&d)).into_response()),
            Answer::Adopted(None) => {
                Err(ApiError::NotFound("no such queued or running query".into()))
            }
            other => Err(unexpected(other)),
        },
    )
    .await
}

/// Largest running or queued count a report may give one group: far
/// above any real coordinator's, low enough that the view's sums over
/// every coordinator and ancestor stay meaningful.
pub const MAX_REPORTED_COUNT: u32 = 1_000_000;

/// A usage report is applied without the groups whose id is not a valid
/// name (a `${USER}` group of a user named with a TAB, or 300 characters
/// long): refusing the whole report would freeze the coordinator's last
/// one, and every other coordinator would over-admit by its stale counts.
/// The dropped ids are named in the answer, logged and counted.
async fn usage(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let (metrics, dropped) = (state.core.metrics().clone(), rejected.clone());
    write(
        state,
        headers,
        "/v1/usage",
        body,
        move |r: UsageReport| {
            check_name("coordinator", &r.coordinator)?;
            if r.groups.len() > 10_000 {
                return Err(ApiError::BadRequest("groups: at most 10000 entries".into()));
            }
            let (valid, invalid): (Vec<_>, Vec<_>) = r
                .groups
                .into_iter()
                .partition(|(id, _)| common::auth::check_name("groups", id).is_ok());
            for (id, u) in &valid {
                if u.running > MAX_REPORTED_COUNT || u.queued > MAX_REPORTED_COUNT {
                    return Err(ApiError::BadRequest(format!(
                        "groups.{id:?}: running and queued must be at most {MAX_REPORTED_COUNT}"
                    )));
                }
            }
            if !invalid.is_empty() {
                let ids: Vec<String> = invalid.into_iter().map(|(id, _)| id).collect();
                metrics.usage_groups_rejected(ids.len());
                tracing::warn!(
                    coordinator = %r.coordinator, seq = r.seq, count = ids.len(),
                    first = ?ids.first().map(|id| id.chars().take(64).collect::<String>()),
                    "usage report: dropped groups whose id is not a valid name"
                );
                *dropped.lock().unwrap_or_else(|p| p.into_inner()) = ids;
            }
            Ok(Command::Report {
                coordinator: r.coordinator,
                seq: r.seq,
                groups: valid
                    .into_iter()
                    .map(|(k, v)| (k, (v.running, v.queued)))
                    .collect(),
            })
        },
        move |_, answer| match answer {
            Answer::Reported { applied } => {
                let rejected_groups =
                    std::mem::take(&mut *rejected.lock().unwrap_or_else(|p| p.into_inner()));
                Ok(Json(UsageAnswer {
                    applied,
                    rejected_groups,
                })
                .into_response())
            }
            other => Err(unexpected(other)),
        },
    )
    .await
}
