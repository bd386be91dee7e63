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
//! Handlers extract, call the node core ([`crate::core::Core`], held in
//! [`AppState`]), and map the result: [`error::ApiError`] owns every status
//! code and maps the core's errors in one `From` impl, and the error answers
//! of the admission and groups routes are counted in one middleware
//! ([`error::count_admission_errors`]). Writes that reach a follower are
//! forwarded to the leader ([`forward`]: one hop, marked with
//! `x-rm-forwarded`), an HTTP matter the core knows nothing of.

pub mod admin;
pub mod admission;
pub mod canary;
pub mod coordinators;
pub mod discovery;
pub mod error;
pub mod forward;
pub mod groups;
pub mod health;
pub mod raft;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use common::auth::{RoleGuard, SecretGuard, SharedSecret};
use common::http::HttpClient;

use crate::core::Core;
use crate::store::ClusterIdentity;
pub use error::ApiError;

/// Largest body of a Raft RPC: 64 entries of at most `API_BODY_LIMIT` each,
/// or one 1 MiB snapshot chunk, with room for framing.
pub const RAFT_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Largest body of any other request: at most one log entry's worth
/// ([`crate::core::MAX_ENTRY_BYTES`]).
pub const API_BODY_LIMIT: usize = crate::core::MAX_ENTRY_BYTES;

/// What every handler can reach: the node core, and what only the HTTP
/// side needs.
/// What every handler gets: a handle, cloned per request (axum clones the
/// state for each extractor and middleware), so one reference count
/// instead of a copy of every field (the secret was a `String`).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub core: Core,
    pub identity: ClusterIdentity,
    /// For relaying requests to the leader.
    pub http: HttpClient,
    /// Leader contact and vote answers, for the election timer.
    pub elections: Arc<crate::election::Signals>,
    pub secret: Option<SharedSecret>,
    /// Client certificates are verified: Raft RPCs are taken only from
    /// `raft-rm` certificates, admin calls from `raft-rm` and `admin` ones.
    pub mutual_tls: bool,
    /// Announcements and worker heartbeats (not replicated).
    pub soft: Arc<crate::soft::SoftState>,
    /// The memory killer's settings and this node's view of the episode.
    pub killer: Arc<crate::killer::Killer>,
}

pub fn router(state: AppState) -> Router {
    let role = |roles, reads_open| {
        axum::middleware::from_fn_with_state(
            RoleGuard {
                roles,
                enforced: state.mutual_tls,
                reads_open,
            },
            common::auth::require_role,
        )
    };
    let protected = Router::new()
        .merge(
            raft::router()
                .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT))
                .layer(role(&["raft-rm"], false)),
        )
        .merge(
            admin::router()
                // Coordinators and workers read the configuration in force.
                .layer(role(&["raft-rm", "admin"], true))
                .merge(canary::router())
                .merge(admission::router().merge(groups::router()).layer(
                    axum::middleware::from_fn_with_state(
                        state.clone(),
                        error::count_admission_errors,
                    ),
                ))
                .merge(discovery::router())
                .merge(coordinators::router())
                .layer(DefaultBodyLimit::max(API_BODY_LIMIT)),
        )
        .layer(axum::middleware::from_fn_with_state(
            {
                let metrics = state.core.metrics().clone();
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
