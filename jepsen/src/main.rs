//! `jepsen`: run a local cluster, measure it, break it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use jepsen::bench::report_line;
use jepsen::cluster::{default_bin_dir, ClusterSpec, LocalCluster};
use jepsen::stats::summarize;

#[derive(Parser, Debug)]
#[command(
    name = "jepsen",
    version,
    about = "Local clusters, fault drills and benchmarks for raft-rm"
)]
struct Cli {
    /// Copy the harness's log lines (nemesis, cluster) to stderr; `test`
    /// and `compare` otherwise keep them in the run's jepsen.log.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
struct ClusterArgs {
    /// Number of raft-rm nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Directory holding raft-rm (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// The nemesis schedule's flags.
#[derive(clap::Args, Debug, Clone)]
struct NemesisArgs {
    /// Fault families, comma-separated: kill, pause, partition, clock,
    /// packet, membership; or `none`. Clock faults need libfaketime (Debian
    /// package faketime). Partitions and packet faults need network
    /// namespaces (root; packet loss also nftables); without them they are
    /// skipped, and the results say so.
    #[arg(long, default_value = "kill,pause,partition", value_parser = parse_faults)]
    nemesis: Faults,
    /// Which processes faults hit.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rm,coordinator"
    )]
    nemesis_targets: Vec<jepsen::nemesis::Role>,
    /// Quiet time between faults, in ms.
    #[arg(long, default_value_t = 3000)]
    nemesis_interval_ms: u64,
    /// A killed process restarts after this many ms.
    #[arg(long, default_value_t = 2000)]
    kill_for_ms: u64,
    /// A paused process resumes after this many ms (by default longer than
    /// the session lease and the election timeout).
    #[arg(long, default_value_t = 4000)]
    pause_for_ms: u64,
    /// The RMs' session lease, in ms.
    #[arg(long, default_value_t = 3000)]
    session_lease_ms: u64,
    /// Seed of the schedule and the clients' choices [default: random, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Run on loopback even where per-node network namespaces are possible
    /// (no partitions then).
    #[arg(long)]
    loopback: bool,
}

#[derive(Debug, Clone)]
struct Faults(Vec<jepsen::nemesis::Fault>);

