//! `jepsen bench ...`: each bench's flags; the benches are in
//! [`crate::bench`], each started from its `command`.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use super::ClusterArgs;
use crate::bench;

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// SELECT 1 through one coordinator over Trino's protocol, linearizable
    /// and eventual mode side by side on the same cluster.
    Queries {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Linearizable acquire + release against the leader at several concurrency levels.
    Admission {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Each client call is its own request (by default the clients
        /// share one batching RM client, as a coordinator's queries do).
        #[arg(long)]
        unbatched: bool,
        /// Also run a second cluster whose RMs get these extra flags
        /// (space-separated, e.g. "--early-replication false"), each level
        /// on both, alternating: a setting's effect side by side.
        #[arg(long, allow_hyphen_values = true)]
        baseline_rm_args: Option<String>,
        /// Also run a second cluster (with --baseline-rm-args, if given)
        /// whose clients do not batch.
        #[arg(long)]
        baseline_unbatched: bool,
        /// With --tls: also run a second cluster over plain HTTP (the
        /// cost of TLS, side by side).
        #[arg(long, requires = "tls")]
        baseline_plain: bool,
        /// Rounds of the side-by-side comparison.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// Linearizable admission against etcd (a counter per group changed in
    /// a transaction that compares its revision, slots under a lease),
    /// both clusters on loopback, alternating: a hot group, 100 groups,
    /// one client. Needs `etcd` (Debian's etcd-server) and a jepsen built
    /// with `--features etcd` (which needs protoc at build time).
    Etcd {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Clients of the hot-group and the 100-groups loads.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds per load and system.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds: each runs every load on raft-rm, then on etcd.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// The coordinated low-memory killer: from a blocked worker to the
    /// killed query's memory being free, per round.
    Oom {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// The RMs' `--low-memory-killer-delay`.
        #[arg(long, default_value = "1s")]
        delay: String,
        /// The worker's heartbeat interval (its default is 1000).
        #[arg(long, default_value_t = 1000)]
        worker_heartbeat_ms: u64,
    },
    /// Scale of state: QUEUED queued queries across GROUPS linearizable
    /// groups; acquire latency as the state grows, snapshot size, build and
    /// install time (on a new learner), the RMs' resident memory.
    Scale {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Queries left queued at the end (one more per group runs).
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        queued: u64,
        /// Leaf groups, each running one query and queueing the rest.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        groups: u64,
        /// Concurrent clients filling the queues.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        clients: u64,
    },
    /// Disk: acquire/release cycles against the leader with the nodes'
    /// default snapshot policy; each RM's data dir size over time against
    /// the live state (the snapshot's size).
    Disk {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Acquire/release cycles in all.
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        cycles: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        clients: u64,
        /// Data dir samples over the run (one every CYCLES/SAMPLES cycles).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
        samples: u64,
    },
    /// Durable canary writes against the leader at several concurrency levels.
    Writes {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Concurrency levels, run one after the other on the same cluster.
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        clients: Vec<usize>,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Eventual-mode admission at one coordinator: SELECT 1 over Trino's
    /// protocol, admissions/s, and the coordinator's own decision time on
    /// a fresh view (from its decision histogram).
    Eventual {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Concurrency levels, run one after the other on the same cluster.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        clients: Vec<usize>,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// TPC-H through one coordinator and one worker against DuckDB (the
    /// Python package) on the same data: per-query times, their ratio and
    /// geometric mean, and the coordinator/worker/protocol overhead on top
    /// of the engine's own time.
    Tpch {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// `tiny` (scale 0.01) or `sf1`.
        #[arg(long, default_value = "sf1")]
        schema: String,
        /// Timed runs per query, after a warm-up.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Query numbers [default: all 22].
        #[arg(long, value_delimiter = ',')]
        queries: Vec<u32>,
    },
    /// Eventual mode's view refresh against the number of coordinators:
    /// simulated coordinators each reading the view from any RM and
    /// reporting their usage `--hz` times a second.
    Views {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Simulated coordinator counts, one after the other.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        coordinators: Vec<usize>,
        /// Refreshes per second of each coordinator.
        #[arg(long, default_value_t = 10.0)]
        hz: f64,
        /// Seconds per level.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Heartbeat ingestion: simulated workers heartbeating one RM (the
    /// leader), at the most it acks and at an offered rate; heartbeats/s,
    /// latency, and the RM's and this generator's CPU.
    Heartbeats {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Simulated worker counts, one after the other (an RM tracks at
        /// most 10,000 nodes).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000",
              value_parser = clap::value_parser!(u64).range(1..=10_000))]
        workers: Vec<u64>,
        /// The offered phase's total heartbeats per second.
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Keep-alive connections to the RM.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// Runs one bench.
pub async fn run(what: Bench) -> Result<()> {
    match what {
        Bench::Writes {
            cluster,
            clients,
            seconds,
        } => bench::writes::command(&template(&cluster), &clients, seconds).await,
        Bench::Admission {
            cluster,
            clients,
            seconds,
            unbatched,
            baseline_rm_args,
            baseline_unbatched,
            baseline_plain,
            rounds,
        } => {
            let wanted = baseline_rm_args.is_some() || baseline_unbatched || baseline_plain;
            let baseline = wanted.then(|| bench::admission::Baseline {
                rm_args: baseline_rm_args
                    .iter()
                    .flat_map(|a| a.split_whitespace().map(str::to_string))
                    .collect(),
                batched: !(unbatched || baseline_unbatched),
                plain: baseline_plain,
            });
            bench::admission::command(
                &template(&cluster),
                &clients,
                seconds,
                !unbatched,
                baseline,
                rounds,
            )
            .await
        }
        Bench::Queries {
            cluster,
            clients,
            seconds,
        } => bench::queries::command(&template(&cluster), &clients, seconds).await,
        Bench::Eventual {
            cluster,
            clients,
            seconds,
        } => bench::eventual::command(&template(&cluster), &clients, seconds).await,
        Bench::Etcd {
            cluster,
            clients,
            seconds,
            rounds,
        } => etcd(&cluster, clients, seconds, rounds).await,
        Bench::Oom {
            cluster,
            rounds,
            delay,
            worker_heartbeat_ms,
        } => bench::oom::command(&template(&cluster), rounds, &delay, worker_heartbeat_ms).await,
        Bench::Scale {
            cluster,
            queued,
            groups,
            clients,
        } => {
            let spec = bench::scale::Spec {
                queued,
                groups,
                clients: clients as usize,
            };
            bench::scale::command(&template(&cluster), spec).await
        }
        Bench::Disk {
            cluster,
            cycles,
            clients,
            samples,
        } => {
            let spec = bench::disk::Spec {
                cycles,
                clients: clients as usize,
                samples,
            };
            bench::disk::command(&template(&cluster), spec).await
        }
        Bench::Tpch {
            cluster,
            schema,
            runs,
            queries,
        } => {
            let spec = bench::tpch::Spec {
                schema,
                runs,
                queries,
            };
            bench::tpch::command(&template(&cluster), spec).await
        }
        Bench::Views {
            cluster,
            coordinators,
            hz,
            seconds,
        } => bench::views::command(&template(&cluster), &coordinators, hz, seconds).await,
        Bench::Heartbeats {
            cluster,
            workers,
            rate,
            connections,
            seconds,
        } => {
            let spec = bench::heartbeats::HeartbeatSpec {
                workers: workers.iter().map(|w| *w as usize).collect(),
                rate: rate as f64,
                connections: connections.max(1),
                duration: Duration::from_secs(seconds),
            };
            bench::heartbeats::command(&template(&cluster), &spec).await
        }
    }
}

/// The RMs every bench starts from (its run directory and flags are its own).
fn template(cluster: &ClusterArgs) -> crate::cluster::ClusterSpec {
    cluster.spec(std::path::PathBuf::new(), 0)
}

#[cfg(feature = "etcd")]
async fn etcd(cluster: &ClusterArgs, clients: usize, seconds: u64, rounds: usize) -> Result<()> {
    bench::etcd::command(&template(cluster), clients, seconds, rounds).await
}

#[cfg(not(feature = "etcd"))]
async fn etcd(_: &ClusterArgs, _: usize, _: u64, _: usize) -> Result<()> {
    anyhow::bail!(
        "this jepsen was built without the etcd bench: build it with \
         `cargo build -p jepsen --features etcd` (needs protoc: Debian's protobuf-compiler)"
    )
}
