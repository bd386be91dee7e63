//! `jepsen bench views`: how eventual mode's view refresh scales with the
//! number of coordinators.
//!
//! Each simulated coordinator does what a real one's refresh task does
//! (`coordinator/src/eventual.rs`) every `1 / hz` seconds: it reads the
//! aggregated view from any RM within a 1 s staleness bound
//! (`GET /v1/resource-groups?max_staleness_ms=1000`, spread over the RMs
//! by the one RM client) and reports its own usage (`POST /v1/usage`, a
//! log write relayed to the leader). Per coordinator count: refreshes
//! achieved per second against those asked, view and report latency, the
//! staleness of the views served, and the RMs' CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::api::{GroupUsage, UsageReport};
use serde::Serialize;

use super::{start_cluster, RmCpu};
use crate::cluster::{ClusterSpec, LocalCluster};
use crate::stats::{summarize, Summary};

/// The staleness bound of the simulated coordinators' view reads.
const BOUND_MS: u64 = 1000;

#[derive(Debug, Serialize)]
pub struct ViewsRun {
    pub coordinators: usize,
    pub hz: f64,
    pub seconds: f64,
    /// Refreshes (a view read and a report) asked, and done, per second.
    pub asked_per_sec: f64,
    pub done_per_sec: f64,
    pub errors: usize,
    pub view_latency: Option<Summary>,
    pub report_latency: Option<Summary>,
    /// `staleness_ms` of the views served: p50 and max.
    pub staleness_p50_ms: u64,
    pub staleness_max_ms: u64,
    pub rm_cores: f64,
}

/// The groups each simulated coordinator reports on.
fn groups(k: usize) -> std::collections::BTreeMap<String, GroupUsage> {
    (0..4)
        .map(|g| {
            let usage = GroupUsage {
                running: ((k + g) % 3) as u32,
                queued: 0,
            };
            (format!("view-{g}"), usage)
        })
        .collect()
}

async fn run_level(cluster: &LocalCluster, n: usize, hz: f64, seconds: u64) -> Result<ViewsRun> {
    let rms = Arc::new(cluster.client.over(&cluster.addr_list()));
    let period = Duration::from_secs_f64(1.0 / hz);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut cpu = RmCpu::start(cluster);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..n {
        let rms = rms.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the coordinators' phases over one period.
            tokio::time::sleep(period.mul_f64(k as f64 / n as f64)).await;
            let (mut views, mut reports, mut stale, mut errors) =
                (Vec::new(), Vec::new(), Vec::new(), 0usize);
            let mut next = Instant::now();
            let mut seq = 0u64;
            while next < deadline {
                let t = Instant::now();
                match rms.view(BOUND_MS).await {
                    Ok(v) => {
                        views.push(t.elapsed());
                        stale.push(v.staleness_ms);
                    }
                    Err(_) => errors += 1,
                }
                seq += 1;
                let report = UsageReport {
                    coordinator: format!("view-bench-{k}"),
                    seq,
                    groups: groups(k),
                };
                let t = Instant::now();
                match rms.report_usage(&report).await {
                    Ok(_) => reports.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
                next += period;
                tokio::time::sleep_until(next.into()).await;
            }
            (views, reports, stale, errors)
        }));
    }
    let (mut views, mut reports, mut stale, mut errors) =
        (Vec::new(), Vec::new(), Vec::new(), 0usize);
    for t in tasks {
        let (v, r, s, e) = t.await?;
        views.extend(v);
        reports.extend(r);
        stale.extend(s);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rm_cores = cpu.cores();
    stale.sort_unstable();
    Ok(ViewsRun {
        coordinators: n,
        hz,
        seconds: elapsed,
        asked_per_sec: n as f64 * hz,
        done_per_sec: reports.len() as f64 / elapsed,
        errors,
        view_latency: summarize(&views),
        report_latency: summarize(&reports),
        staleness_p50_ms: stale.get(stale.len() / 2).copied().unwrap_or(0),
        staleness_max_ms: stale.last().copied().unwrap_or(0),
        rm_cores,
    })
}

/// `jepsen bench views`: one level per coordinator count, `seconds` each.
pub async fn command(
    template: &ClusterSpec,
    coordinators: &[usize],
    hz: f64,
    seconds: u64,
) -> Result<()> {
    anyhow::ensure!(hz > 0.0 && hz <= 100.0, "--hz must be in (0, 100]");
    let b = start_cluster(template, "bench-views", Some(&super::bench_groups()), &[])?;
    // The view holds the groups once the configuration is applied.
    let leader = super::leader_addr(&b.cluster).await?;
    anyhow::ensure!(
        b.cluster
            .client
            .wait_config(&leader, Duration::from_secs(15))
            .await,
        "the cluster has no resource-group configuration after 15 s"
    );
    let mut runs = Vec::new();
    for &n in coordinators {
        let r = run_level(&b.cluster, n.max(1), hz, seconds).await?;
        let ms = |s: &Option<Summary>, f: fn(&Summary) -> f64| s.as_ref().map_or(0.0, f);
        println!(
            "coordinators {:>4} at {} Hz: {:>7.0} of {:>6.0} refreshes/s  view p50 {:.2} p99 {:.2} ms  report p50 {:.2} p99 {:.2} ms  staleness p50 {} max {} ms  RMs {:.2} cores  ({} errors)",
            r.coordinators,
            r.hz,
            r.done_per_sec,
            r.asked_per_sec,
            ms(&r.view_latency, |s| s.p50_ms),
            ms(&r.view_latency, |s| s.p99_ms),
            ms(&r.report_latency, |s| s.p50_ms),
            ms(&r.report_latency, |s| s.p99_ms),
            r.staleness_p50_ms,
            r.staleness_max_ms,
            r.rm_cores,
            r.errors,
        );
        runs.push(r);
    }
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "views", "nodes": template.nodes, "runs": runs}),
    )
}
