//! System tests: resource managers, workers and coordinators together, in
//! one process, through the interfaces outside clients use. One binary
//! (nextest runs it in the `clusters` group, one at a time), one [`kit`]:
//! - `cluster_cmd`: `jepsen cluster` stopped by SIGTERM stops what it
//!   started;
//! - `e2e`: RMs, workers and coordinators together, through Trino's
//!   client protocol;
//! - `workers`: a real worker against the RMs: discovery, the memory view,
//!   fencing of revoked admissions;
//! - `oom`: the coordinated low-memory killer, end to end and across
//!   a leader's death;
//! - `limits`: resource groups' memory, CPU and time limits, in both
//!   modes, through Trino's client protocol;
//! - `tls`: real processes over mutual TLS: roles by certificate, and
//!   certificates reloaded under load;
//! - `ui`: the web UI's data from the coordinator that does not run the
//!   queries, against the RMs' JSON, and the relay to the owner.

mod kit;

mod cluster_cmd;
mod e2e;
mod limits;
mod oom;
mod tls;
mod ui;
mod workers;
