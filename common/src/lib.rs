//! Types and plumbing shared by every process of the project.
//!
//! # Layout
//! - [`codec`]: the one binary codec (bincode 2 over serde) for wire bodies and
//!   on-disk records, with a size limit so a hostile length prefix cannot
//!   allocate unbounded memory.
//! - [`api`]: every request and answer that crosses a process boundary, as
//!   types shared by the server and its clients (statuses, reasons, roles,
//!   modes are enums): admission, health and views, memory, worker tasks.
//! - [`rm`]: the one client of the RM group, with the one failover, retry
//!   and leader-hint policy, typed per route.
//! - [`service`]: the one start/stop scaffolding of the three services
//!   (runtime and exit status, listener, SIGINT/SIGTERM, a supervisor of
//!   their tasks with a graceful HTTP shutdown).
//! - [`session`]: the one keeper of a coordinator session (register, renew,
//!   report expiry, re-register), for coordinators and harness clients.
//! - [`auth`]: the internal shared secret (as Presto's
//!   `internal-communication.shared-secret`): loading it, the one
//!   middleware that checks it on every server (`require_secret`), and the
//!   one check of the names other processes send (`check_name`).
//! - [`failpoints`]: planted bugs and injected faults from `FAILPOINTS`
//!   (inert without the feature `failpoints`).
//! - [`http`]: the one HTTP client: pooled, with timeouts and the secret
//!   attached, over HTTPS when the process has TLS.
//! - [`tls`]: TLS from PEM files (rustls): the process's identity, reloaded
//!   when it changes, peers verified against a CA, mutual TLS and the role
//!   a certificate names; [`listener`]: the one listener of every service,
//!   plain or TLS, with each connection's [`listener::Peer`].
//! - [`clock`]: the clock abstraction; processes read time only through it.
//! - [`cpu`]: a process's CPU time from `/proc` (worker reports, benchmarks).
//! - [`cli`]: one-line errors and exit status 2 for bad flags or config.
//! - [`net`]: loopback ports for the processes tests and the harness start.
//! - [`resource_groups`] (re-exported from `common/resource-groups`):
//!   Trino's `resource-groups.json` (plus our `consistency` field),
//!   validated with JSON-path errors, and selectors.
//! - [`units`]: durations (`5m`) and data sizes (`20GB`) as upstream writes them.
//! - [`telemetry`]: `tracing` to stderr, filtered by `RUST_LOG`; colours
//!   only on a terminal.
//! - [`wire`]: messages the RMs hear from workers and coordinators and the
//!   watch's events (announcements, heartbeats, kill orders, watch events).

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod cpu;
pub mod failpoints;
pub mod http;
pub mod listener;
pub mod net;
/// The resource-group model, a crate of its own (`common/resource-groups`)
/// so that the pure state machine can use it without this crate's I/O.
pub use resource_groups;
pub mod rm;
pub mod service;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod units;
pub mod wire;

/// A Raft node's identity within one cluster.
pub type NodeId = u64;
