//! The worker: runs tasks under a memory pool, reports to every resource
//! manager, and stops tasks whose admission the RMs revoked.
//!
//! # Layout
//! - [`pool`]: the general memory pool; a task that does not fit waits (the
//!   node counts as blocked, as in Presto), first come first served.
//! - [`tasks`]: task lifecycle (blocked, running, finished, cancelled,
//!   killed, revoked); simulated tasks hold their reservation for their
//!   duration.
//! - [`query`]: a query's own process, its measured memory and CPU, and
//!   `worker run-query` (the process's side).
//! - [`report`]: announcements and heartbeats to every RM.
//! - [`fencing`]: watches the RMs for revoked admissions and stops the tasks
//!   that run on them, and every token-carrying task once no fresh RM has
//!   answered within the fencing bound; checks a task's token in the
//!   ledger before it starts.
//! - [`revoked`]: the revoked tokens on disk, so a restart keeps them.
//! - [`http`]: the task API, info, health and metrics.
//! - [`config`]: flags; [`node`]: wiring.

pub mod config;
pub mod fencing;
pub mod http;
pub mod node;
pub mod pool;
pub mod query;
pub mod report;
pub mod revoked;
pub mod tasks;
