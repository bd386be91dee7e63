//! Health, cluster view and metrics: open routes for load balancers,
//! scrapers and operators.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
pub use common::api::{ClusterView, Health, Member};
use common::api::{LeaderHint, Role};
use openraft::ServerState;

use super::AppState;
use crate::NodeId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/health/leader", get(health_leader))
        .route("/v1/cluster", get(cluster))
        .route("/metrics", get(metrics))
}

fn role(state: ServerState, is_voter: bool) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Candidate => Role::Candidate,
        ServerState::Follower if is_voter => Role::Follower,
        ServerState::Follower | ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

pub fn health_of(state: &AppState) -> Health {
    let m = state.core.raft().metrics().borrow().clone();
    let is_voter = m
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == m.id);
    let log_time = state.core.applied().read().state.log_time_ms;
    Health {
        node_id: state.core.id(),
        role: role(m.state, is_voter),
        leader_id: m.current_leader,
        leader_addr: state.core.leader().map(|(_, a)| a),
        term: m.current_term,
        last_log_index: m.last_log_index,
        last_applied: m.last_applied.map(|l| l.index),
        staleness_ms: (log_time > 0).then(|| state.core.clock().now_ms().saturating_sub(log_time)),
        initialized: m.last_log_index.is_some() || m.vote.leader_id().term > 0,
        incarnation: state.identity.incarnation(),
        leader_changes: state.core.metrics().leader_changes(),
    }
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(health_of(&state))
}

/// 200 on the leader once it can admit, 503 elsewhere naming the leader:
/// what a load balancer checks to send writes straight to the leader. A
/// leader started with a resource-group file is not ready until that
/// configuration (or a later one) is applied: until then every acquire
/// would answer 503.
async fn health_leader(State(state): State<AppState>) -> Response {
    let h = health_of(&state);
    let expects_config = state.core.admission().resource_groups.is_some();
    let config_applied = state.core.applied().read().state.admission.config.is_some();
    let status = if leader_ready(h.role, expects_config, config_applied) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = LeaderHint {
        node_id: Some(h.node_id),
        leader_id: h.leader_id,
        leader_addr: h.leader_addr,
        term: Some(h.term),
    };
    (status, Json(body)).into_response()
}

/// Whether `/v1/health/leader` says ready.
fn leader_ready(role: Role, expects_config: bool, config_applied: bool) -> bool {
    role == Role::Leader && (config_applied || !expects_config)
}

pub fn cluster_of(state: &AppState) -> ClusterView {
    let m = state.core.raft().metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let matched: BTreeMap<NodeId, Option<u64>> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
        .unwrap_or_default();
    let members = membership
        .nodes()
        .map(|(id, node)| Member {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
            matched: matched.get(id).copied().flatten(),
            incarnation: node.incarnation,
        })
        .collect();
    let (last_applied, digest) = state.core.applied().digest();
    ClusterView {
        cluster_id: state.identity.cluster_id(),
        served_by: state.core.id(),
        leader_id: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index,
        members,
        last_applied,
        snapshot_index: m.snapshot.map(|s| s.index),
        state_digest: digest,
    }
}

async fn cluster(State(state): State<AppState>) -> Json<ClusterView> {
    Json(cluster_of(&state))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let groups = {
        let applied = state.core.applied().read();
        let view = super::groups::view_of(&applied, state.core.id(), state.core.clock().now_ms());
        crate::metrics::groups::scrape(&applied.state.admission, &view)
    };
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        state.core.metrics().render(
            state.core.raft(),
            state.elections.last_leader_contact(),
            groups,
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_ready_only_once_its_configuration_is_applied() {
        assert!(!leader_ready(Role::Leader, true, false), "starting");
        assert!(leader_ready(Role::Leader, true, true));
        assert!(
            leader_ready(Role::Leader, false, false),
            "configured later by an operator"
        );
        assert!(!leader_ready(Role::Follower, true, true));
    }
}
