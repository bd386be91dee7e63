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
    drop(renewal);
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
        Some(format!("{line} (acquire latency)"))
    }
}

/// `jepsen bench admission`: one level per entry of `clients`, `seconds`
/// each, every client in the wide `bench` group.
pub async fn command(template: &ClusterSpec, clients: &[usize], seconds: u64) -> Result<()> {
    let b = start_cluster(template, "bench-admission", Some(&bench_groups()), &[])?;
    let runs = sweep(clients.iter().enumerate(), |(i, n)| {
        let cluster = &b.cluster;
        async move {
            let groups = ["bench".to_string()];
            run_admission(
                cluster,
                *n,
                Duration::from_secs(seconds),
                &i.to_string(),
                &groups,
            )
            .await
        }
    })
    .await?;
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "admission", "nodes": template.nodes, "runs": runs}),
    )
}
