//! `jepsen bench ...`: the benches, and the kit they share.
//!
//! Every bench starts its own RMs in a fresh run directory
//! ([`start_cluster`]), runs its levels one after the other in the same
//! process against the same cluster (so their ratios are comparable even
//! on a noisy machine: [`sweep`], each level printing its [`Level::line`],
//! mostly a [`report_line`]), and saves its `results.json` with
//! [`crate::store::save_results`].
//!
//! # Layout
//! - this module: closed-loop and counted clients, the admission cycle and
//!   session, the sweep, the report line, the cluster a bench runs on.
//! - [`admission`]: `bench admission`: acquire + release on the leader.
//! - [`disk`]: `bench disk`: data dir size against live state.
//! - `etcd` (cargo feature `etcd`): `bench etcd`, ours against etcd.
//! - [`eventual`]: `bench eventual`: one coordinator's decisions.
//! - [`heartbeats`]: `bench heartbeats`: one RM's ingestion.
//! - [`oom`]: `bench oom`: from a blocked pool to the memory freed.
//! - [`queries`]: `bench queries`: `SELECT 1` through a coordinator.
//! - [`scale`]: `bench scale`: 100,000 queued queries.
//! - [`writes`]: `bench writes`: durable canary writes on the leader.

pub mod admission;
pub mod disk;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
pub mod etcd_ranked;
pub mod eventual;
pub mod heartbeats;
pub mod oom;
pub mod queries;
pub mod scale;
pub mod tpch;
pub mod views;
pub mod writes;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::session::{KeeperSpec, SessionKeeper};

use crate::cluster::{ClusterSpec, LocalCluster};
use crate::stats::Summary;

/// A bench's run: its directory (`store/bench-NAME/<stamp>`), the
/// resource-groups file its RMs run with (if any), and the RMs.
pub struct BenchCluster {
    pub dir: PathBuf,
    pub groups: Option<PathBuf>,
    pub cluster: LocalCluster,
}

impl BenchCluster {
    /// The resource-groups file, for a data plane beside the RMs.
    pub fn groups_file(&self) -> Result<PathBuf> {
        self.groups
            .clone()
            .context("this bench's RMs run without a resource-groups file")
    }
}

/// A run directory `store/NAME/<stamp>` and RMs as `template` says (nodes,
/// binaries) on free ports, their data in the directory's `cluster/`;
/// with `groups`, running those resource groups (JSON); with `rm_args`.
pub fn start_cluster(
    template: &ClusterSpec,
    name: &str,
    groups: Option<&str>,
    rm_args: &[String],
) -> Result<BenchCluster> {
    let dir = crate::store::run_dir(name)?;
    let mut spec = template.clone();
    spec.dir = dir.join("cluster");
    spec.base_port = 0;
    spec.node_args = Vec::new();
    let groups = match groups {
        Some(text) => {
            std::fs::create_dir_all(dir.join("cluster"))?;
            // Absolute, because each node runs from its own directory.
            let file = std::fs::canonicalize(&dir)?.join("resource-groups.json");
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
            spec.node_args = vec!["--resource-groups".into(), file.display().to_string()];
            Some(file)
        }
        None => None,
    };
    spec.node_args.extend_from_slice(rm_args);
    let cluster = LocalCluster::start(spec)?;
    Ok(BenchCluster {
        dir,
        groups,
        cluster,
    })
}

/// One level of a bench (a client count, a mode, a load), as measured.
pub trait Level {
    /// The line printed as the level finishes; `None` for a bench that
    /// prints one table at the end instead.
    fn line(&self) -> Option<String>;
}

/// Runs `run` on each level in turn, printing each one's line as it
/// finishes; answers every level's figures, in order.
pub async fn sweep<L, R, F, Fut>(levels: impl IntoIterator<Item = L>, mut run: F) -> Result<Vec<R>>
where
    R: Level,
    F: FnMut(L) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    let mut runs = Vec::new();
    for level in levels {
        let r = run(level).await?;
        if let Some(line) = r.line() {
            println!("{line}");
        }
        runs.push(r);
    }
    Ok(runs)
}

