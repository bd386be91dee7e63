//! The coordinator: Trino's client protocol, resource-group selection and
//! per-group admission through the replicated RMs, dispatch to workers.
//!
//! # Layout
//! - [`protocol`]: the client protocol's wire types (`QueryResults`, stats,
//!   errors with Trino's names and codes) and request headers.
//! - [`statement`]: what a statement asks for (a query for a worker, `USE`,
//!   `SELECT 1`, a simulated task), or why it cannot run.
//! - [`query`]: one driver per query: selection, admission, execution,
//!   release; cancellation and abandonment.
//! - [`session`]: the coordinator's link to its session, which
//!   `common::session::SessionKeeper` keeps (calls to the RMs go through
//!   the one `common::rm::RmClient`).
//! - [`events`]: promotions and revocations from the RMs' watch.
//! - [`eventual`]: eventual-mode admission on the aggregated view
//!   (staleness bound, freshness gate, usage reports).
//! - [`groups`]: the resource-group configuration in force, followed from
//!   the RMs' log; [`group_state`]: `GET /v1/resourceGroupState/{id}`.
//! - [`user_groups`]: users' groups for `userGroup` selectors (Trino's
//!   file group provider format).
//! - [`dispatch`]: worker choice, task control, result pages.
//! - [`system`]: the rows of `system.runtime.nodes` and `.queries`.
//! - [`authn`]: client authentication as Trino does it (a password file,
//!   HTTPS only; impersonation rules).
//! - [`http`]: the client protocol's endpoints; [`config`], [`node`].

pub mod authn;
pub mod config;
pub mod decisions;
pub mod dispatch;
pub mod events;
pub mod eventual;
pub mod group_state;
pub mod groups;
pub mod http;
pub mod node;
pub mod protocol;
pub mod query;
pub mod session;
pub mod statement;
pub mod system;
pub mod ui;
pub mod user_groups;
