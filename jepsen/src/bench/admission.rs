//! `jepsen bench admission`: linearizable acquire + release against the
//! leader at several concurrency levels.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{
    admission_cycle, bench_groups, bench_session, closed_loop, report_line, start_cluster, sweep,
    Level,
};
use crate::cluster::{ClusterSpec, LocalCluster};
use crate::stats::{summarize, Summary};

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
    /// The RM processes' CPU over the run, summed, in cores.
    pub rm_cores: f64,
    /// `rm_cores` per 1,000 admissions/s (each an acquire and a release).
    pub rm_cores_per_1k: f64,
}

/// `clients` closed-loop clients, each acquiring a fresh query id on the
/// leader and releasing it, for `duration`; client `k` in group
/// `groups[k % groups.len()]`. A queued acquire is given up (an error),
/// unless `wait_queued`: then the client waits for its promotion, which
/// the RMs' watch announces, as a coordinator does. With `batched`, the
/// clients share one batching RM client, as a coordinator's queries do
/// (`common::rm::RmClient::batching`); otherwise each call is a request.
pub async fn run_admission(
    cluster: &LocalCluster,
    clients: usize,
    duration: Duration,
    tag: &str,
    groups: &[String],
    wait_queued: bool,
    batched: bool,
) -> Result<AdmissionRun> {
    let coordinator = format!("bench-{tag}");
    let (addr, session, renewal) = bench_session(cluster, &coordinator).await?;
    let promotions =
        // The harness's acquires name the coordinator `jepsen`.
        wait_queued.then(|| Promotions::follow(cluster.client.at(&addr), "jepsen".to_string()));
    let rm = cluster.client.at(&addr);
    let rm = if batched { rm.batching() } else { rm };
    let tag = tag.to_string();
    let groups = Arc::new(groups.to_vec());
    let mut cpu = super::RmCpu::start(cluster);
    let run = closed_loop(clients, duration, move |k, n| {
        let (rm, q) = (rm.clone(), format!("b{tag}-{k}-{n}"));
        let group = groups[k % groups.len()].clone();
        let promotions = promotions.clone();
        async move {
            match promotions {
                None => admission_cycle(&rm, &q, &group, session).await,
                Some(p) => queued_admission_cycle(&rm, &q, &group, session, &p).await,
            }
        }
    })
    .await;
    let rm_cores = cpu.cores();
    drop(renewal);
    let run = run?;
    let acquires_per_sec = run.first.len() as f64 / run.seconds;
    Ok(AdmissionRun {
        rm_cores,
        rm_cores_per_1k: if acquires_per_sec > 0.0 {
            rm_cores / acquires_per_sec * 1000.0
        } else {
            0.0
        },
        clients,
        seconds: run.seconds,
        acquires: run.first.len(),
        cycles: run.second.len(),
        errors: run.errors,
        acquires_per_sec,
        acquire_latency: summarize(&run.first),
        release_latency: summarize(&run.second),
    })
}

