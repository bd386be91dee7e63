//! The report phase: the run's summary (from the typed verdicts), its
//! `results.json`, `analysis.md`, plots and timeline, and the history and
//! verdicts appended to `jepsen.log`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::check::Checked;
use super::probe::{Environment, Skipped};
use super::{Mode, Summary, TestSpec};
use crate::history::{Op, OpType};
use crate::nemesis::Window;
use crate::stats::summarize;

/// The run's summary, for `jepsen compare`'s table and the terminal.
pub(super) fn summary(
    spec: &TestSpec,
    dir: &Path,
    checked: &Checked,
    end_ns: u64,
    skipped: &[Skipped],
) -> Summary {
    let over = &checked.over_admission_client.details;
    let adm = summarize(&checked.admission);
    Summary {
        mode: spec.mode.label(),
        bound_ms: match spec.mode {
            Mode::Eventual { max_staleness_ms } => Some(max_staleness_ms),
            Mode::Linearizable => None,
        },
        valid: checked.valid,
        violations: over.violations,
        max_excess: over.max_excess,
        excess_seconds: over.excess_seconds,
        admission_p50_ms: adm.as_ref().map(|s| s.p50_ms),
        admission_p99_ms: adm.as_ref().map(|s| s.p99_ms),
        ok_per_second: checked.successes as f64 / (end_ns as f64 / 1e9).max(1e-9),
        seconds_unavailable: checked.availability.details.seconds_unavailable,
        longest_stall_seconds: checked.stall.as_ref().map(|v| v.details.longest_seconds),
        dir: dir.to_path_buf(),
        skipped: skipped.to_vec(),
    }
}

/// Everything a run's report is written from.
pub(super) struct Report<'a> {
    pub spec: &'a TestSpec,
    pub dir: &'a Path,
    pub env: &'a Environment,
    pub concurrency: u64,
    pub ops: &'a [Op],
    pub windows: &'a [Window],
    pub limits: &'a BTreeMap<String, u64>,
    pub end_ns: u64,
    pub checked: &'a Checked,
    pub summary: &'a Summary,
}

/// Writes `results.json`, `analysis.md`, the plots and timeline, and the
/// history and verdicts at the end of `jepsen.log`.
pub(super) fn write(r: &Report) -> Result<()> {
    let Report {
        spec,
        dir,
        env,
        concurrency,
        ops,
        windows,
        limits,
        end_ns,
        checked,
        summary,
    } = r;
    let counts = op_counts(ops);
    // A table that cannot be computed costs the run its tables, not its verdict.
    let analysis = match crate::analysis::analyze(ops) {
        Ok(a) => {
            std::fs::write(dir.join("analysis.md"), crate::analysis::markdown(&a))
                .context("writing analysis.md")?;
            json!(a)
        }
        Err(e) => json!({"error": format!("{e:#}")}),
    };
    let results = json!({
        "valid": checked.valid,
        "workload": spec.workload,
        "mode": spec.mode.label(),
        "spec": spec,
        "network": env.network,
        "clock": env.clock,
        "faults_run": env.schedule.faults,
        "skipped": env.skipped,
        "clients": concurrency,
        "packet_faults": env.packet.report(),
        "checkers": checked.checkers,
        "availability": checked.availability,
        "nemesis": windows,
        "ops": counts,
        "admission_latency": summarize(&checked.admission),
        "summary": summary,
        "analysis": analysis,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )
    .context("writing results.json")?;
    crate::report::write(dir, ops, windows, limits, *end_ns)?;
    write_log(&dir.join("jepsen.log"), ops, checked)
}

fn op_counts(ops: &[Op]) -> Value {
    let mut counts: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.kind != OpType::Invoke) {
        let kind = match o.kind {
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
            OpType::Invoke => "invoke",
        };
        *counts
            .entry(o.f.clone())
            .or_default()
            .entry(kind)
            .or_default() += 1;
    }
    json!(counts)
}

/// A readable account of the run, after the harness's log lines: every
/// op, then the verdicts.
fn write_log(path: &Path, ops: &[Op], checked: &Checked) -> Result<()> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let mut out = String::from("\n== history\n");
    for o in ops {
        let kind = format!("{:?}", o.kind).to_lowercase();
        let process = match o.process {
            crate::history::Process::Client(p) => p.to_string(),
            crate::history::Process::Nemesis(_) => "nemesis".into(),
        };
        let _ = writeln!(
            out,
            "{:>10.3}s {process:>8} {kind:<6} {:<8} {}{}",
            o.time_ns as f64 / 1e9,
            o.f,
            o.value,
            o.error
                .as_ref()
                .map_or(String::new(), |e| format!("  error: {e}"))
        );
    }
    // Through a `Value`, as in results.json: keys sorted.
    let checkers = serde_json::to_value(&checked.checkers)?;
    let _ = writeln!(out, "\n{}", serde_json::to_string_pretty(&checkers)?);
    let _ = writeln!(out, "valid: {}", serde_json::to_string(&checked.valid)?);
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(out.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}
