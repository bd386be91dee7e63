//! `jepsen bench writes`: durable write throughput and latency against a
//! fresh local cluster. Every concurrency level runs in the same process
//! against the same cluster, one after the other, so their ratios are
//! comparable even on a noisy machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::cluster::LocalCluster;
use crate::rm_client::RmClient;
use crate::stats::{summarize, Summary};
use crate::trino::TrinoClient;

#[derive(Debug, Serialize)]
pub struct WriteRun {
    pub clients: usize,
    pub seconds: f64,
    pub writes: usize,
    pub errors: usize,
    pub writes_per_sec: f64,
    pub latency: Option<Summary>,
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

/// Runs `clients` closed-loop writers for `duration` against the leader
/// (each waits for its acknowledgement before the next write).
pub async fn run_writes(
    cluster: &LocalCluster,
    clients: usize,
    duration: Duration,
    tag: &str,
) -> Result<WriteRun> {
    let addr = leader_addr(cluster).await?;
    let (client, tag) = (cluster.client.clone(), tag.to_string());
    let run = closed_loop(clients, duration, move |k, seq| {
        let (client, addr, name) = (client.clone(), addr.clone(), format!("bench-{tag}-{k}"));
        async move {
            let t = Instant::now();
            match client.canary(&addr, &name, seq).await {
                Ok(_) => Outcome {
                    first: Some(t.elapsed()),
                    ..Default::default()
                },
                Err(_) => Outcome {
                    errors: 1,
                    ..Default::default()
                },
            }
        }
    })
    .await?;
    Ok(WriteRun {
        clients,
        seconds: run.seconds,
        writes: run.first.len(),
        errors: run.errors,
        writes_per_sec: run.first.len() as f64 / run.seconds,
        latency: summarize(&run.first),
    })
}

#[derive(Debug, Serialize)]
pub struct AdmissionRun {
    pub clients: usize,
    pub seconds: f64,
    /// Acquires admitted.
    pub acquires: usize,
    /// Acquire + release pairs completed.
    pub cycles: usize,
    pub errors: usize,
    pub acquires_per_sec: f64,
    /// Latency of the acquire alone (linearizable: one commit).
    pub acquire_latency: Option<Summary>,
    pub release_latency: Option<Summary>,
}

/// The admission limit of the bench's narrow groups: the hot group and
/// each of the spread groups (the etcd side enforces the same).
pub const LIMIT: u64 = 64;

/// The one group every client of the hot load shares.
pub const HOT_GROUP: &str = "hot";

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
    let mut roots = vec![group("bench", 100_000), group(HOT_GROUP, LIMIT)];
    roots.extend(spread_groups().iter().map(|g| group(g.as_str(), LIMIT)));
    serde_json::json!({ "rootGroups": roots }).to_string()
}

/// A coordinator session on the leader for a bench's load, once the
/// cluster has its resource-group configuration: the leader's address, the
/// session, and the task that renews it (abort it when the load is done).
pub async fn bench_session(
    cluster: &LocalCluster,
    coordinator: &str,
) -> Result<(String, u64, tokio::task::JoinHandle<()>)> {
    let addr = leader_addr(cluster).await?;
    if !cluster
        .client
        .wait_config(&addr, Duration::from_secs(15))
        .await
    {
        anyhow::bail!("the cluster has no resource-group configuration after 15 s");
    }
    let session = cluster.client.register_session(&addr, coordinator).await?;
    let renewal = cluster.client.keep_session_alive(&addr, session);
    Ok((addr, session, renewal))
}

/// One admission cycle of query `q` in `group` on `addr`, timed: acquire,
/// and release once admitted (see [`timed_cycle`]).
pub async fn admission_cycle(
    client: &RmClient,
    addr: &str,
    q: &str,
    group: &str,
    session: u64,
) -> Outcome {
    let acquire = async {
        let a = client.acquire(addr, q, group, session).await;
        let admitted = matches!(a, Ok(a) if a.status == crate::rm_client::AcquireStatus::Admitted);
        if !admitted {
            // Gives up a queued query, so that it takes no slot later.
            let _ = client.release(addr, q).await;
        }
        admitted
    };
    let release = async { client.release(addr, q).await.is_ok() };
    timed_cycle(acquire, release).await
}

