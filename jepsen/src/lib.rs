//! The fault-injection and measurement harness.
//!
//! # Layout
//! - [`analysis`]: a run's tables (per op, per fault family), with polars.
//! - [`bench`]: `jepsen bench writes`, `bench admission`, `bench queries`.
//! - [`bench_disk`]: `jepsen bench disk`: data dir size against live state.
//! - [`bench_eventual`]: `jepsen bench eventual`: one coordinator's decisions.
//! - [`bench_heartbeats`]: `jepsen bench heartbeats`: one RM's ingestion.
//! - [`bench_scale`]: `jepsen bench scale`: 100,000 queued queries.
//! - [`checker`]: verdicts from the history, each with failing self-tests.
//! - [`cluster`]: real RMs, workers and coordinators, killed on drop.
//! - [`compare`]: `jepsen compare`: every mode, one table, `index.html`.
//! - [`drill`]: `jepsen drill failover` and `drill rolling-restart`.
//! - `etcd` (cargo feature `etcd`): `jepsen bench etcd`, ours against etcd.
//! - [`history`]: every op invoked and completed, as `history.jsonl`.
//! - [`log`]: the harness's log lines: the run's `jepsen.log`, or stderr.
//! - [`nemesis`]: faults on a seeded schedule, each healed, all healed.
//! - [`netns`]: per-node network namespaces, partitions, packet faults.
//! - [`oom`]: `jepsen bench oom`: from a blocked pool to the memory freed.
//! - [`progress`]: one terminal line per phase; a bar only on a terminal.
//! - [`prometheus`]: reading a process's `/metrics`.
//! - [`report`]: a run's plots and timeline.
//! - [`rm_client`]: what the harness asks of an RM over HTTP.
//! - [`stats`]: latency summaries (nearest-rank percentiles).
//! - [`test`]: `jepsen test`: one checked run of a workload under faults.
//! - [`trino`]: a Trino-protocol client (submit, follow `nextUri`).
//! - [`workload`]: the clients: semaphore, queries, queue, oom.

pub mod analysis;
pub mod bench;
pub mod bench_disk;
pub mod bench_eventual;
pub mod bench_heartbeats;
pub mod bench_scale;
pub mod checker;
pub mod cluster;
pub mod compare;
pub mod drill;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod history;
pub mod log;
pub mod nemesis;
pub mod netns;
pub mod oom;
pub mod progress;
pub mod prometheus;
pub mod report;
pub mod rm_client;
pub mod stats;
pub mod test;
pub mod trino;
pub mod workload;