/// The promotions of one bench session's queued queries, as the RMs'
/// watch announces them (one long poll for the whole load, as a
/// coordinator keeps one).
pub struct Promotions {
    state: std::sync::Mutex<PromotionState>,
    follower: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct PromotionState {
    waiting: std::collections::HashMap<String, tokio::sync::oneshot::Sender<()>>,
    /// Promoted before their client started waiting.
    early: std::collections::HashSet<String>,
}

impl Drop for Promotions {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl Promotions {
    pub fn follow(rm: common::rm::RmClient, coordinator: String) -> Arc<Promotions> {
        Arc::new_cyclic(|weak: &std::sync::Weak<Promotions>| {
            let weak = weak.clone();
            let follower = tokio::spawn(async move {
                let mut after = 0;
                loop {
                    let Ok(a) = rm.watch(after, Some(&coordinator), 1_000).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let Some(this) = weak.upgrade() else { return };
                    for e in a.events {
                        if e.kind == common::wire::WatchEventKind::Promoted {
                            this.promoted(e.query_id);
                        }
                    }
                    after = a.next_after;
                }
            });
            Promotions {
                state: Default::default(),
                follower,
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PromotionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn promoted(&self, query_id: String) {
        let mut s = self.lock();
        match s.waiting.remove(&query_id) {
            Some(waiter) => {
                let _ = waiter.send(());
            }
            None => {
                s.early.insert(query_id);
            }
        }
    }

    /// Waits (at most `timeout`) for `query_id`'s promotion.
    pub async fn wait(&self, query_id: &str, timeout: Duration) -> bool {
        let rx = {
            let mut s = self.lock();
            if s.early.remove(query_id) {
                return true;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            s.waiting.insert(query_id.to_string(), tx);
            rx
        };
        let promoted = matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())));
        if !promoted {
            self.lock().waiting.remove(query_id);
        }
        promoted
    }
}

/// An admission cycle that waits in the queue: acquire, and if queued,
/// wait for the promotion; then release.
async fn queued_admission_cycle(
    rm: &common::rm::RmClient,
    q: &str,
    group: &str,
    session: u64,
    promotions: &Promotions,
) -> super::Outcome {
    use crate::rm_client::AcquireStatus;
    let acquire = async {
        let request = crate::rm_client::acquire_request(q, group, session);
        let admitted = match rm.acquire(&request).await {
            Ok(a) if a.status == AcquireStatus::Admitted => true,
            Ok(a) if a.status == AcquireStatus::Queued => {
                promotions.wait(q, Duration::from_secs(30)).await
            }
            _ => false,
        };
        if !admitted {
            let _ = rm.release(q).await;
        }
        admitted
    };
    let release = async { rm.release(q).await.is_ok() };
    super::timed_cycle(acquire, release).await
}

impl Level for AdmissionRun {
    fn line(&self) -> Option<String> {
        let line = report_line(
            self.clients,
            self.acquires_per_sec,
            "acquires",
            self.acquire_latency.as_ref(),
            self.cycles,
            self.errors,
        );
        Some(format!(
            "{line} (acquire latency); RMs {:.2} cores, {:.2} per 1k admissions/s",
            self.rm_cores, self.rm_cores_per_1k
        ))
    }
}

/// The second cluster of a side-by-side `bench admission`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Baseline {
    /// Extra flags for its RMs.
    pub rm_args: Vec<String>,
    /// Its clients batch their calls.
    pub batched: bool,
    /// It runs over plain HTTP (the default side has `--tls`).
    pub plain: bool,
}

/// `jepsen bench admission`: one level per entry of `clients`, `seconds`
/// each, every client in the wide `bench` group, the clients batching
/// their calls if `batched`. With a `baseline`, a second cluster runs as
/// it says, and each level runs on both, alternating for `rounds` rounds:
/// a lever's effect, side by side in one run.
pub async fn command(
    template: &ClusterSpec,
    clients: &[usize],
    seconds: u64,
    batched: bool,
    baseline: Option<Baseline>,
    rounds: usize,
) -> Result<()> {
    let b = start_cluster(template, "bench-admission", Some(&bench_groups()), &[])?;
    let Some(baseline) = baseline else {
        let runs = sweep(clients.iter().enumerate(), |(i, n)| {
            let cluster = &b.cluster;
            async move { run_level(cluster, *n, seconds, &i.to_string(), batched).await }
        })
        .await?;
        return crate::store::save_results(
            &b.dir,
            &serde_json::json!({"bench": "admission", "nodes": template.nodes, "batched": batched, "runs": runs}),
        );
    };
    let base_template = ClusterSpec {
        tls: template.tls && !baseline.plain,
        ..template.clone()
    };
    let base = start_cluster(
        &base_template,
        "bench-admission-baseline",
        Some(&bench_groups()),
        &baseline.rm_args,
    )?;
    println!(
        "default: {}clients {}; baseline: {}RMs with [{}], clients {}",
        if template.tls { "TLS, " } else { "" },
        if batched { "batching" } else { "unbatched" },
        if base_template.tls { "TLS, " } else { "" },
        baseline.rm_args.join(" "),
        if baseline.batched {
            "batching"
        } else {
            "unbatched"
        },
    );
    let mut rows = Vec::new();
    for round in 1..=rounds.max(1) {
        for (i, n) in clients.iter().enumerate() {
            let sides = [
                ("default", &b.cluster, batched),
                ("baseline", &base.cluster, baseline.batched),
            ];
            for (name, cluster, batched) in sides {
                let tag = format!("{name}-{round}-{i}");
                let run = run_level(cluster, *n, seconds, &tag, batched).await?;
                if let Some(line) = run.line() {
                    println!("round {round} {name:<8} {line}");
                }
                rows.push(serde_json::json!({"round": round, "side": name, "run": run}));
            }
        }
    }
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({
            "bench": "admission",
            "nodes": template.nodes,
            "batched": batched,
            "baseline": baseline,
            "runs": rows,
        }),
    )
}

async fn run_level(
    cluster: &LocalCluster,
    clients: usize,
    seconds: u64,
    tag: &str,
    batched: bool,
) -> Result<AdmissionRun> {
    let groups = ["bench".to_string()];
    run_admission(
        cluster,
        clients,
        Duration::from_secs(seconds),
        tag,
        &groups,
        false,
        batched,
    )
    .await
}
