//! `jepsen test`: one run of a workload under a nemesis schedule, on real
//! processes, checked and reported in its run directory:
//! `history.jsonl`, `results.json`, `jepsen.log`, the resource groups it ran
//! with, node logs, plots (`latency.svg`, `running.svg`, `throughput.svg`),
//! `timeline.html` and `analysis.md`.

//!
//! The run goes in phases, each its own module:
//! - [`probe`]: what this machine allows (namespaces, packet faults,
//!   libfaketime); a fault family it cannot run is skipped and recorded.
//! - `start`: the resource groups, the RMs, workers and coordinators.
//! - `run`: the clients' seeded plans and the nemesis's seeded schedule,
//!   executed for the time limit.
//! - `quiesce`: every admission released, the end state gathered.
//! - [`check`]: every checker's verdict (also `jepsen check`).
//! - [`report`]: the summary from the typed verdicts, `results.json`,
//!   plots, timeline, `analysis.md`.

pub mod check;
pub mod probe;
mod quiesce;
pub mod report;
mod run;
mod start;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

pub use check::{check_all, check_saved, limits_of, Checked, Rechecked};
pub use probe::Skipped;
pub use quiesce::EndState;

use crate::checker::Validity;
use crate::nemesis::Schedule;
use crate::progress::{Phase, Progress};
use crate::workload::Workload;

/// Linearizable, or eventual with a staleness bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mode {
    Linearizable,
    Eventual { max_staleness_ms: u64 },
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text.split_once(':') {
            None if text == "linearizable" => Ok(Mode::Linearizable),
            None if text == "eventual" => Ok(Mode::Eventual {
                max_staleness_ms: 1000,
            }),
            Some(("eventual", ms)) => ms
                .parse()
                .ok()
                .filter(|ms| *ms > 0)
                .map(|max_staleness_ms| Mode::Eventual { max_staleness_ms })
                .ok_or_else(|| format!("'{ms}' is not a positive number of ms")),
            _ => Err(format!(
                "'{text}' is not linearizable, eventual or eventual:MS"
            )),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Mode::Linearizable => "linearizable".into(),
            Mode::Eventual { max_staleness_ms } => format!("eventual:{max_staleness_ms}"),
        }
    }

    fn consistency(&self) -> Value {
        match self {
            Mode::Linearizable => json!({"mode": "linearizable"}),
            Mode::Eventual { max_staleness_ms } => {
                json!({"mode": "eventual", "maxStalenessMs": max_staleness_ms})
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TestSpec {
    pub workload: Workload,
    pub mode: Mode,
    pub schedule: Schedule,
    pub time_limit: Duration,
    pub concurrency: u64,
    pub nodes: u64,
    #[serde(skip)]
    pub bin_dir: PathBuf,
    /// Everything over TLS (`--tls`).
    pub tls: bool,
    /// The RMs' session lease: a paused coordinator outlives it.
    pub session_lease_ms: u64,
    /// Stay on loopback even where network namespaces are possible.
    pub loopback: bool,
    /// A bug planted on purpose in every process (`jepsen selftest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planted: Option<String>,
}

/// What a run found, for `jepsen compare`'s table.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: String,
    /// Eventual mode's staleness bound; `None` in linearizable mode.
    pub bound_ms: Option<u64>,
    pub valid: Validity,
    pub violations: u64,
    pub max_excess: u64,
    pub excess_seconds: f64,
    pub admission_p50_ms: Option<f64>,
    pub admission_p99_ms: Option<f64>,
    pub ok_per_second: f64,
    pub seconds_unavailable: f64,
    /// The longest admission stall in fault-free time, in seconds (`None`:
    /// not checked for this workload).
    pub longest_stall_seconds: Option<f64>,
    pub dir: PathBuf,
    /// Requested fault families this machine could not run.
    pub skipped: Vec<Skipped>,
}

/// Runs one test into `dir` (created). Answers its summary.
pub async fn run(spec: &TestSpec, dir: &Path) -> Result<Summary> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    // The harness's log lines go to the run's jepsen.log (the terminal gets
    // progress lines only, unless -v).
    let _log = crate::log::to_file(&dir.join("jepsen.log"))?;
    let groups = start::resource_groups(spec, &dir)?;

    let progress = Progress::new(&spec.mode.label());
    let mut env = probe::probe_environment(spec)?;
    progress.phase(Phase::Probe, &env.network);
    for s in &env.skipped {
        progress.phase(Phase::Probe, &format!("skipped {}: {}", s.feature, s.why));
    }

    let started = start::start(spec, &dir, &groups, env.net.take(), env.faketime.take()).await?;
    let concurrency = run::concurrency(spec);
    progress.phase(
        Phase::Start,
        &format!(
            "{} RMs, {} coordinators, {} workers up; {concurrency} clients; nemesis {}",
            spec.nodes,
            started.coordinators.len(),
            started.workers.len(),
            env.schedule.describe()
        ),
    );

    let ran = run::run(spec, &dir, &started, &env.schedule, concurrency, &progress).await?;

    let end_state = quiesce::quiesce(spec, &started, &env.schedule, &ran).await;
    let ops = ran.history.ops();
    progress.phase(
        Phase::Quiesce,
        &if end_state.still_held.is_empty() {
            "faults healed, every admission released".to_string()
        } else {
            format!(
                "faults healed, {} groups still hold queries",
                end_state.still_held.len()
            )
        },
    );
    std::fs::write(dir.join("end-state.json"), serde_json::to_vec(&end_state)?)?;

    let staleness = match spec.mode {
        Mode::Linearizable => 0,
        Mode::Eventual { max_staleness_ms } => max_staleness_ms,
    };
    let checked = check_all(spec.workload, &ops, &groups.limits, staleness, &end_state);
    let summary = report::summary(spec, &dir, &checked, ran.end_ns, &env.skipped);
    progress.phase(
        Phase::Check,
        &format!(
            "valid: {}",
            serde_json::to_string(&checked.valid).unwrap_or_default()
        ),
    );

    report::write(&report::Report {
        spec,
        dir: &dir,
        env: &env,
        concurrency,
        ops: &ops,
        windows: &ran.windows,
        limits: &groups.limits,
        end_ns: ran.end_ns,
        checked: &checked,
        summary: &summary,
    })?;
    // Stop the cluster; keep logs, drop the RMs' data.
    {
        let mut c = started.cluster.lock().await;
        c.stop_all();
    }
    for id in 1..=spec.nodes {
        let _ = std::fs::remove_dir_all(dir.join(format!("n{id}")));
    }
    // Relative to where the command ran, when the run is below it.
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| dir.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| dir.clone());
    progress.phase(Phase::Report, &shown.display().to_string());
    Ok(summary)
}

/// Each worker's pool in the oom workload.
pub const OOM_WORKER_MEMORY_BYTES: u64 = 1000;

/// The RMs' queue timeout in a test: orphaned queued queries fail by then.
pub const QUEUE_TIMEOUT_MS: u64 = 8_000;

/// States the linearizability search may visit per group before it answers
/// `unknown` (about 100 bytes each).
pub const LINEARIZABILITY_BUDGET: usize = 10_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("linearizable"), Ok(Mode::Linearizable));
        assert_eq!(
            Mode::parse("eventual:250"),
            Ok(Mode::Eventual {
                max_staleness_ms: 250
            })
        );
        assert!(Mode::parse("eventual:0").is_err());
        assert!(Mode::parse("strong").is_err());
    }
}
