//! Membership changes, leadership hand-over and snapshots. Every route but
//! `snapshot` and `elect` runs on the leader; a follower relays the request
//! there.
//!
//! - `POST /v1/admin/add-learner {"node_id","addr"}`: add a non-voting member
//!   and wait until it has caught up. The leader asks the node for its
//!   incarnation first (`GET /v1/health`) and records it in the membership,
//!   so the node must be running; a member already recorded with another
//!   incarnation (its disk was lost) must be removed first (`raft-rm admin
//!   replace` does both).
//! - `POST /v1/admin/promote {"node_id"}`: make a learner a voter.
//! - `POST /v1/admin/remove {"node_id"}`: remove a voter or learner. Removing
//!   the leader hands leadership over first (see `remove_self`).
//! - `POST /v1/admin/step-down {"to": optional id}`: hand leadership to an
//!   up-to-date follower (see [`crate::core::Core::step_down`]).
//! - `POST /v1/admin/snapshot {"timeout_ms": optional}`: build a snapshot
//!   on the node called, now, and wait for it (see
//!   [`crate::core::Core::snapshot_now`]).
//! - `POST /v1/admin/elect`: internal; the old leader asks the chosen
//!   follower to start an election.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use common::api::{
    AddLearner, AdmissionSettings, ConfigApplied, ConfigInForce, MembershipChanged, NodeRef,
    SnapshotNow, StepDown,
};
use openraft::ChangeMembers;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::error::json_body;
use super::forward::{or_forward_to_completion, FORWARDED_HEADER};
use super::{ApiError, AppState};
use crate::core::transfer::ELECT_PATH;
use crate::NodeId;
pub use common::api::{SnapshotReport, StepDownReport};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/add-learner", post(add_learner))
        .route("/v1/admin/promote", post(promote))
        .route("/v1/admin/remove", post(remove))
        .route("/v1/admin/step-down", post(step_down_route))
        .route(ELECT_PATH, post(elect))
        .route("/v1/admin/snapshot", post(snapshot_route))
        .route("/v1/admin/config", post(replace_config).get(read_config))
}

/// The scaffolding every admin route shares: decode the JSON body (an empty
/// body counts as `{}`), run `op` if this node leads, and otherwise relay
/// the request to the leader.
async fn on_leader<Req, Resp, Fut>(
    state: AppState,
    headers: HeaderMap,
    path: &'static str,
    body: Bytes,
    op: impl FnOnce(AppState, Req) -> Fut,
) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, ApiError>>,
{
    let result = async {
        let req: Req = json_body(if body.is_empty() { b"{}" } else { &body })?;
        state.core.require_leader()?;
        op(state.clone(), req).await.map(Json)
    }
    .await;
    or_forward_to_completion(&state, &headers, Method::POST, path, body.to_vec(), result).await
}

async fn add_learner(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    on_leader(
        state,
        headers,
        "/v1/admin/add-learner",
        body,
        |state, req: AddLearner| async move {
            crate::config::parse_peers(&format!("{}={}", req.node_id, req.addr))
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let incarnation = incarnation_of(&state, req.node_id, &req.addr).await?;
            let node = crate::Node::with_incarnation(req.addr, incarnation);
            let log_index = state.core.add_learner(req.node_id, node).await?;
            Ok(MembershipChanged {
                node_id: req.node_id,
                log_index: Some(log_index),
                already_voter: false,
            })
        },
    )
    .await
}

/// The incarnation of node `id` at `addr`, as it reports it; refuses a node
/// that is another id, and one that would replace a member recorded with
/// another incarnation (openraft would keep the old record).
async fn incarnation_of(state: &AppState, id: NodeId, addr: &str) -> Result<u64, ApiError> {
    let health: crate::http::health::Health = state
        .http
        .get_json(&state.http.url(addr, "/v1/health"), 3)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "cannot ask node {id} at {addr} for its incarnation (start it first): {e}"
            ))
        })?;
    if health.node_id != id {
        return Err(ApiError::BadRequest(format!(
            "the node at {addr} is node {}, not node {id}",
            health.node_id
        )));
    }
    if let Some(recorded) = state
        .core
        .membership()
        .get_node(&id)
        .and_then(|n| n.recorded_incarnation())
    {
        if recorded != health.incarnation {
            return Err(ApiError::Conflict(format!(
                "node {id} is a member as incarnation {recorded:016x}, but the node at {addr} \
                 is incarnation {:016x} (its disk was lost or replaced): remove it first, \
                 or run `raft-rm admin replace --node-id {id} --addr {addr}`",
                health.incarnation
            )));
        }
    }
    Ok(health.incarnation)
}

async fn promote(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    on_leader(
        state,
        headers,
        "/v1/admin/promote",
        body,
        |state, req: NodeRef| async move {
            let membership = state.core.membership();
            if membership.get_node(&req.node_id).is_none() {
                return Err(ApiError::BadRequest(format!(
                    "node {} is not a member; add it as a learner first",
                    req.node_id
                )));
            }
            if membership.voter_ids().any(|v| v == req.node_id) {
                return Ok(MembershipChanged {
                    node_id: req.node_id,
                    log_index: None,
                    already_voter: true,
                });
            }
            let change = ChangeMembers::AddVoterIds(BTreeSet::from([req.node_id]));
            let log_index = state.core.change_membership(change).await?;
            Ok(MembershipChanged {
                node_id: req.node_id,
                log_index: Some(log_index),
                already_voter: false,
            })
        },
    )
    .await
}

