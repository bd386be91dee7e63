//! `jepsen bench writes`: durable write throughput and latency against a
//! fresh local cluster, at several concurrency levels.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::{closed_loop, leader_addr, report_line, start_cluster, sweep, Level, Outcome};
use crate::cluster::{ClusterSpec, LocalCluster};
use crate::stats::{summarize, Summary};

#[derive(Debug, Serialize)]
pub struct WriteRun {
    pub clients: usize,
    pub seconds: f64,
    pub writes: usize,
    pub errors: usize,
    pub writes_per_sec: f64,
    pub latency: Option<Summary>,
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

impl Level for WriteRun {
    fn line(&self) -> Option<String> {
        Some(report_line(
            self.clients,
            self.writes_per_sec,
            "writes",
            self.latency.as_ref(),
            self.writes,
            self.errors,
        ))
    }
}

/// `jepsen bench writes`: one level per entry of `clients`, `seconds` each.
pub async fn command(template: &ClusterSpec, clients: &[usize], seconds: u64) -> Result<()> {
    let b = start_cluster(template, "bench-writes", None, &[])?;
    let runs = sweep(clients.iter().enumerate(), |(i, n)| {
        let cluster = &b.cluster;
        async move { run_writes(cluster, *n, Duration::from_secs(seconds), &i.to_string()).await }
    })
    .await?;
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "writes", "nodes": template.nodes, "runs": runs}),
    )
}
