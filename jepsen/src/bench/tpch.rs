//! `jepsen bench tpch`: the TPC-H queries through one coordinator and one
//! worker, against DuckDB on the same machine, in the same run, on the
//! same data.
//!
//! Per query, three times (each the median of `--runs` runs after a
//! warm-up):
//! - **ours**: a Trino client (trino-python-client) submitting to the
//!   coordinator and reading every row: admission, dispatch, the query's
//!   own process, the spool and the protocol included;
//! - **engine**: the same statement executed by the engine in this
//!   process (polars on the worker's cached Parquet): what is left of
//!   "ours" beyond it is the coordinator, worker and protocol overhead;
//! - **duckdb**: DuckDB (Python) on the same Parquet files, 2 threads.
//!
//! The Trino client and DuckDB side is `tpch_check.py bench`, embedded
//! here and written into the run directory with the queries.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::api::SqlWork;
use serde::{Deserialize, Serialize};

use super::start_cluster;
use crate::cluster::{ClusterSpec, DataPlaneSpec};
use crate::workload::sql;

const CHECK_SCRIPT: &str = include_str!("../../tpch/tpch_check.py");

/// What `tpch_check.py bench --json` writes.
#[derive(Debug, Deserialize)]
struct ScriptResults {
    queries: Vec<ScriptQuery>,
}

#[derive(Debug, Deserialize)]
struct ScriptQuery {
    query: String,
    ours_ms: Option<f64>,
    duckdb_ms: Option<f64>,
    error_name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct QueryTimes {
    pub query: String,
    pub ours_ms: Option<f64>,
    pub engine_ms: Option<f64>,
    pub duckdb_ms: Option<f64>,
    /// ours / duckdb.
    pub ratio: Option<f64>,
    /// ours - engine: coordinator, worker and protocol.
    pub overhead_ms: Option<f64>,
    pub error_name: Option<String>,
}

pub struct Spec {
    pub schema: String,
    pub runs: usize,
    /// Query numbers (1..=22); empty: all.
    pub queries: Vec<u32>,
}

/// The engine's own time for `text`: the median of `runs` runs after one.
fn engine_ms(text: &str, schema: &str, runs: usize) -> Option<f64> {
    let config = engine::CatalogConfig {
        tpch_cache: engine::tpch::default_cache(),
        files_dir: None,
    };
    let work = SqlWork {
        sql: text.to_string(),
        catalog: Some(sql::CATALOG.into()),
        schema: Some(schema.into()),
        system_tables: Vec::new(),
    };
    engine::job::execute(&work, &config).ok()?;
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            let _ = engine::job::execute(&work, &config);
            t.elapsed()
        })
        .collect();
    times.sort();
    Some(times[times.len() / 2].as_secs_f64() * 1000.0)
}

fn write_script(dir: &Path) -> Result<std::path::PathBuf> {
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries)?;
    for (name, text) in sql::queries() {
        std::fs::write(queries.join(format!("{name}.sql")), text)?;
    }
    let script = dir.join("tpch_check.py");
    std::fs::write(&script, CHECK_SCRIPT)?;
    Ok(script)
}

