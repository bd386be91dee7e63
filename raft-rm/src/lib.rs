//! `raft-rm`: a resource manager replicated with Raft (openraft 0.9 + sled).
//!
//! # Layout
//! - [`machine`]: the pure, deterministic state machine (`State::apply`),
//!   re-exported from its own crate (`raft-rm/machine`), which cannot reach
//!   I/O, a clock or randomness.
//! - [`store`]: durable log, vote, snapshots and identity in sled, and the
//!   openraft storage traits over them (append acknowledged only after fsync).
//! - [`network`]: the Raft RPC client side (HTTP + bincode), carrying the
//!   cluster id and both sides' incarnations.
//! - [`member`]: [`Node`], what the membership records of a member: its
//!   address and its data dir's incarnation, in a wire form old data dirs
//!   still decode.
//! - [`core`]: the node core, [`core::Core`]: the Raft handle and applied
//!   state, proposing (with group commit and the log clock), the
//!   linearizable read barrier and startup log, the leader's ticker,
//!   leadership transfer and snapshots on request, with its own error type
//!   ([`core::CoreError`]).
//! - [`http`]: the server side, one router per concern: Raft RPC, admin,
//!   health/metrics, canary writes, admission, groups and the watch,
//!   discovery and heartbeats; handlers extract, call the core and map
//!   its errors to statuses (the secret is checked by
//!   `common::auth::require_secret`); forwarding writes to the leader.
//! - [`config`]: flags and the TOML config file, validated into [`config::NodeConfig`].
//! - [`election`]: the election timer, ours instead of openraft's: a fresh
//!   random timeout for every wait, and openraft's longer-log back-off;
//!   its signals (leader contact, longer logs seen).
//! - [`node`]: wires the above into a running node ([`node::start`]).
//! - [`admin_cli`]: the `raft-rm admin ...` command-line client.
//! - [`inspect`]: `raft-rm inspect`, what a stopped node's data dir holds.
//! - [`metrics`]: Prometheus metrics.
//! - [`soft`]: soft state (discovery, worker heartbeats, the memory view),
//!   per RM and not replicated.
//! - [`log_clock`]: the time a leader stamps into the log, kept to the rate
//!   of its monotonic clock so a jumping wall clock cannot expire sessions.
//! - [`failpoints`]: where faults and crashes can be injected (feature
//!   `failpoints`; `RAFT_RM_CRASH_AT`).
//! - [`killer`]: the leader's low-memory killer and per-query memory limits,
//!   deciding through the log: a pure `plan` and the loop that feeds it,
//!   proposing through the core.

use std::io::Cursor;

pub mod admin_cli;
pub mod config;
pub mod core;
pub mod election;
pub mod failpoints;
pub mod http;
pub mod inspect;
pub mod killer;
pub mod log_clock;
pub mod member;
/// The pure state machine, a crate of its own (`raft-rm/machine`).
pub use rm_machine as machine;
pub mod metrics;
pub mod network;
pub mod node;
pub mod soft;
pub mod store;
pub mod usage;

pub use common::NodeId;

pub use member::Node;

openraft::declare_raft_types!(
    /// Types of this project's Raft group.
    pub TypeConfig:
        D = machine::Request,
        R = machine::Response,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
