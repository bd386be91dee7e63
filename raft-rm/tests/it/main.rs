//! The integration tests of `raft-rm`, in one binary (the in-process
//! cluster harness is the `rm-testkit` crate; the system tests that start
//! coordinators and workers too live in `jepsen/tests/system`):
//! - `store_suite`: openraft's storage test suite over the sled store;
//! - `cluster`: in-process 3-node clusters (election, replication, crash,
//!   snapshot catch-up, membership changes, partitions);
//! - `disk_loss`: a voter whose data dir was wiped is refused under its old
//!   identity, and `raft-rm admin replace` brings it back;
//! - `admission`: linearizable admission under faults, staleness-bounded views;
//! - `http_api`: auth and bad input on every endpoint;
//! - `metrics`: the failover-drill metrics (leader changes, leader contact
//!   age, admission errors by kind) move when they should; snapshot build
//!   and install metrics, and the on-demand snapshot route;
//! - `processes`: real `raft-rm` processes (SIGKILL crash test, CLI errors);
//! - `crash_at` (feature `failpoints`): a real process crashing at each
//!   failpoint of the store loses no acknowledged write.

mod admission;
mod cluster;
/// Needs the feature `failpoints` (scripts/test turns it on).
#[cfg(feature = "failpoints")]
mod crash_at;
mod disk_loss;
mod http_api;
mod metrics;
mod processes;
mod store_suite;