fn parse_faults(text: &str) -> Result<Faults, String> {
    use clap::ValueEnum;
    if text == "none" {
        return Ok(Faults(Vec::new()));
    }
    text.split(',')
        .map(|f| {
            jepsen::nemesis::Fault::from_str(f.trim(), true).map_err(|_| {
                format!(
                    "'{f}' is not kill, pause, partition, clock, packet or membership (or none)"
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Faults)
}

impl NemesisArgs {
    fn schedule(&self) -> jepsen::nemesis::Schedule {
        let seed = self.seed.unwrap_or_else(rand::random);
        jepsen::nemesis::Schedule {
            faults: self.nemesis.0.clone(),
            roles: self.nemesis_targets.clone(),
            interval: Duration::from_millis(self.nemesis_interval_ms),
            kill_for: Duration::from_millis(self.kill_for_ms),
            pause_for: Duration::from_millis(self.pause_for_ms),
            seed,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One Jepsen-style test: a workload under a nemesis on real processes,
    /// checked; writes store/test/<timestamp>/ (history, results, plots).
    Test {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, value_enum, default_value = "queries")]
        workload: jepsen::workload::Workload,
        /// linearizable, or eventual:MS (the staleness bound).
        #[arg(long, default_value = "linearizable", value_parser = jepsen::test::Mode::parse)]
        mode: jepsen::test::Mode,
        #[command(flatten)]
        nemesis: NemesisArgs,
        /// Seconds of workload.
        #[arg(long, default_value_t = 30)]
        time_limit: u64,
        /// Client processes.
        #[arg(long, default_value_t = 6)]
        concurrency: u64,
    },
    /// Re-runs the checkers on a saved test run (its history.jsonl,
    /// resource-groups.json and end-state.json).
    Check {
        /// The run's directory [default: store/latest].
        #[arg(default_value = "store/latest")]
        dir: PathBuf,
    },
    /// The same workload, seed and nemesis schedule in linearizable mode
    /// and in eventual mode at each staleness bound; one table.
    Compare {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, value_enum, default_value = "queries")]
        workload: jepsen::workload::Workload,
        /// Eventual mode's staleness bounds to compare, in ms.
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        bounds: Vec<u64>,
        #[command(flatten)]
        nemesis: NemesisArgs,
        #[arg(long, default_value_t = 30)]
        time_limit: u64,
        #[arg(long, default_value_t = 6)]
        concurrency: u64,
    },
    /// Run a local cluster in the foreground and show its status (Ctrl-C stops it).
    Cluster {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// First port; node N listens on BASE+N-1.
        #[arg(long, default_value_t = 7001)]
        base_port: u16,
        /// Where node data and logs go; wiped first unless --keep.
        #[arg(long, default_value = "store/cluster")]
        dir: PathBuf,
        /// Keep the data of an earlier run (restart the same cluster).
        #[arg(long)]
        keep: bool,
        /// Stop by itself after this many seconds (for scripts and CI).
        #[arg(long)]
        exit_after: Option<u64>,
        /// Trino resource-groups.json for the RMs and coordinators [default:
        /// a linearizable `global` group with a `${USER}` subgroup].
        #[arg(long)]
        resource_groups: Option<PathBuf>,
        /// Workers to start (ports 8101...).
        #[arg(long, default_value_t = 2)]
        workers: u64,
        /// Coordinators to start (ports 8080...): point Trino clients here.
        #[arg(long, default_value_t = 2)]
        coordinators: u64,
        /// Memory pool of each worker, in bytes.
        #[arg(long, default_value_t = 1 << 30)]
        worker_memory_bytes: u64,
        /// A flag for every raft-rm, as one argument each (repeat it), e.g.
        /// `--rm-arg=--low-memory-killer-delay=10s`.
        #[arg(long, allow_hyphen_values = true)]
        rm_arg: Vec<String>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
    /// Failover drills for SREs: failover rounds and rolling restarts,
    /// measured, on a local cluster or an existing one.
    Drill {
        #[command(subcommand)]
        what: jepsen::drill::cli::DrillCmd,
    },
}

#[derive(Subcommand, Debug)]
enum Bench {
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

fn run_dir(name: &str) -> Result<PathBuf> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let dir = PathBuf::from("store").join(name).join(stamp.to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let latest = PathBuf::from("store").join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(dir.strip_prefix("store")?, &latest);
    Ok(dir)
}

/// A run directory and a cluster of RMs running `groups` (resource-groups
/// JSON), on free ports. Returns the directory, the groups file, the cluster.
fn bench_cluster(
    args: &ClusterArgs,
    name: &str,
    groups: &str,
    rm_args: &[String],
) -> Result<(PathBuf, PathBuf, LocalCluster)> {
    let dir = run_dir(name)?;
    std::fs::create_dir_all(dir.join("cluster"))?;
    // Absolute, because each node runs from its own directory.
    let file = std::fs::canonicalize(&dir)?.join("resource-groups.json");
    std::fs::write(&file, groups)?;
    let mut s = spec(args, dir.join("cluster"), 0);
    s.node_args = vec!["--resource-groups".into(), file.display().to_string()];
    s.node_args.extend_from_slice(rm_args);
    let cluster = LocalCluster::start(s)?;
    Ok((dir, file, cluster))
}

/// Writes a run's `results.json` and says where.
fn save_results(dir: &std::path::Path, results: &serde_json::Value) -> Result<()> {
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(results)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results: {}", path.display());
    Ok(())
}

fn spec(args: &ClusterArgs, dir: PathBuf, base_port: u16) -> ClusterSpec {
    ClusterSpec {
        nodes: args.nodes,
        base_port,
        dir,
        bin_dir: args.bin_dir.clone().unwrap_or_else(default_bin_dir),
        node_args: Vec::new(),
        net: None,
        faketime: None,
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => common::cli::usage_error("jepsen", e),
        Err(e) => e.exit(),
    };
    jepsen::log::init(cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    // A drill heals what it faulted before it exits, so it takes Ctrl-C itself.
    let handles_ctrl_c = matches!(cli.command, Cmd::Cluster { .. } | Cmd::Drill { .. });
    let result = runtime.block_on(async move {
        if handles_ctrl_c {
            return run(cli.command).await;
        }
        tokio::select! {
            r = run(cli.command) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Dropping the runtime drops every task, and with them the clusters,
    // which kill their processes: nothing outlives an error or Ctrl-C.
    drop(runtime);
    if let Err(e) = result {
        eprintln!("jepsen: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Cluster {
            cluster,
            base_port,
            dir,
            keep,
            exit_after,
            resource_groups,
            workers,
            coordinators,
            worker_memory_bytes,
            rm_arg,
        } => {
            if !keep && dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("wiping {}", dir.display()))?;
            }
            let mut s = spec(&cluster, dir.clone(), base_port);
            let groups = match resource_groups {
                // Absolute, because each node runs from its own directory.
                Some(file) => std::fs::canonicalize(&file)
                    .with_context(|| format!("resource groups file {}", file.display()))?,
                None => {
                    std::fs::create_dir_all(&dir)?;
                    let file = std::fs::canonicalize(&dir)?.join("resource-groups.json");
                    std::fs::write(&file, DEFAULT_GROUPS)?;
                    file
                }
            };
            s.node_args = vec!["--resource-groups".into(), groups.display().to_string()];
            s.node_args.extend(rm_arg);
            let mut c = LocalCluster::start(s)?;
            let offset = |p: u16| if base_port == 0 { 0 } else { p };
            c.start_data_plane(&jepsen::cluster::DataPlaneSpec {
                workers,
                coordinators,
                worker_memory_bytes,
                resource_groups: groups,
                worker_base_port: offset(8101),
                coordinator_base_port: offset(8080),
                worker_args: Vec::new(),
            })?;
            run_cluster(&mut c, exit_after).await
        }
        Cmd::Bench {
            what:
                Bench::Writes {
                    cluster,
                    clients,
                    seconds,
                },
        } => {
            let dir = run_dir("bench-writes")?;
            let c = LocalCluster::start(spec(&cluster, dir.join("cluster"), 0))?;
            let mut runs = Vec::new();
            for (i, n) in clients.iter().enumerate() {
                let r =
                    jepsen::bench::run_writes(&c, *n, Duration::from_secs(seconds), &i.to_string())
                        .await?;
                let line = report_line(
                    r.clients,
                    r.writes_per_sec,
                    "writes",
                    r.latency.as_ref(),
                    r.writes,
                    r.errors,
                );
                println!("{line}");
                runs.push(r);
            }
            let results =
                serde_json::json!({"bench": "writes", "nodes": cluster.nodes, "runs": runs});
            save_results(&dir, &results)?;
            Ok(())
        }
        Cmd::Bench {
            what:
                Bench::Admission {
                    cluster,
                    clients,
                    seconds,
                },
        } => {
            let groups = jepsen::bench::bench_groups();
            let (dir, _, c) = bench_cluster(&cluster, "bench-admission", &groups, &[])?;
            let mut runs = Vec::new();
            for (i, n) in clients.iter().enumerate() {
                let r = jepsen::bench::run_admission(
                    &c,
                    *n,
                    Duration::from_secs(seconds),
                    &i.to_string(),
                    &["bench".to_string()],
                )
                .await?;
                let line = report_line(
                    r.clients,
                    r.acquires_per_sec,
                    "acquires",
                    r.acquire_latency.as_ref(),
                    r.cycles,
                    r.errors,
                );
                println!("{line} (acquire latency)");
                runs.push(r);
            }
            let results =
                serde_json::json!({"bench": "admission", "nodes": cluster.nodes, "runs": runs});
            save_results(&dir, &results)?;
            Ok(())
        }
        Cmd::Bench {
            what:
                Bench::Etcd {
                    cluster,
                    clients,
                    seconds,
                    rounds,
                },
        } => {
            #[cfg(feature = "etcd")]
            {
                let groups = jepsen::bench::bench_groups();
                let (dir, _, ours) = bench_cluster(&cluster, "bench-etcd", &groups, &[])?;
                let mut etcd =
                    jepsen::etcd::EtcdCluster::start(&dir.join("etcd"), cluster.nodes as usize)?;
                let leader = etcd.wait_leader(Duration::from_secs(30)).await?;
                println!("{}", jepsen::etcd::TABLE_HEADER);
                let rows = jepsen::etcd::compare(
                    &ours,
                    &leader,
                    clients,
                    Duration::from_secs(seconds),
                    rounds,
                )
                .await?;
                println!("\n{}", jepsen::etcd::summary(&rows));
                let ratios = jepsen::etcd::ratios(&rows);
                let results = serde_json::json!({"bench": "etcd", "nodes": cluster.nodes,
                    "limit": jepsen::bench::LIMIT, "rows": rows, "ratios": ratios,
                    "targets": jepsen::etcd::targets(&ratios)});
                save_results(&dir, &results)?;
                Ok(())
            }
            #[cfg(not(feature = "etcd"))]
            {
                let _ = (cluster, clients, seconds, rounds);
                anyhow::bail!(
                    "this jepsen was built without the etcd bench: build it with \
                     `cargo build -p jepsen --features etcd` (needs protoc: Debian's protobuf-compiler)"
                )
            }
        }
        Cmd::Bench {
            what:
                Bench::Scale {
                    cluster,
                    queued,
                    groups,
                    clients,
                },
        } => {
            let spec = jepsen::bench_scale::Spec {
                queued,
                groups,
                clients: clients as usize,
            };
            let (dir, _, mut c) = bench_cluster(
                &cluster,
                "bench-scale",
                &spec.resource_groups(),
                &jepsen::bench_scale::Spec::rm_args(),
            )?;
            let report = jepsen::bench_scale::run(&mut c, spec).await?;
            save_results(&dir, &serde_json::to_value(&report)?)?;
            report.check()
        }
        Cmd::Bench {
            what:
                Bench::Disk {
                    cluster,
                    cycles,
                    clients,
                    samples,
                },
        } => {
            let groups = jepsen::bench::bench_groups();
            let (dir, _, c) = bench_cluster(&cluster, "bench-disk", &groups, &[])?;
            let spec = jepsen::bench_disk::Spec {
                cycles,
                clients: clients as usize,
                samples,
            };
            let report = jepsen::bench_disk::run(&c, spec).await?;
            save_results(&dir, &serde_json::to_value(&report)?)?;
            report.check()
        }
        Cmd::Bench {
            what:
                Bench::Queries {
                    cluster,
                    clients,
                    seconds,
                },
        } => {
            let (dir, groups, mut c) =
                bench_cluster(&cluster, "bench-queries", jepsen::bench::QUERY_GROUPS, &[])?;
            let coordinator = jepsen::bench_eventual::start_coordinator(&mut c, groups).await?;
            let mut runs = Vec::new();
            for n in &clients {
                for mode in ["lin", "ev"] {
                    let r = jepsen::bench::run_queries(
                        &coordinator,
                        mode,
                        *n,
                        Duration::from_secs(seconds),
                    )
                    .await?;
                    let label = if mode == "lin" {
                        "linearizable"
                    } else {
                        "eventual"
                    };
                    let a = r.admission_latency.clone();
                    let q = r.query_latency.clone();
                    println!(
                        "{label:<12} clients {n:>3}: {:>6.0} queries/s  admission p50 {:>6.2} ms p99 {:>6.2} ms  query p50 {:>6.2} ms p99 {:>6.2} ms  ({} queries, {} errors)",
                        r.queries_per_sec,
                        a.as_ref().map_or(0.0, |s| s.p50_ms),
                        a.as_ref().map_or(0.0, |s| s.p99_ms),
                        q.as_ref().map_or(0.0, |s| s.p50_ms),
                        q.as_ref().map_or(0.0, |s| s.p99_ms),
                        r.queries,
                        r.errors
                    );
                    runs.push(r);
                }
            }
            save_results(&dir, &serde_json::json!({"bench": "queries", "runs": runs}))?;
            Ok(())
        }
        Cmd::Bench {
            what:
                Bench::Oom {
                    cluster,
                    rounds,
                    delay,
                    worker_heartbeat_ms,
                },
        } => {
            let (dir, groups, mut c) = bench_cluster(
                &cluster,
                "bench-oom",
                jepsen::oom::OOM_GROUPS,
                &["--low-memory-killer-delay".into(), delay.clone()],
            )?;
            c.start_data_plane(&jepsen::cluster::DataPlaneSpec {
                workers: 1,
                coordinators: 2,
                worker_memory_bytes: jepsen::oom::WORKER_MEMORY_BYTES,
                resource_groups: groups,
                worker_base_port: 0,
                coordinator_base_port: 0,
                worker_args: vec!["--heartbeat-ms".into(), worker_heartbeat_ms.to_string()],
            })?;
            let coordinators: Vec<String> = c
                .members
                .iter()
                .filter(|m| m.name.starts_with('c'))
                .map(|m| m.addr.clone())
                .collect();
            let worker = c
                .members
                .iter()
                .find(|m| m.name == "w1")
                .map(|m| m.addr.clone())
                .context("no worker")?;
            for addr in &coordinators {
                jepsen::trino::wait_ready(addr, Duration::from_secs(30)).await?;
            }
            println!(
                "low-memory killer: delay {delay}, worker heartbeat {worker_heartbeat_ms} ms, {rounds} rounds"
            );
            let mut results = Vec::new();
            for round in 1..=rounds {
                let r = jepsen::oom::round(&c, &worker, &coordinators, round).await?;
                println!(
                    "round {:>2}: blocked -> decision {:>6} ms, -> memory free {:>6.0} ms; kills {}, victim {}, others finished {}/{}{}",
                    r.round,
                    r.blocked_to_decision_ms.map_or("?".into(), |m| format!("{m:.0}")),
                    r.blocked_to_free_ms,
                    r.kills,
                    r.victim_error.as_deref().unwrap_or("not failed"),
                    r.others_finished,
                    r.others,
                    if r.ok() { "" } else { "  <- WRONG" }
                );
                results.push(r);
            }
            let free = summarize(
                &results
                    .iter()
                    .map(|r| Duration::from_secs_f64(r.blocked_to_free_ms / 1000.0))
                    .collect::<Vec<_>>(),
            );
            if let Some(f) = &free {
                println!(
                    "blocked -> memory free: median {:.0} ms, max {:.0} ms",
                    f.p50_ms, f.max_ms
                );
            }
            let ok = results.iter().all(|r| r.ok());
            save_results(
                &dir,
                &serde_json::json!({"bench": "oom", "delay": delay,
                    "worker_heartbeat_ms": worker_heartbeat_ms, "rounds": results,
                    "blocked_to_free": free, "valid": ok}),
            )?;
            if !ok {
                anyhow::bail!("a round killed other than exactly one query, or a query failed");
            }
            Ok(())
        }
        Cmd::Bench {
            what:
                Bench::Eventual {
                    cluster,
                    clients,
                    seconds,
                },
        } => {
            let (dir, groups, mut c) =
                bench_cluster(&cluster, "bench-eventual", jepsen::bench::QUERY_GROUPS, &[])?;
            let coordinator = jepsen::bench_eventual::start_coordinator(&mut c, groups).await?;
            let runs =
                jepsen::bench_eventual::run(&coordinator, &clients, Duration::from_secs(seconds))
                    .await?;
            print!("{}", jepsen::bench_eventual::table(&runs));
            let met = jepsen::bench_eventual::target_met(&runs);
            println!(
                "target (fresh-view decision p99 under 1 ms): {}",
                if met { "met" } else { "not met" }
            );
            save_results(
                &dir,
                &serde_json::json!({"bench": "eventual", "runs": runs, "target_met": met}),
            )?;
            Ok(())
        }
        Cmd::Bench {
            what:
                Bench::Heartbeats {
                    cluster,
                    workers,
                    rate,
                    connections,
                    seconds,
                },
        } => {
            let dir = run_dir("bench-heartbeats")?;
            let c = LocalCluster::start(spec(&cluster, dir.join("cluster"), 0))?;
            let spec = jepsen::bench_heartbeats::HeartbeatSpec {
                workers: workers.iter().map(|w| *w as usize).collect(),
                rate: rate as f64,
                connections: connections.max(1),
                duration: Duration::from_secs(seconds),
            };
            let (phases, held) = jepsen::bench_heartbeats::run(&c, &spec).await?;
            print!("{}", jepsen::bench_heartbeats::table(&phases));
            for h in &held {
                println!(
                    "after {} workers: the RM's memory view holds {}, discovery {}, kills {}{}",
                    h.workers,
                    h.memory_workers,
                    h.discovered,
                    h.kills,
                    if h.ok() { "" } else { "  <- WRONG" }
                );
            }
            let met = jepsen::bench_heartbeats::target_met(&phases);
            println!(
                "target (20,000 heartbeats/s acked on one RM using under one core): {}",
                if met { "met" } else { "not met" }
            );
            let ok = held.iter().all(|h| h.ok());
            save_results(
                &dir,
                &serde_json::json!({"bench": "heartbeats", "nodes": cluster.nodes,
                    "phases": phases, "held": held, "target_met": met, "valid": ok}),
            )?;
            if !ok {
                anyhow::bail!("the RM does not hold every simulated worker");
            }
            Ok(())
        }
        Cmd::Test {
            cluster,
            workload,
            mode,
            nemesis,
            time_limit,
            concurrency,
        } => {
            let dir = run_dir("test")?;
            let run = RunArgs {
                cluster: &cluster,
                nemesis: &nemesis,
                workload,
                time_limit,
                concurrency,
            };
            let spec = run.spec(mode, nemesis.schedule());
            println!(
                "jepsen test: {} workload, {} mode, {time_limit} s, nemesis {}",
                workload_name(workload),
                mode.label(),
                spec.schedule.describe()
            );
            let s = jepsen::test::run(&spec, &dir).await?;
            println!();
            print!(
                "{}",
                jepsen::compare::table_markdown(std::slice::from_ref(&s))
            );
            println!("results: {}", dir.join("results.json").display());
            match s.valid {
                jepsen::checker::Validity::Invalid => {
                    anyhow::bail!("the history is not valid (see results.json)")
                }
                jepsen::checker::Validity::Unknown => {
                    println!("valid: unknown (a checker could not decide)")
                }
                jepsen::checker::Validity::Valid => println!("valid: true"),
            }
            Ok(())
        }
        Cmd::Check { dir } => {
            let v = jepsen::test::check_saved(&dir)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            if v["valid"] == false {
                anyhow::bail!("the history is not valid");
            }
            Ok(())
        }
        Cmd::Compare {
            cluster,
            workload,
            bounds,
            nemesis,
            time_limit,
            concurrency,
        } => {
            let root = run_dir("compare")?;
            let _log = jepsen::log::to_file(&root.join("jepsen.log"))?;
            let schedule = nemesis.schedule();
            let mut modes = vec![jepsen::test::Mode::Linearizable];
            modes.extend(bounds.iter().map(|b| jepsen::test::Mode::Eventual {
                max_staleness_ms: *b,
            }));
            let about = format!(
                "jepsen compare: {} workload, {time_limit} s per mode, nemesis {}",
                workload_name(workload),
                schedule.describe()
            );
            println!("{about}");
            let run = RunArgs {
                cluster: &cluster,
                nemesis: &nemesis,
                workload,
                time_limit,
                concurrency,
            };
            let specs: Vec<_> = modes
                .into_iter()
                .map(|mode| run.spec(mode, schedule.clone()))
                .collect();
            let summaries = jepsen::compare::run(&specs, &root).await?;
            println!();
            print!("{}", jepsen::compare::table_markdown(&summaries));
            let index = jepsen::compare::write_report(&root, &about, &summaries)?;
            save_results(
                &root,
                &serde_json::json!({"compare": summaries, "seed": schedule.seed,
                "schedule": schedule, "time_limit_s": time_limit, "workload": workload}),
            )?;
            println!("report: {}", index.display());
            if let Some(l) = summaries
                .iter()
                .find(|s| s.mode == "linearizable" && s.valid == jepsen::checker::Validity::Invalid)
            {
                anyhow::bail!(
                    "the linearizable run is not valid (see {})",
                    l.dir.join("results.json").display()
                );
            }
            Ok(())
        }
        Cmd::Drill { what } => {
            let name = match what {
                jepsen::drill::cli::DrillCmd::Failover { .. } => "drill-failover",
                jepsen::drill::cli::DrillCmd::RollingRestart { .. } => "drill-rolling-restart",
            };
            let dir = run_dir(name)?;
            jepsen::drill::cli::run(what, &dir).await
        }
    }
}

/// Prints the cluster's status once it has a leader, then again whenever
/// the leader or membership changes; stops on Ctrl-C or `exit_after`.
async fn run_cluster(c: &mut LocalCluster, exit_after: Option<u64>) -> Result<()> {
    let addrs = c.addr_list();
    let Some(_) = c.client.wait_leader(&addrs, Duration::from_secs(20)).await else {
        c.stop_all();
        anyhow::bail!(
            "no leader within 20 s; see the node logs in {}",
            c.dir().display()
        );
    };
    let deadline = exit_after.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut last_leader = None;
    loop {
        let leader = c.client.agreed_leader(&addrs).await;
        if leader.is_some() && leader != last_leader {
            // Give followers a moment to apply the leader's first entries.
            tokio::time::sleep(Duration::from_millis(500)).await;
            print_status(c).await;
            last_leader = leader;
        }
        for (name, status) in c.exited() {
            eprintln!(
                "{name} exited ({status}); see {}/{name}.log",
                c.dir().display()
            );
        }
        let stop = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = stop => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    println!("stopping the cluster");
    c.stop_all();
    Ok(())
}

async fn print_status(c: &LocalCluster) {
    println!(
        "\nraft-rm cluster: {} nodes, data and logs in {}",
        c.addrs.len(),
        c.dir().display()
    );
    println!(
        "{:<4} {:<18} {:<10} {:>5} {:>12} {:>13}",
        "id", "address", "role", "term", "last_applied", "staleness_ms"
    );
    for (id, addr) in &c.addrs {
        match c.client.health(addr).await {
            Ok(h) => println!(
                "{:<4} {:<18} {:<10} {:>5} {:>12} {:>13}",
                id,
                addr,
                h.role,
                h.term,
                h.last_applied.map_or("-".into(), |v| v.to_string()),
                h.staleness_ms.map_or("-".into(), |v| v.to_string())
            ),
            Err(e) => println!("{id:<4} {addr:<18} unreachable: {e}"),
        }
    }
    for m in &c.members {
        println!(
            "{:<4} {:<18} {}",
            m.name,
            m.addr,
            if m.name.starts_with('c') {
                "coordinator"
            } else {
                "worker"
            }
        );
    }
    println!(
        "try: curl -s http://{}/v1/cluster | python3 -m json.tool   (secret for admin calls: {}/secret)",
        c.addrs.values().next().map(String::as_str).unwrap_or("127.0.0.1:7001"),
        c.dir().display()
    );
    if let Some(coordinator) = c.members.iter().find(|m| m.name.starts_with('c')) {
        println!(
            "Trino clients: http://{0}  e.g.  python3 -c \"import trino; c=trino.dbapi.connect(host='{1}', port={2}, user='me').cursor(); c.execute('SELECT 1'); print(c.fetchall())\"",
            coordinator.addr,
            coordinator.addr.split(':').next().unwrap_or("127.0.0.1"),
            coordinator.addr.rsplit(':').next().unwrap_or("8080"),
        );
    }
}

/// The resource groups `jepsen cluster` runs with unless told otherwise:
/// linearizable, a global limit and a per-user one.
const DEFAULT_GROUPS: &str = r#"{
  "rootGroups": [
    {"name": "global", "hardConcurrencyLimit": 8, "maxQueued": 100,
     "subGroups": [{"name": "${USER}", "hardConcurrencyLimit": 2, "maxQueued": 20}]}
  ],
  "selectors": [{"group": "global.${USER}"}]
}"#;

/// What `test` and `compare` share, for one run's spec.
struct RunArgs<'a> {
    cluster: &'a ClusterArgs,
    nemesis: &'a NemesisArgs,
    workload: jepsen::workload::Workload,
    time_limit: u64,
    concurrency: u64,
}

impl RunArgs<'_> {
    fn spec(
        &self,
        mode: jepsen::test::Mode,
        schedule: jepsen::nemesis::Schedule,
    ) -> jepsen::test::TestSpec {
        jepsen::test::TestSpec {
            workload: self.workload,
            mode,
            schedule,
            time_limit: Duration::from_secs(self.time_limit),
            concurrency: self.concurrency,
            nodes: self.cluster.nodes,
            bin_dir: self.cluster.bin_dir.clone().unwrap_or_else(default_bin_dir),
            session_lease_ms: self.nemesis.session_lease_ms,
            loopback: self.nemesis.loopback,
        }
    }
}

/// A workload as its flag spells it.
fn workload_name(w: jepsen::workload::Workload) -> String {
    use clap::ValueEnum;
    w.to_possible_value()
        .map_or_else(|| format!("{w:?}"), |v| v.get_name().to_string())
}
