//! The HTTP server: one router per concern, merged in [`router`].
//!
//! | module     | routes                                   | auth   |
//! |------------|------------------------------------------|--------|
//! | [`health`] | `/v1/health`, `/v1/health/leader`, `/v1/cluster`, `/metrics` | open (load balancers, scrapers) |
//! | [`raft`]   | `/raft/append`, `/raft/vote`, `/raft/snapshot` (bincode) | secret |
//! | [`admin`]  | `/v1/admin/*`: membership, step-down      | secret |
//! | [`canary`] | `/v1/canary`: durable test writes         | secret |
//! | [`admission`] | `/v1/sessions*`, `/v1/admission/*`, `/v1/usage`: coordinator writes | secret |
//! | [`groups`] | `/v1/resource-groups` (view), `/v1/watch` (events) | secret |
//! | [`discovery`] | `/v1/announce`, `/v1/heartbeat/worker`, `/v1/discovery/nodes`, `/v1/memory`: soft state | secret |
//!
//! Handlers extract, call the node, and map the result; [`error::ApiError`]
//! owns every status code, and the error answers of the admission and
//! groups routes are counted in one middleware ([`error::count_admission_errors`]). Writes that reach a follower are forwarded to the
//! leader (one hop, marked with `x-rm-forwarded`).

pub mod admin;
pub mod admission;
pub mod canary;
pub mod discovery;
pub mod error;
pub mod forward;
pub mod groups;
pub mod health;
pub mod proposer;
pub mod raft;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use common::auth::{SecretGuard, SharedSecret};
use common::clock::SharedClock;
use common::http::HttpClient;

use crate::config::Timings;
use crate::machine::{Command, Response};
use crate::metrics::Metrics;
use crate::store::state_machine::AppliedReader;
use crate::store::ClusterIdentity;
use crate::{NodeId, Raft};
pub use error::ApiError;

/// Largest body of a Raft RPC: 64 entries of at most `API_BODY_LIMIT` each,
/// or one 1 MiB snapshot chunk, with room for framing.
pub const RAFT_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Largest body of any other request. Keeps every log entry far below
/// sled's unsynced-blob threshold (see `store::durable`).
pub const API_BODY_LIMIT: usize = 256 * 1024;

/// How long a proposal may wait to be committed before the client is told
/// the outcome is unknown (it may still commit later).
pub const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub id: NodeId,
    pub raft: Raft,
    pub applied: AppliedReader,
    pub identity: ClusterIdentity,
    pub http: HttpClient,
    pub metrics: Arc<Metrics>,
    /// Leader contact and vote answers, for the election timer.
    pub elections: Arc<crate::election::Signals>,
    pub secret: Option<SharedSecret>,
    pub clock: SharedClock,
    pub timings: Timings,
    /// Set while this leader hands leadership over: new writes (and ticks)
    /// are refused so they cannot renew the followers' leader lease.
    pub transferring: Arc<AtomicBool>,
    /// Term and last log index when this process started; see
    /// [`AppState::linearizable_barrier`].
    pub startup_log: StartupLog,
    /// What this node proposes for admission (the log holds what is in force).
    pub admission: Arc<crate::config::AdmissionConfig>,
    /// Announcements and worker heartbeats (not replicated).
    pub soft: Arc<crate::soft::SoftState>,
    /// The memory killer's settings and this node's view of the episode.
    pub killer: Arc<crate::killer::Killer>,
    /// Stamps log time for this node's proposals.
    pub log_clock: Arc<crate::log_clock::LogClock>,
    /// The group-commit queue of batchable proposals.
    pub proposals: proposer::Proposals,
}

/// What the log held when this process started.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartupLog {
    pub term: u64,
    pub last_log_index: Option<u64>,
}

impl AppState {
    /// Proposes `command` through Raft on this node (which must be the
    /// leader) and waits until it is applied. Batchable commands share an
    /// entry with whatever else is being proposed (see [`proposer`]).
    pub async fn propose(&self, command: Command) -> Result<(u64, Response), ApiError> {
        if self.transferring.load(Ordering::Acquire) {
            return Err(ApiError::Unavailable(
                "leadership transfer in progress; retry shortly".into(),
            ));
        }
        if command.batchable() {
            return self.proposals.submit(command).await;
        }
        self.propose_entry(command).await
    }

    /// Proposes `command` as one log entry of its own, now.
    async fn propose_entry(&self, command: Command) -> Result<(u64, Response), ApiError> {
        let request = crate::machine::Request {
            leader_time_ms: self.log_clock.stamp(
                self.raft.metrics().borrow().current_term,
                self.applied.read().state.log_time_ms,
                self.clock.now_ms(),
            ),
            command,
        };
        let start = std::time::Instant::now();
        let written = tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(request))
            .await
            .map_err(|_| {
                ApiError::Timeout(format!(
                    "not committed within {} s (no quorum?); the write may still commit",
                    COMMIT_TIMEOUT.as_secs()
                ))
            })??;
        self.metrics.observe_commit(start.elapsed());
        Ok((written.log_id.index, written.data))
    }

    /// Returns once this node's applied state reflects every write that
    /// was acknowledged before the call began (a read index, confirmed with
    /// a quorum); fails with `NotLeader` elsewhere.
    ///
    /// openraft's `ensure_linearizable` is not enough on its own after a
    /// restart. A leader whose vote survived the restart is restored as
    /// leader of the same term without an election and without a new noop
    /// entry. Its read index is then `max(first entry of its term, persisted
    /// committed)`, and the persisted committed id lags (it is not synced).
    /// So a read could miss writes that were committed and acknowledged
    /// just before the crash. A restored leader (same term as at startup)
    /// therefore also waits until it has applied everything its log held at
    /// startup. It will commit those entries, because a leader never
    /// truncates its own log.
    pub async fn linearizable_barrier(&self) -> Result<(), ApiError> {
        use openraft::error::{CheckIsLeaderError, RaftError};
        self.raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ApiError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            other => ApiError::Unavailable(format!("cannot confirm leadership: {other}")),
        })?;
        let term = self.raft.metrics().borrow().current_term;
        if let (true, Some(floor)) = (
            term == self.startup_log.term,
            self.startup_log.last_log_index,
        ) {
            self.raft
                .wait(Some(COMMIT_TIMEOUT))
                .applied_index_at_least(Some(floor), "restored leader catches up")
                .await
                .map_err(|e| {
                    ApiError::Unavailable(format!(
                        "restored leader has not applied its log yet: {e}"
                    ))
                })?;
        }
        Ok(())
    }

    /// The leader's id and address as this node knows them.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }
}

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(raft::router().layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT)))
        .merge(
            admin::router()
                .merge(canary::router())
                .merge(admission::router().merge(groups::router()).layer(
                    axum::middleware::from_fn_with_state(
                        state.clone(),
                        error::count_admission_errors,
                    ),
                ))
                .merge(discovery::router())
                .layer(DefaultBodyLimit::max(API_BODY_LIMIT)),
        )
        .layer(axum::middleware::from_fn_with_state(
            {
                let metrics = state.metrics.clone();
                SecretGuard::new(state.secret.clone()).on_refusal(move || metrics.auth_failed())
            },
            common::auth::require_secret,
        ));
    Router::new()
        .merge(health::router())
        .merge(protected)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}
