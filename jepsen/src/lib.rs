//! The fault-injection and measurement harness.
//!
//! # Layout
//! - [`analysis`]: a run's tables (per op, per fault family), with polars.
//! - [`bench`](mod@bench): `jepsen bench ...`, one module per bench, with the one
//!   sweep, report line and cluster setup they share (`etcd`, ours against
//!   etcd, behind the cargo feature `etcd`).
//! - [`checker`]: verdicts from the history, each with failing self-tests.
//! - [`cli`]: the command line, one module per command.
//! - [`cluster`]: real RMs, workers and coordinators, killed on drop.
//! - [`compare`]: `jepsen compare`: every mode, one table, `index.html`.
//! - [`drill`]: `jepsen drill failover` and `drill rolling-restart`.
//! - [`history`]: every op invoked and completed, as `history.jsonl`.
//! - [`log`]: the harness's log lines: the run's `jepsen.log`, or stderr.
//! - [`nemesis`]: faults on a pure seeded schedule, each healed, all healed.
//! - [`netns`]: per-node network namespaces, partitions, packet faults.
//! - [`oom`]: one round of `jepsen bench oom`: a blocked pool to memory freed.
//! - [`progress`]: one terminal line per phase; a bar only on a terminal.
//! - [`prometheus`]: reading a process's `/metrics`.
//! - [`report`]: a run's plots and timeline.
//! - [`rm_client`]: what the harness asks of an RM over HTTP.
//! - [`stats`]: latency summaries (nearest-rank percentiles).
//! - [`store`]: run directories under `store/`, and their `results.json`.
//! - [`test`](mod@test): `jepsen test`: one checked run of a workload under faults,
//!   in phases (probe, start, run, quiesce, check, report).
//! - [`trino`]: a Trino-protocol client (submit, follow `nextUri`).
//! - [`workload`]: the clients (semaphore, queries, queue, oom), executing
//!   each client's pure seeded plan (`workload::plan`).

pub mod analysis;
pub mod bench;
pub mod checker;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod drill;
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
pub mod store;
pub mod test;
pub mod tls;
pub mod trino;
pub mod workload;
