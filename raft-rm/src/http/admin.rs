//! Membership changes, leadership hand-over and snapshots. Every route but
//! `snapshot` and `elect` runs on the leader; a follower relays the request
//! there.
//!
//! - `POST /v1/admin/add-learner {"node_id","addr"}`: add a non-voting member
//!   and wait until it has caught up.
//! - `POST /v1/admin/promote {"node_id"}`: make a learner a voter.
//! - `POST /v1/admin/remove {"node_id"}`: remove a voter or learner. Removing
//!   the leader hands leadership over first (see [`remove_self`]).
//! - `POST /v1/admin/step-down {"to": optional id}`: hand leadership to an
//!   up-to-date follower (see [`step_down`]).
//! - `POST /v1/admin/snapshot {"timeout_ms": optional}`: build a snapshot
//!   on the node called, now, and wait for it (see [`snapshot_now`]).
//! - `POST /v1/admin/elect`: internal; the old leader asks the chosen
//!   follower to start an election.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use openraft::ChangeMembers;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::json_body;
use super::forward::{or_forward_to_completion, FORWARDED_HEADER};
use super::{ApiError, AppState};
use crate::{Node, NodeId};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/add-learner", post(add_learner))
        .route("/v1/admin/promote", post(promote))
        .route("/v1/admin/remove", post(remove))
        .route("/v1/admin/step-down", post(step_down_route))
        .route("/v1/admin/elect", post(elect))
        .route("/v1/admin/snapshot", post(snapshot_route))
        .route("/v1/admin/config", post(replace_config).get(read_config))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddLearner {
    pub node_id: NodeId,
    pub addr: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRef {
    pub node_id: NodeId,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDown {
    #[serde(default)]
    pub to: Option<NodeId>,
}

fn require_leader(state: &AppState) -> Result<(), ApiError> {
    let leader = state.raft.metrics().borrow().current_leader;
    if leader == Some(state.id) {
        return Ok(());
    }
    Err(ApiError::NotLeader {
        leader_id: leader,
        leader_addr: state.leader().map(|(_, a)| a),
    })
}

/// The membership this node currently knows.
fn membership(state: &AppState) -> openraft::Membership<NodeId, Node> {
    state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone()
}

/// The scaffolding every admin route shares: decode the JSON body (an empty
/// body counts as `{}`), run `op` if this node leads, and otherwise relay
/// the request to the leader.
async fn on_leader<Req, Fut>(
    state: AppState,
    headers: HeaderMap,
    path: &'static str,
    body: Bytes,
    op: impl FnOnce(AppState, Req) -> Fut,
) -> Response
where
    Req: DeserializeOwned,
    Fut: Future<Output = Result<Value, ApiError>>,
{
    let result = async {
        let req: Req = json_body(if body.is_empty() { b"{}" } else { &body })?;
        require_leader(&state)?;
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
            let written = state
                .raft
                .add_learner(req.node_id, Node::new(req.addr), true)
                .await?;
            Ok(json!({"log_index": written.log_id.index, "node_id": req.node_id}))
        },
    )
    .await
}

async fn promote(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    on_leader(
        state,
        headers,
        "/v1/admin/promote",
        body,
        |state, req: NodeRef| async move {
            let membership = membership(&state);
            if membership.get_node(&req.node_id).is_none() {
                return Err(ApiError::BadRequest(format!(
                    "node {} is not a member; add it as a learner first",
                    req.node_id
                )));
            }
            if membership.voter_ids().any(|v| v == req.node_id) {
                return Ok(json!({"node_id": req.node_id, "already_voter": true}));
            }
            let change = ChangeMembers::AddVoterIds(BTreeSet::from([req.node_id]));
            let written = state.raft.change_membership(change, false).await?;
            Ok(json!({"log_index": written.log_id.index, "node_id": req.node_id}))
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
            let membership = membership(&state);
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            if req.node_id == state.id && voters.len() > 1 {
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
            let written = state.raft.change_membership(change, false).await?;
            Ok(json!({"log_index": written.log_id.index, "node_id": req.node_id}))
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
async fn remove_self(state: &AppState, req: NodeRef) -> Result<Value, ApiError> {
    let report = step_down(state, None).await?;
    let leader = report.new_leader.ok_or_else(|| {
        ApiError::Unavailable("stepped down, but no new leader is known yet; retry".into())
    })?;
    let addr = membership(state)
        .get_node(&leader)
        .map(|n| n.addr.clone())
        .ok_or_else(|| ApiError::Internal(format!("new leader {leader} has no address")))?;
    let body = serde_json::to_vec(&req).map_err(|e| ApiError::Internal(e.to_string()))?;
    let me = state.id.to_string();
    let answer = state
        .http
        .post_bytes(
            &format!("http://{addr}/v1/admin/remove"),
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
        |state, req: StepDown| async move {
            let report = step_down(&state, req.to).await?;
            serde_json::to_value(report).map_err(|e| ApiError::Internal(e.to_string()))
        },
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
        let rg = common::resource_groups::parse(text, &state.admission.default_consistency)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        require_leader(&state)?;
        let (version, settings) = {
            let applied = state.applied.read();
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
        match state.propose(command).await?.1 {
            crate::machine::Response::ConfigApplied { version } => {
                Ok(Json(json!({"version": version, "warnings": rg.warnings})))
            }
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
        state.linearizable_barrier().await?;
        let applied = state.applied.read();
        let adm = &applied.state.admission;
        let config = adm
            .config
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("no resource-group configuration yet".into()))?;
        Ok::<_, ApiError>(Json(json!({
            "version": config.version,
            "source": config.source,
            "settings": {
                "session_lease_ms": adm.settings.session_lease_ms,
                "queue_timeout_ms": adm.settings.queue_timeout_ms,
            },
        })))
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

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotNow {
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The answer of `POST /v1/admin/snapshot`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotReport {
    pub node_id: NodeId,
    /// The applied index when the call arrived; the snapshot covers it.
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// Time of the build (copy, encode, durable write) and size of the
    /// snapshot, as in `raft_rm_snapshot_build_seconds` and
    /// `raft_rm_snapshot_bytes`.
    pub build_ms: f64,
    pub bytes: u64,
    /// From the call to the snapshot in place (a build already running
    /// when the call arrived is waited for first).
    pub elapsed_ms: u64,
}

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
    Ok(Json(snapshot_now(&state, wait).await?))
}

/// Builds a snapshot on this node (leader or not) and waits until one
/// built after the call covers the index applied when it arrived.
///
/// openraft ignores a trigger while a build is running, and that build may
/// stop short of the index we want, so every build that finishes short is
/// followed by another trigger. A snapshot installed from the leader may
/// cover the index too, but it is not a build of ours: we wait for ours,
/// so the report's build time is a build of at least this state.
pub async fn snapshot_now(state: &AppState, wait: Duration) -> Result<SnapshotReport, ApiError> {
    let start = Instant::now();
    let deadline = start + wait;
    let mut reports = state.raft.metrics();
    let (target, mut last_seen) = {
        let m = reports.borrow_and_update();
        (m.last_applied.map(|l| l.index), m.snapshot)
    };
    let builds_before = state.metrics.snapshot.builds();
    let stopped = |e: &dyn std::fmt::Display| ApiError::Internal(format!("raft stopped: {e}"));
    let trigger = || async {
        state
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| stopped(&e))
    };
    trigger().await?;
    loop {
        let snapshot = reports.borrow_and_update().snapshot;
        let index = snapshot.map(|s| s.index);
        if index >= target && state.metrics.snapshot.builds() > builds_before {
            let (build, bytes) = state.metrics.snapshot.last_build();
            return Ok(SnapshotReport {
                node_id: state.id,
                applied_index: target,
                snapshot_index: index,
                build_ms: build.as_secs_f64() * 1000.0,
                bytes,
                elapsed_ms: start.elapsed().as_millis() as u64,
            });
        }
        if snapshot != last_seen {
            // A build (or install) finished short of the target, or was
            // not ours: ask again; a no-op if ours is still running.
            last_seen = snapshot;
            trigger().await?;
        }
        match tokio::time::timeout_at(deadline.into(), reports.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(stopped(&e)),
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "no snapshot covering index {target:?} within {} ms (latest covers {index:?}); \
                     the build may still finish",
                    wait.as_millis()
                )))
            }
        }
    }
}

async fn elect(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .raft
        .trigger()
        .elect()
        .await
        .map_err(|e| ApiError::Internal(format!("raft stopped: {e}")))?;
    Ok(Json(json!({"node_id": state.id, "election": "started"})))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StepDownReport {
    pub from: NodeId,
    pub to: NodeId,
    pub new_leader: Option<NodeId>,
    pub elapsed_ms: u64,
}

/// Hands leadership to `to`, or to the most up-to-date follower.
///
/// openraft 0.9 has no leadership transfer, and followers refuse votes while
/// they hold a live leader lease (`election_timeout_max` since they last
/// heard from the leader). So: stop heartbeats and refuse writes and ticks
/// here, let the leases lapse, wait until the target has every entry, then
/// ask the target to campaign. The old leader grants the vote (its log is no
/// longer than the target's) and steps down on seeing the higher term.
pub async fn step_down(state: &AppState, to: Option<NodeId>) -> Result<StepDownReport, ApiError> {
    require_leader(state)?;
    let voters: BTreeSet<NodeId> = membership(state).voter_ids().collect();
    let target = match to {
        Some(t) if t == state.id => {
            return Err(ApiError::BadRequest("cannot step down to itself".into()))
        }
        Some(t) if !voters.contains(&t) => {
            return Err(ApiError::BadRequest(format!("node {t} is not a voter")))
        }
        Some(t) => t,
        None => most_caught_up_follower(state, &voters)
            .ok_or_else(|| ApiError::Unavailable("no follower to hand leadership to".into()))?,
    };
    let Some(guard) = TransferGuard::take(state) else {
        return Err(ApiError::Conflict(
            "a step-down is already in progress".into(),
        ));
    };
    let start = Instant::now();
    // The transfer runs as a task of its own, holding the guard: a caller
    // that goes away (a client hanging up drops this future) must not
    // leave heartbeats off and writes refused.
    let task = {
        let state = state.clone();
        tokio::spawn(async move {
            let _guard = guard;
            hand_over(&state, target).await
        })
    };
    let new_leader = task
        .await
        .map_err(|e| ApiError::Internal(format!("the step-down task failed: {e}")))??;
    tracing::info!(from = state.id, to = target, ?new_leader, "stepped down");
    Ok(StepDownReport {
        from: state.id,
        to: target,
        new_leader,
        elapsed_ms: start.elapsed().as_millis() as u64,
    })
}

/// Holds a leadership transfer: while it lives this node sends no
/// heartbeats and refuses writes and ticks; dropping it (the transfer
/// finished, failed, or its task was cancelled) turns both back on.
struct TransferGuard {
    state: AppState,
}

impl TransferGuard {
    /// `None` when a transfer is already running.
    fn take(state: &AppState) -> Option<TransferGuard> {
        state
            .transferring
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        state.raft.runtime_config().heartbeat(false);
        Some(TransferGuard {
            state: state.clone(),
        })
    }
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.state.raft.runtime_config().heartbeat(true);
        self.state.transferring.store(false, Ordering::Release);
    }
}

fn most_caught_up_follower(state: &AppState, voters: &BTreeSet<NodeId>) -> Option<NodeId> {
    let m = state.raft.metrics().borrow().clone();
    let replication = m.replication?;
    voters
        .iter()
        .filter(|v| **v != state.id)
        .max_by_key(|v| {
            (
                replication.get(v).copied().flatten().map(|l| l.index),
                std::cmp::Reverse(**v),
            )
        })
        .copied()
}

async fn hand_over(state: &AppState, target: NodeId) -> Result<Option<NodeId>, ApiError> {
    let lease = state.timings.election_max + state.timings.heartbeat;
    let deadline = Instant::now() + lease + state.timings.election_max * 4;
    tokio::time::sleep(lease).await;
    // The target must hold every entry, or the others will not vote for it.
    loop {
        let m = state.raft.metrics().borrow().clone();
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&target).copied().flatten())
            .map(|l| l.index);
        if m.current_leader != Some(state.id) {
            return Ok(m.current_leader);
        }
        if matched.is_some() && matched == m.last_log_index {
            break;
        }
        if Instant::now() > deadline {
            return Err(ApiError::Unavailable(format!(
                "node {target} did not catch up (matched {matched:?}, last log {:?})",
                m.last_log_index
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = membership(state)
        .get_node(&target)
        .map(|n| n.addr.clone())
        .ok_or_else(|| ApiError::BadRequest(format!("node {target} has no address")))?;
    state
        .http
        .post_bytes(
            &format!("http://{addr}/v1/admin/elect"),
            common::http::CONTENT_JSON,
            Vec::new(),
            None,
            &[],
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot ask node {target} to campaign: {e}")))?;
    let mut metrics = state.raft.metrics();
    let waited = tokio::time::timeout_at(deadline.into(), async {
        loop {
            let leader = metrics.borrow().current_leader;
            if leader.is_some() && leader != Some(state.id) {
                return leader;
            }
            if metrics.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    match waited {
        Ok(leader) => Ok(leader),
        Err(_) => Err(ApiError::Unavailable(format!(
            "node {target} did not take over within {} ms",
            state.timings.election_max.as_millis() * 4
        ))),
    }
}