/// `clients` closed-loop clients, each acquiring a fresh query id on the
/// leader and releasing it, for `duration`; client `k` in group
/// `groups[k % groups.len()]`.
pub async fn run_admission(
    cluster: &LocalCluster,
    clients: usize,
    duration: Duration,
    tag: &str,
    groups: &[String],
) -> Result<AdmissionRun> {
    let (addr, session, renewal) = bench_session(cluster, &format!("bench-{tag}")).await?;
    let (client, tag) = (cluster.client.clone(), tag.to_string());
    let groups = Arc::new(groups.to_vec());
    let run = closed_loop(clients, duration, move |k, n| {
        let (client, addr, q) = (client.clone(), addr.clone(), format!("b{tag}-{k}-{n}"));
        let group = groups[k % groups.len()].clone();
        async move { admission_cycle(&client, &addr, &q, &group, session).await }
    })
    .await;
    renewal.abort();
    let run = run?;
    Ok(AdmissionRun {
        clients,
        seconds: run.seconds,
        acquires: run.first.len(),
        cycles: run.second.len(),
        errors: run.errors,
        acquires_per_sec: run.first.len() as f64 / run.seconds,
        acquire_latency: summarize(&run.first),
        release_latency: summarize(&run.second),
    })
}

/// The resource groups the query bench runs against: one linearizable and
/// one eventual group, wide enough that nothing queues for long; the user
/// name picks the mode.
pub const QUERY_GROUPS: &str = r#"{"rootGroups":[
  {"name":"lin","hardConcurrencyLimit":100000,"maxQueued":100000},
  {"name":"ev","hardConcurrencyLimit":100000,"maxQueued":100000,
   "consistency":{"mode":"eventual","maxStalenessMs":1000}}],
 "selectors":[{"user":"lin","group":"lin"},{"user":"ev","group":"ev"}]}"#;

#[derive(Debug, Serialize)]
pub struct QueryRun {
    pub mode: String,
    pub clients: usize,
    pub seconds: f64,
    pub queries: usize,
    pub errors: usize,
    pub queries_per_sec: f64,
    /// Submit until the client first sees the query past QUEUED.
    pub admission_latency: Option<Summary>,
    /// Submit until FINISHED.
    pub query_latency: Option<Summary>,
}

/// `clients` closed-loop Trino-protocol clients running `SELECT 1` through
/// `coordinator` as `user` (which selects the group, and so the mode).
pub async fn run_queries(
    coordinator: &str,
    user: &str,
    clients: usize,
    duration: Duration,
) -> Result<QueryRun> {
    let client = TrinoClient::default();
    let (coordinator, who) = (coordinator.to_string(), user.to_string());
    let run = closed_loop(clients, duration, move |_, _| {
        let (client, coordinator, who) = (client.clone(), coordinator.clone(), who.clone());
        async move {
            match client.run(&coordinator, &who, "SELECT 1", &[]).await {
                Ok(e) if e.state == "FINISHED" => Outcome {
                    first: Some(e.admitted_after.unwrap_or(e.elapsed)),
                    second: Some(e.elapsed),
                    errors: 0,
                },
                _ => Outcome {
                    errors: 1,
                    ..Default::default()
                },
            }
        }
    })
    .await?;
    Ok(QueryRun {
        mode: user.to_string(),
        clients,
        seconds: run.seconds,
        queries: run.second.len(),
        errors: run.errors,
        queries_per_sec: run.second.len() as f64 / run.seconds,
        admission_latency: summarize(&run.first),
        query_latency: summarize(&run.second),
    })
}
