//! `jepsen bench oom`: how long the coordinated low-memory killer takes,
//! on real processes. Each round fills one worker's pool through two
//! coordinators, blocks it with one more query, and measures from the
//! moment the worker's pool is blocked until the killed query's memory is
//! free on it, and until the RMs' decision. It also checks what a user
//! would: exactly one kill per episode, the victim fails with
//! `CLUSTER_OUT_OF_MEMORY`, every other query finishes.

use common::clock::Clock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::api::{KillView, WorkerInfo};
use common::http::HttpClient;
use common::wire::MemoryPool;
use serde::Serialize;

use crate::cluster::LocalCluster;
use crate::trino::TrinoClient;

/// One linearizable group that never limits this bench's queries.
pub const OOM_GROUPS: &str = r#"{"rootGroups":[{"name":"mem","hardConcurrencyLimit":100,"maxQueued":100}],"selectors":[{"group":"mem"}]}"#;

/// The worker's pool; the round's queries fill it exactly.
pub const WORKER_MEMORY_BYTES: u64 = 120;

#[derive(Debug, Serialize)]
pub struct OomRound {
    pub round: usize,
    /// Worker pool blocked -> the RMs' kill decision (wall clocks of one machine).
    pub blocked_to_decision_ms: Option<f64>,
    /// Worker pool blocked -> the victim's memory free on the worker.
    pub blocked_to_free_ms: f64,
    /// Kills the RMs decided during the round.
    pub kills: usize,
    pub victim_error: Option<String>,
    /// Queries other than the victim that finished.
    pub others_finished: usize,
    pub others: usize,
}

impl OomRound {
    pub fn ok(&self) -> bool {
        self.kills == 1
            && self.victim_error.as_deref() == Some("CLUSTER_OUT_OF_MEMORY")
            && self.others_finished == self.others
    }
}

async fn pool(http: &HttpClient, worker: &str) -> Result<MemoryPool> {
    let info: WorkerInfo = http
        .get_json(&http.url(worker, "/v1/info"), 2)
        .await
        .with_context(|| format!("reading worker {worker}"))?;
    Ok(info.memory)
}

/// Polls the worker's pool every 5 ms until `f` holds; answers when.
async fn wait_pool(
    http: &HttpClient,
    worker: &str,
    what: &str,
    f: impl Fn(&MemoryPool) -> bool,
) -> Result<(Instant, u64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = pool(http, worker).await?;
        if f(&p) {
            return Ok((
                Instant::now(),
                common::clock::SystemClock::default().now_ms(),
            ));
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}: pool {p:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn round(
    cluster: &LocalCluster,
    worker: &str,
    coordinators: &[String],
    round: usize,
) -> Result<OomRound> {
    let http = crate::tls::http(None, Duration::from_secs(5));
    let client = TrinoClient::default();
    let started_ms = common::clock::SystemClock::default().now_ms();
    wait_pool(&http, worker, "an empty pool", |p| p.reserved_bytes == 0).await?;
    let submit = |i: usize, seconds: f64, bytes: u64| {
        let (client, c) = (client.clone(), coordinators[i % coordinators.len()].clone());
        tokio::spawn(async move {
            client
                .simulate(&c, "oom", Duration::from_secs_f64(seconds), bytes)
                .await
        })
    };
    // Fillers that outlive the kill, then the victim (the largest), then a
    // query that waits: the pool is full and blocked.
    let mut others = vec![submit(0, 4.0, 40), submit(1, 4.0, 30)];
    wait_pool(&http, worker, "the fillers", |p| p.reserved_bytes == 70).await?;
    let victim = submit(round, 60.0, 50);
    wait_pool(&http, worker, "a full pool", |p| {
        p.reserved_bytes == WORKER_MEMORY_BYTES
    })
    .await?;
    others.push(submit(round + 1, 0.3, 30));
    let (blocked_at, blocked_wall) =
        wait_pool(&http, worker, "a blocked pool", MemoryPool::is_blocked).await?;
    let (freed_at, _) = wait_pool(&http, worker, "the victim's memory", |p| {
        !p.queries.values().any(|b| *b == 50)
    })
    .await?;
    let victim = victim.await??;
    let mut others_finished = 0;
    let count = others.len();
    for o in others {
        if o.await??.state == "FINISHED" {
            others_finished += 1;
        }
    }
    // The decision as the RMs recorded it.
    let leader = cluster
        .client
        .wait_leader(&cluster.addr_list(), Duration::from_secs(10))
        .await
        .context("no leader")?;
    let view = cluster.client.memory(&cluster.addrs[&leader]).await?;
    let kills: Vec<&KillView> = view
        .kills
        .iter()
        .filter(|d| d.decided_ms >= started_ms)
        .collect();
    let decided = kills
        .iter()
        .find(|d| d.query_id == victim.id)
        .map(|d| d.decided_ms);
    Ok(OomRound {
        round,
        blocked_to_decision_ms: decided.map(|d| d.saturating_sub(blocked_wall) as f64),
        blocked_to_free_ms: (freed_at - blocked_at).as_secs_f64() * 1000.0,
        kills: kills.len(),
        victim_error: victim.error_name().map(str::to_string),
        others_finished,
        others: count,
    })
}