async fn remove(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    on_leader(
        state,
        headers,
        "/v1/admin/remove",
        body,
        |state, req: NodeRef| async move {
            let membership = state.core.membership();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            if req.node_id == state.core.id() && voters.len() > 1 {
                return remove_self(&state, req).await;
            }
            let target = BTreeSet::from([req.node_id]);
            let change = if voters.contains(&req.node_id) {
                if voters.len() == 1 {
                    return Err(ApiError::BadRequest("cannot remove the last voter".into()));
                }
                ChangeMembers::RemoveVoters(target)
            } else if membership.get_node(&req.node_id).is_some() {
                ChangeMembers::RemoveNodes(target)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "node {} is not a member",
                    req.node_id
                )));
            };
            let log_index = state.core.change_membership(change).await?;
            Ok(MembershipChanged {
                node_id: req.node_id,
                log_index: Some(log_index),
                already_voter: false,
            })
        },
    )
    .await
}

/// Removes the leader itself: hand leadership to the most up-to-date
/// follower, then have the new leader do the removal.
///
/// openraft 0.9 lets a leader remove itself, but the leader then runs on
/// outside its own membership until that entry commits, and a second
/// membership change arriving in that window trips openraft's internal
/// consistency checks. A leader that is not being removed never enters that
/// state, and the hand-over costs one step-down (a few hundred ms).
async fn remove_self(state: &AppState, req: NodeRef) -> Result<MembershipChanged, ApiError> {
    let report = state.core.step_down(None).await?;
    let leader = report.new_leader.ok_or_else(|| {
        ApiError::Unavailable("stepped down, but no new leader is known yet; retry".into())
    })?;
    let addr = state
        .core
        .address_of(leader)
        .ok_or_else(|| ApiError::Internal(format!("new leader {leader} has no address")))?;
    let body = serde_json::to_vec(&req).map_err(|e| ApiError::Internal(e.to_string()))?;
    let me = state.core.id().to_string();
    let answer = state
        .http
        .post_bytes(
            &state.http.url(&addr, "/v1/admin/remove"),
            common::http::CONTENT_JSON,
            body,
            None,
            &[(FORWARDED_HEADER, me.as_str())],
        )
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "handed leadership to node {leader}, but it did not remove node {}: {e}",
                req.node_id
            ))
        })?;
    serde_json::from_slice(&answer).map_err(|e| ApiError::Internal(e.to_string()))
}

async fn step_down_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    on_leader(
        state,
        headers,
        "/v1/admin/step-down",
        body,
        |state, req: StepDown| async move { Ok(state.core.step_down(req.to).await?) },
    )
    .await
}

/// Replaces the resource-group configuration with the body (a Trino
/// resource-groups.json). Invalid files get 400 listing every problem with
/// its JSON path; accepted ones answer the new version and the warnings.
async fn replace_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
        let rg = common::resource_groups::parse(text, &state.core.admission().default_consistency)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        state.core.require_leader()?;
        let (version, settings) = {
            let applied = state.core.applied().read();
            let adm = &applied.state.admission;
            (
                adm.config.as_ref().map_or(1, |c| c.version + 1),
                adm.settings.clone(),
            )
        };
        let command = crate::machine::Command::SetConfig(crate::machine::GroupsConfig {
            version,
            roots: rg.roots,
            source: text.to_string(),
            settings,
        });
        match state.core.propose(command).await?.1 {
            crate::machine::Response::ConfigApplied { version } => Ok(Json(ConfigApplied {
                version,
                warnings: rg.warnings,
            })),
            crate::machine::Response::ConfigRejected { reason } => Err(ApiError::Conflict(reason)),
            other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
        }
    }
    .await;
    or_forward_to_completion(
        &state,
        &headers,
        Method::POST,
        "/v1/admin/config",
        body.to_vec(),
        result,
    )
    .await
}

/// The configuration in force (linearizable read).
async fn read_config(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        state.core.linearizable_barrier().await?;
        let applied = state.core.applied().read();
        let adm = &applied.state.admission;
        let config = adm
            .config
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("no resource-group configuration yet".into()))?;
        Ok::<_, ApiError>(Json(ConfigInForce {
            version: config.version,
            roots: config.roots.clone(),
            source: config.source.clone(),
            settings: AdmissionSettings {
                session_lease_ms: adm.settings.session_lease_ms,
                queue_timeout_ms: adm.settings.queue_timeout_ms,
                orphan_timeout_ms: adm.settings.orphan_timeout_ms,
            },
        }))
    }
    .await;
    or_forward_to_completion(
        &state,
        &headers,
        Method::GET,
        "/v1/admin/config",
        Vec::new(),
        result,
    )
    .await
}

/// How long `POST /v1/admin/snapshot` waits for the snapshot unless told,
/// and the most it may be told: a build copies and encodes the whole state,
/// seconds at most for the state sizes we measured (docs/benchmarks.md).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);
const SNAPSHOT_WAIT_MAX: Duration = Duration::from_secs(600);

async fn snapshot_route(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<SnapshotReport>, ApiError> {
    let req: SnapshotNow = json_body(if body.is_empty() { b"{}" } else { &body })?;
    let wait = req.timeout_ms.map_or(SNAPSHOT_WAIT, Duration::from_millis);
    if wait.is_zero() || wait > SNAPSHOT_WAIT_MAX {
        return Err(ApiError::BadRequest(format!(
            "timeout_ms must be between 1 and {}",
            SNAPSHOT_WAIT_MAX.as_millis()
        )));
    }
    Ok(Json(state.core.snapshot_now(wait).await?))
}

async fn elect(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.core.campaign().await?;
    Ok(Json(
        json!({"node_id": state.core.id(), "election": "started"}),
    ))
}
