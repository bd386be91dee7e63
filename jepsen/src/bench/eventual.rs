//! `jepsen bench eventual`: eventual-mode admission at one coordinator.
//!
//! Closed-loop Trino-protocol clients run `SELECT 1` in an eventual group
//! through one coordinator (one worker behind it). Two figures:
//!
//! - admissions/s and the client's admission latency (submit until it
//!   first sees the query past `QUEUED`: protocol round trips included);
//! - the coordinator's own decision time, from its
//!   `coordinator_eventual_decision_seconds` histogram scraped before and
//!   after each level: from entering the decision to its outcome. Only
//!   decisions on the `fresh` path (the view in hand was fresh: no RM
//!   request on the path) make the decision percentiles; the fraction that
//!   had to wait for a view fetch is reported beside them. Percentiles
//!   from buckets are bucket bounds ("p99 <= 50 µs").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use common::http::HttpClient;
use serde::Serialize;

use super::queries::{run_queries, QueryRun};
use super::{start_cluster, sweep, Level};
use crate::cluster::{ClusterSpec, DataPlaneSpec, LocalCluster};
use crate::prometheus::{histogram, Histogram};
use crate::trino::TrinoClient;

/// The coordinator's decision histogram (its registry's prefix plus the
/// name `coordinator::http` registers it under).
pub const DECISION_METRIC: &str = "coordinator_eventual_decision_seconds";

/// The `path` label's values (see `coordinator::eventual::Decisions`).
pub const PATHS: [&str; 4] = ["fresh", "fetch", "queued", "no_view"];

/// The user whose queries `bench::queries::QUERY_GROUPS` puts in its eventual group.
const EVENTUAL_USER: &str = "ev";

/// Queries run before measuring, so the first level does not pay for the
/// coordinator's first view or cold connections.
const WARM_UP_QUERIES: usize = 20;

/// Decision times of one path, from the histogram's difference.
#[derive(Debug, Serialize)]
pub struct Decisions {
    pub count: u64,
    /// Bucket bounds holding the median and the 99th percentile, in ms.
    pub p50_le_ms: Option<f64>,
    pub p99_le_ms: Option<f64>,
    /// Exact, from the histogram's sum.
    pub mean_ms: Option<f64>,
    pub histogram: Histogram,
}

