//! The fault-injection and measurement harness.
//!
//! # Layout
//! - [`cluster`]: launches real `raft-rm` processes on loopback, restarts
//!   and kills them, and cleans everything up (also on Ctrl-C).
//! - [`rm_client`]: what the harness asks of a node over HTTP.
//! - [`stats`]: latency summaries.
//! - [`analysis`]: a run's tables (per operation, per fault family), with
//!   polars, from the history alone.
//! - [`bench`]: `jepsen bench writes` (durable writes) and `jepsen bench
//!   admission` (linearizable acquire + release), `jepsen bench queries`
//!   (Trino protocol, both modes side by side): throughput and latency.
//! - [`bench_eventual`]: `jepsen bench eventual`: eventual-mode admission
//!   at one coordinator, with its decision time from its own histogram.
//! - [`bench_heartbeats`]: `jepsen bench heartbeats`: simulated workers
//!   heartbeating one RM; heartbeats/s and the CPU it costs.
//! - [`prometheus`]: reading a process's `/metrics` (histograms, quantile
//!   bounds).
//! - [`bench_scale`]: `jepsen bench scale`: 100,000 queued queries across
//!   1,000 groups; acquire latency as the state grows, snapshot size, build
//!   and install time, the RMs' resident memory.
//! - [`bench_disk`]: `jepsen bench disk`: the data dirs' size over many
//!   acquire/release cycles, against the live state's.
//! - [`etcd`]: `jepsen bench etcd`: the same admission on etcd (a counter
//!   per group, compare-and-swap transactions, slots under a lease), side
//!   by side with ours.
//! - [`drill`]: `jepsen drill failover`: leader failover, measured per round.
//! - [`trino`]: a Trino-protocol client (submit, follow `nextUri`).
//! - [`oom`]: `jepsen bench oom`: from a blocked worker to the killed query's
//!   memory being free, per round.
//!
//! Nemeses, workloads, histories and checkers arrive with the Jepsen issue.

pub mod analysis;
pub mod bench;
pub mod bench_disk;
pub mod bench_eventual;
pub mod bench_heartbeats;
pub mod bench_scale;
pub mod checker;
pub mod cluster;
pub mod drill;
pub mod etcd;
pub mod history;
pub mod nemesis;
pub mod netns;
pub mod oom;
pub mod prometheus;
pub mod report;
pub mod rm_client;
pub mod stats;
pub mod test;
pub mod trino;
pub mod workload;
