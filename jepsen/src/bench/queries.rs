//! `jepsen bench queries`: `SELECT 1` through one coordinator over Trino's
//! protocol, linearizable and eventual mode side by side on the same
//! cluster.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{closed_loop, start_cluster, sweep, Level, Outcome};
use crate::cluster::ClusterSpec;
use crate::stats::{summarize, Summary};
use crate::trino::TrinoClient;

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

impl Level for QueryRun {
    fn line(&self) -> Option<String> {
        let label = if self.mode == "lin" {
            "linearizable"
        } else {
            "eventual"
        };
        let (a, q) = (self.admission_latency.as_ref(), self.query_latency.as_ref());
        Some(format!(
            "{label:<12} clients {:>3}: {:>6.0} queries/s  admission p50 {:>6.2} ms p99 {:>6.2} ms  query p50 {:>6.2} ms p99 {:>6.2} ms  ({} queries, {} errors)",
            self.clients,
            self.queries_per_sec,
            a.map_or(0.0, |s| s.p50_ms),
            a.map_or(0.0, |s| s.p99_ms),
            q.map_or(0.0, |s| s.p50_ms),
            q.map_or(0.0, |s| s.p99_ms),
            self.queries,
            self.errors
        ))
    }
}

/// `jepsen bench queries`: per entry of `clients`, `seconds` in
/// linearizable mode, then `seconds` in eventual mode.
pub async fn command(template: &ClusterSpec, clients: &[usize], seconds: u64) -> Result<()> {
    let mut b = start_cluster(template, "bench-queries", Some(QUERY_GROUPS), &[])?;
    let groups = b.groups_file()?;
    let coordinator = super::eventual::start_coordinator(&mut b.cluster, groups).await?;
    let levels = clients
        .iter()
        .flat_map(|n| ["lin", "ev"].map(|mode| (*n, mode)));
    let runs = sweep(levels, |(n, mode)| {
        run_queries(&coordinator, mode, n, Duration::from_secs(seconds))
    })
    .await?;
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "queries", "runs": runs}),
    )
}