impl From<Histogram> for Decisions {
    fn from(h: Histogram) -> Self {
        let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
        Decisions {
            count: h.count,
            p50_le_ms: ms(h.quantile_bound(0.5)),
            p99_le_ms: ms(h.quantile_bound(0.99)),
            mean_ms: ms(h.mean()),
            histogram: h,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EventualRun {
    /// Client-side figures (admission latency: submit until past QUEUED).
    pub client: QueryRun,
    pub admissions_per_sec: f64,
    /// Decisions at the coordinator during the level, by path.
    pub decisions_by_path: BTreeMap<String, u64>,
    /// Decisions on a fresh view (no RM request on their path).
    pub fresh: Decisions,
    /// Fraction of all decisions that waited for a view fetch.
    pub fetch_fraction: f64,
}

/// Starts one worker and one coordinator beside the RMs of `c`, running
/// `groups`; answers the coordinator's address once it holds a session.
/// (`bench queries` runs on the same setup.)
pub async fn start_coordinator(c: &mut LocalCluster, groups: PathBuf) -> Result<String> {
    c.start_data_plane(&DataPlaneSpec {
        workers: 1,
        coordinators: 1,
        worker_memory_bytes: 1 << 30,
        resource_groups: groups,
        worker_base_port: 0,
        coordinator_base_port: 0,
        worker_args: Vec::new(),
    })?;
    let coordinator = c
        .members
        .iter()
        .find(|m| m.name == "c1")
        .map(|m| m.addr.clone())
        .context("no coordinator")?;
    crate::trino::wait_ready(&coordinator, Duration::from_secs(30)).await?;
    Ok(coordinator)
}

/// Every path's decision histogram, as `/metrics` shows it now.
async fn scrape(http: &HttpClient, coordinator: &str) -> Result<BTreeMap<String, Histogram>> {
    let body = http
        .get_bytes(&http.url(coordinator, "/metrics"), &[])
        .await?;
    let text = String::from_utf8_lossy(&body);
    Ok(PATHS
        .iter()
        .map(|p| {
            let h = histogram(&text, DECISION_METRIC, &[("path", p)]).unwrap_or_default();
            (p.to_string(), h)
        })
        .collect())
}

/// One level per entry of `clients`, each for `duration`, on the
/// coordinator `start_coordinator` answered (the groups must be
/// `bench::queries::QUERY_GROUPS`).
pub async fn run(
    coordinator: &str,
    clients: &[usize],
    duration: Duration,
) -> Result<Vec<EventualRun>> {
    let http = crate::tls::http(None, Duration::from_secs(10));
    let warm = TrinoClient::default();
    for _ in 0..WARM_UP_QUERIES {
        warm.run(coordinator, EVENTUAL_USER, "SELECT 1", &[])
            .await?;
    }
    let http = &http;
    sweep(clients, |&n| async move {
        let before = scrape(http, coordinator).await?;
        let client = run_queries(coordinator, EVENTUAL_USER, n, duration).await?;
        let after = scrape(http, coordinator).await?;
        let diff: BTreeMap<String, Histogram> = after
            .iter()
            .map(|(p, h)| {
                let d = match before.get(p) {
                    Some(b) => h.since(b),
                    None => h.clone(),
                };
                (p.clone(), d)
            })
            .collect();
        let by_path: BTreeMap<String, u64> =
            diff.iter().map(|(p, h)| (p.clone(), h.count)).collect();
        let total: u64 = by_path.values().sum();
        let fetched = by_path.get("fetch").copied().unwrap_or(0);
        let admissions = client.admission_latency.as_ref().map_or(0, |s| s.count);
        Ok(EventualRun {
            admissions_per_sec: admissions as f64 / client.seconds,
            fresh: diff.get("fresh").cloned().unwrap_or_default().into(),
            fetch_fraction: if total == 0 {
                0.0
            } else {
                fetched as f64 / total as f64
            },
            decisions_by_path: by_path,
            client,
        })
    })
    .await
}

/// The levels print nothing: the bench prints one table at the end.
impl Level for EventualRun {
    fn line(&self) -> Option<String> {
        None
    }
}

/// The bench's table, as Markdown.
pub fn table(runs: &[EventualRun]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    let le = |v: Option<f64>| match v {
        Some(v) if v.is_infinite() => "> 10 s".to_string(),
        Some(v) if v < 1.0 => format!("<= {:.0} µs", v * 1000.0),
        Some(v) => format!("<= {v} ms"),
        None => "-".to_string(),
    };
    let mut out = String::from(
        "| clients | admissions/s | client admission p50 | client admission p99 | errors | decisions | fresh-view decisions | decision p50 (bucket bound) | decision p99 (bucket bound) | decision mean | waited for a view fetch |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let a = r.client.admission_latency.as_ref();
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2}% |\n",
            r.client.clients,
            r.admissions_per_sec,
            ms(a.map(|s| s.p50_ms)),
            ms(a.map(|s| s.p99_ms)),
            r.client.errors,
            r.decisions_by_path.values().sum::<u64>(),
            r.fresh.count,
            le(r.fresh.p50_le_ms),
            le(r.fresh.p99_le_ms),
            r.fresh
                .mean_ms
                .map_or("-".to_string(), |m| format!("{:.1} µs", m * 1000.0)),
            r.fetch_fraction * 100.0,
        ));
    }
    out
}

/// Whether the fresh-view decisions' p99 bound is under 1 ms (the
/// issue's target), over every level.
pub fn target_met(runs: &[EventualRun]) -> bool {
    runs.iter()
        .all(|r| r.fresh.p99_le_ms.is_some_and(|p| p < 1.0))
}

/// `jepsen bench eventual`: one level per entry of `clients`, `seconds`
/// each, then the table.
pub async fn command(template: &ClusterSpec, clients: &[usize], seconds: u64) -> Result<()> {
    let mut b = start_cluster(
        template,
        "bench-eventual",
        Some(super::queries::QUERY_GROUPS),
        &[],
    )?;
    let groups = b.groups_file()?;
    let coordinator = start_coordinator(&mut b.cluster, groups).await?;
    let runs = run(&coordinator, clients, Duration::from_secs(seconds)).await?;
    print!("{}", table(&runs));
    let met = target_met(&runs);
    println!(
        "target (fresh-view decision p99 under 1 ms): {}",
        if met { "met" } else { "not met" }
    );
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "eventual", "runs": runs, "target_met": met}),
    )
}
