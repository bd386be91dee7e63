//! The integration tests of `raft-rm`, in one binary:
//! - `store_suite`: openraft's storage test suite over the sled store;
//! - `cluster`: in-process 3-node clusters (election, replication, crash,
//!   snapshot catch-up, membership changes, partitions);
//! - `admission`: linearizable admission under faults, staleness-bounded views;
//! - `http_api`: auth and bad input on every endpoint;
//! - `metrics`: the failover-drill metrics (leader changes, leader contact
//!   age, admission errors by kind) move when they should; snapshot build
//!   and install metrics, and the on-demand snapshot route;
//! - `e2e`: RMs, workers and coordinators together, through Trino's
//!   client protocol;
//! - `workers`: a real worker against the RMs: discovery, the memory view,
//!   fencing of revoked admissions;
//! - `oom`: the coordinated low-memory killer, end to end and across
//!   a leader's death;
//! - `processes`: real `raft-rm` processes (SIGKILL crash test, CLI errors).

mod harness;

mod admission;
mod cluster;
mod e2e;
mod http_api;
mod metrics;
mod oom;
mod processes;
mod store_suite;
mod workers;
