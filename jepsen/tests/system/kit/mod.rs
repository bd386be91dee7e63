//! The system tests' one kit. These tests used to live in `raft-rm`'s
//! integration binary (`raft-rm/tests/it/{e2e,workers,oom}.rs`); they moved
//! here, next to the harness, so `raft-rm` does not dev-depend on the
//! coordinator and the worker.
//!
//! - the in-process RM cluster is `rm-testkit`'s, the one `raft-rm`'s own
//!   tests use (re-exported here);
//! - [`stack`]: RMs, workers and coordinators in one process, and a worker
//!   on its own;
//! - [`trino`]: a Trino-protocol client that records what it saw;
//! - [`groups`]: resource-group file fixtures.

pub mod groups;
pub mod stack;
pub mod trino;

pub use rm_testkit::{max_overlap, secret_file, Settings, TestCluster};