/// The address of the leader the nodes agree on (waits up to 15 s).
pub async fn leader_addr(cluster: &LocalCluster) -> Result<String> {
    let leader = cluster
        .client
        .wait_leader(&cluster.addr_list(), Duration::from_secs(15))
        .await
        .ok_or_else(|| anyhow::anyhow!("no leader within 15 s"))?;
    Ok(cluster.addrs[&leader].clone())
}

/// One line of a bench report: rate, latency percentiles, counts.
pub fn report_line(
    clients: usize,
    rate: f64,
    unit: &str,
    latency: Option<&Summary>,
    done: usize,
    errors: usize,
) -> String {
    let ms = |f: fn(&Summary) -> f64| latency.map_or(0.0, f);
    format!(
        "clients {clients:>3}: {rate:>7.0} {unit}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({done} done, {errors} errors)",
        ms(|s| s.p50_ms),
        ms(|s| s.p99_ms),
        ms(|s| s.max_ms),
    )
}

/// What one operation of a closed-loop client measured: up to two
/// latencies (e.g. acquire and release) and how many errors it hit.
#[derive(Default)]
pub struct Outcome {
    pub first: Option<Duration>,
    pub second: Option<Duration>,
    pub errors: usize,
}

/// Everything the clients of one run measured.
pub struct Loop {
    pub seconds: f64,
    pub first: Vec<Duration>,
    pub second: Vec<Duration>,
    pub errors: usize,
}

/// One admission cycle, timed: `acquire` (true: admitted), then, once
/// admitted, `release` (true: released). A refused acquire is an error
/// and skips the release.
pub async fn timed_cycle(
    acquire: impl std::future::Future<Output = bool>,
    release: impl std::future::Future<Output = bool>,
) -> Outcome {
    let t = Instant::now();
    if !acquire.await {
        return Outcome {
            errors: 1,
            ..Default::default()
        };
    }
    let acquired = t.elapsed();
    let t = Instant::now();
    let released = release.await;
    Outcome {
        first: Some(acquired),
        second: released.then(|| t.elapsed()),
        errors: usize::from(!released),
    }
}

/// Runs `clients` closed-loop clients for `duration`: client `k` calls
/// `op(k, n)` for n = 1, 2, ..., each waiting for the previous to finish.
pub async fn closed_loop<F, Fut>(clients: usize, duration: Duration, op: F) -> Result<Loop>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for k in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = (Vec::new(), Vec::new(), 0usize);
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let o = op(k, n).await;
                out.0.extend(o.first);
                out.1.extend(o.second);
                out.2 += o.errors;
            }
            out
        }));
    }
    let mut all = Loop {
        seconds: 0.0,
        first: Vec::new(),
        second: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let (first, second, errors) = t.await?;
        all.first.extend(first);
        all.second.extend(second);
        all.errors += errors;
    }
    all.seconds = start.elapsed().as_secs_f64();
    Ok(all)
}

/// What the clients of a counted run measured, by operation number.
pub struct Counted {
    pub seconds: f64,
    /// `outcomes[n]`: what operation `n` measured.
    pub outcomes: Vec<Outcome>,
}

/// Runs `clients` closed-loop clients until `total` operations are done
/// (where [`closed_loop`] runs for a time): the clients take the numbers
/// `0..total` in turn, and client `k` calls `op(k, n)` for each `n` it
/// takes. `done` counts the operations finished so far, for a sampler
/// running beside the load.
pub async fn counted_loop<F, Fut>(
    clients: usize,
    total: u64,
    done: Arc<AtomicU64>,
    op: F,
) -> Result<Counted>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..clients {
        let (op, next, done) = (op.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return out;
                }
                out.push((n, op(k, n).await));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut all = Vec::with_capacity(total as usize);
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort_by_key(|(n, _)| *n);
    Ok(Counted {
        seconds: start.elapsed().as_secs_f64(),
        outcomes: all.into_iter().map(|(_, o)| o).collect(),
    })
}

/// The admission limit of the bench's narrow groups: the hot group and
/// each of the spread groups (the etcd side enforces the same).
pub const LIMIT: u64 = 64;

/// The one group every client of the hot load shares.
pub const HOT_GROUP: &str = "hot";