pub async fn command(template: &ClusterSpec, spec: Spec) -> Result<()> {
    if !matches!(spec.schema.as_str(), "tiny" | "sf1") {
        bail!("--schema: tiny or sf1 (larger scales are not generated here)");
    }
    let groups = r#"{"rootGroups":[{"name":"tpch","hardConcurrencyLimit":100,"maxQueued":100}],"selectors":[{"group":"tpch"}]}"#;
    let mut b = start_cluster(template, "bench-tpch", Some(groups), &[])?;
    super::leader_addr(&b.cluster).await?;
    let groups_file = b.groups.clone().context("the groups file")?;
    b.cluster.start_data_plane(&DataPlaneSpec {
        workers: 1,
        coordinators: 1,
        worker_memory_bytes: 16 << 30,
        resource_groups: groups_file,
        worker_base_port: 0,
        coordinator_base_port: 0,
        worker_args: Vec::new(),
    })?;
    let coordinator = b
        .cluster
        .members
        .iter()
        .find(|m| m.binary == "coordinator")
        .map(|m| m.addr.clone())
        .context("no coordinator")?;
    crate::trino::wait_ready(&coordinator, Duration::from_secs(30)).await?;
    let script = write_script(&b.dir)?;
    let out = b.dir.join("client-and-duckdb.json");
    let numbers: Vec<String> = spec.queries.iter().map(u32::to_string).collect();
    let parquet = engine::tpch::default_cache().join(&spec.schema);
    println!(
        "TPC-H {} through coordinator {coordinator} (one worker), against DuckDB; {} runs each after a warm-up",
        spec.schema, spec.runs
    );
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(&script)
        .arg("bench")
        .arg("--server")
        .arg(format!("http://{coordinator}"))
        .arg("--schema")
        .arg(&spec.schema)
        .arg("--parquet-dir")
        .arg(&parquet)
        .arg("--runs")
        .arg(spec.runs.to_string())
        .arg("--json")
        .arg(&out);
    if !numbers.is_empty() {
        cmd.arg("--queries").arg(numbers.join(","));
    }
    let status = cmd.status().await.context("running python3")?;
    if status.code() == Some(3) {
        bail!("the Trino client and DuckDB side needs the Python packages duckdb and trino (pip install duckdb trino)");
    }
    if !status.success() {
        bail!("tpch_check.py bench failed: {status}");
    }
    let script: ScriptResults = serde_json::from_slice(&std::fs::read(&out)?)
        .with_context(|| format!("reading {}", out.display()))?;
    let mut rows = Vec::new();
    println!(
        "\n{:<6} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "query", "ours ms", "engine ms", "overhead", "duckdb ms", "ratio"
    );
    for q in script.queries {
        let text = sql::queries()
            .iter()
            .find(|(n, _)| *n == q.query)
            .map(|(_, t)| *t);
        let engine = match (&q.ours_ms, text) {
            (Some(_), Some(t)) => engine_ms(t, &spec.schema, spec.runs),
            _ => None,
        };
        let ratio = q.ours_ms.zip(q.duckdb_ms).map(|(o, d)| o / d);
        let overhead = q.ours_ms.zip(engine).map(|(o, e)| o - e);
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        match &q.error_name {
            Some(e) if q.ours_ms.is_none() => println!("{:<6} not run here: {e}", q.query),
            _ => println!(
                "{:<6} {:>10} {:>10} {:>10} {:>10} {:>8}",
                q.query,
                f(q.ours_ms),
                f(engine),
                f(overhead),
                f(q.duckdb_ms),
                ratio.map_or("-".into(), |r| format!("{r:.2}"))
            ),
        }
        rows.push(QueryTimes {
            query: q.query,
            ours_ms: q.ours_ms,
            engine_ms: engine,
            duckdb_ms: q.duckdb_ms,
            ratio,
            overhead_ms: overhead,
            error_name: q.error_name,
        });
    }
    let geomean = |xs: Vec<f64>| {
        (!xs.is_empty()).then(|| (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
    };
    let ratio = geomean(rows.iter().filter_map(|r| r.ratio).collect());
    let engine_ratio = geomean(
        rows.iter()
            .filter_map(|r| r.engine_ms.zip(r.duckdb_ms).map(|(e, d)| e / d))
            .collect(),
    );
    let overheads: Vec<f64> = rows.iter().filter_map(|r| r.overhead_ms).collect();
    let median_overhead = {
        let mut o = overheads.clone();
        o.sort_by(f64::total_cmp);
        o.get(o.len() / 2).copied()
    };
    println!(
        "\ngeometric mean ours/duckdb: {}  (engine alone/duckdb: {}); median overhead {} ms over {} queries",
        ratio.map_or("-".into(), |r| format!("{r:.2}")),
        engine_ratio.map_or("-".into(), |r| format!("{r:.2}")),
        median_overhead.map_or("-".into(), |o| format!("{o:.1}")),
        overheads.len()
    );
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "tpch", "schema": spec.schema, "runs": spec.runs,
            "queries": rows, "geomean_ratio": ratio, "engine_geomean_ratio": engine_ratio,
            "median_overhead_ms": median_overhead}),
    )
}
