//! The contract between processes: every request, answer and event that
//! crosses a process boundary, as types shared by the server that answers
//! and every client that asks. Statuses, reasons, roles, modes and event
//! kinds are enums whose serde names are the wire strings (a reason's is
//! Trino's error name where Trino has one), so a renamed field or value
//! fails to decode instead of silently reading as "absent".
//!
//! - [`admission`]: sessions, acquire/adopt/release, usage reports and the
//!   ledger (the RMs' coordinator-facing writes).
//! - [`cluster`]: what an RM says of itself and of the group (health,
//!   members) and the resource-group view (`/v1/resource-groups`).
//! - [`memory`]: discovery and the cluster memory view (`/v1/memory`,
//!   `/v1/discovery/nodes`) with the killer's decisions.
//! - [`admin`]: membership, step-down, snapshots, the configuration, and
//!   the canary writes.
//! - [`worker`]: a worker's task API (`/v1/tasks`, the SQL a task runs and
//!   its result pages) and its `/v1/info`.
//! - [`trino`]: result columns and their types, as Trino's protocol has them.
//! - [`ui`]: the web UI's pages, and what coordinators tell each other of
//!   their queries through the RMs' relay.
//!
//! Messages that flow the other way (announcements, heartbeats, the watch)
//! are in [`crate::wire`].

pub mod admin;
pub mod admission;
pub mod cluster;
pub mod memory;
pub mod trino;
pub mod ui;
pub mod worker;

pub use admin::*;
pub use admission::*;
pub use cluster::*;
pub use memory::*;
pub use trino::*;
pub use ui::*;
pub use worker::*;