/// The queueing load's group: fewer slots than clients, so most acquires
/// wait in the queue and are promoted.
pub const QUEUE_GROUP: &str = "q8";
pub const QUEUE_LIMIT: u64 = 8;
pub const QUEUE_MAX_QUEUED: u64 = 1000;

/// How many groups the spread load covers.
pub const SPREAD_GROUPS: usize = 100;

/// The groups of the spread load: `g0` .. `g99`.
pub fn spread_groups() -> Vec<String> {
    (0..SPREAD_GROUPS).map(|i| format!("g{i}")).collect()
}

/// The resource groups the admission benches run against: `bench`, wide
/// enough that every acquire is admitted (so the figure is the cost of the
/// Raft round trip, not of queueing); the hot group and the spread groups,
/// each with limit [`LIMIT`], flat like the etcd side's counters.
pub fn bench_groups() -> String {
    let group = |name: &str, limit: u64| serde_json::json!({"name": name, "hardConcurrencyLimit": limit, "maxQueued": 100000});
    let queue = serde_json::json!({"name": QUEUE_GROUP, "hardConcurrencyLimit": QUEUE_LIMIT,
        "maxQueued": QUEUE_MAX_QUEUED});
    let mut roots = vec![group("bench", 100_000), group(HOT_GROUP, LIMIT), queue];
    roots.extend(spread_groups().iter().map(|g| group(g.as_str(), LIMIT)));
    serde_json::json!({ "rootGroups": roots }).to_string()
}

/// A coordinator session on the leader for a bench's load, once the
/// cluster has its resource-group configuration: the leader's address, the
/// session, and its keeper (drop it when the load is done).
pub async fn bench_session(
    cluster: &LocalCluster,
    coordinator: &str,
) -> Result<(String, u64, SessionKeeper)> {
    let addr = leader_addr(cluster).await?;
    if !cluster
        .client
        .wait_config(&addr, Duration::from_secs(15))
        .await
    {
        anyhow::bail!("the cluster has no resource-group configuration after 15 s");
    }
    // Renewed every 2 s, so the session outlives any load (the lease is
    // 10 s by default); the RM that registered it is asked every time.
    let spec = KeeperSpec {
        coordinator: coordinator.to_string(),
        renew_every: Some(Duration::from_secs(2)),
        fan_out: false,
        give_up_after_lease: false,
    };
    let keeper = SessionKeeper::start(cluster.client.at(&addr), spec, |_| {});
    let session = keeper.registered(Duration::from_secs(15)).await?;
    Ok((addr, session, keeper))
}

/// The CPU of a cluster's RM processes, summed, in cores, between
/// readings (all three share the machine with the load generator).
pub struct RmCpu(Vec<common::cpu::CpuMeter>);

impl RmCpu {
    /// Starts measuring every RM of `cluster` that has a process now.
    pub fn start(cluster: &LocalCluster) -> RmCpu {
        let meters = cluster
            .targets()
            .iter()
            .filter(|t| matches!(t, crate::cluster::Target::Rm(_)))
            .filter_map(|t| cluster.pid(t))
            .map(|pid| common::cpu::CpuMeter::new(Some(pid as u32)))
            .collect();
        RmCpu(meters)
    }

    /// Cores the RMs used since the last reading (or the start).
    pub fn cores(&mut self) -> f64 {
        self.0.iter_mut().map(|m| m.cores_since_last()).sum()
    }
}

/// One admission cycle of query `q` in `group` through `rm` (a client
/// pinned to one RM, batching or not), timed: acquire, and release once
/// admitted (see [`timed_cycle`]).
pub async fn admission_cycle(
    rm: &common::rm::RmClient,
    q: &str,
    group: &str,
    session: u64,
) -> Outcome {
    let acquire = async {
        let a = rm
            .acquire(&crate::rm_client::acquire_request(q, group, session))
            .await;
        let admitted = matches!(a, Ok(a) if a.status == crate::rm_client::AcquireStatus::Admitted);
        if !admitted {
            // Gives up a queued query, so that it takes no slot later.
            let _ = rm.release(q).await;
        }
        admitted
    };
    let release = async { rm.release(q).await.is_ok() };
    timed_cycle(acquire, release).await
}
