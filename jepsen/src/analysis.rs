//! Analysis tables, computed with polars from the history alone (so `jepsen
//! check` recomputes them from a saved run):
//!
//! - per operation (`f`) and outcome type: count, and latency p50, p95,
//!   p99 and max (invocation to completion; an op that never completed
//!   counts, without a latency);
//! - per fault family active at the op's invocation (`none` outside every
//!   fault): the family's seconds, ok/fail/info counts, ok per second, and
//!   the p99 latency of the ok ops.
//!
//! Fault windows come from the nemesis ops: an `info` op of a fault family
//! opens a window, the next `info` `heal` closes it. Percentiles are
//! nearest-rank (polars' `Equiprobable`), like [`crate::stats`].

use anyhow::{Context, Result};
use polars::prelude::{col, len, lit, DataFrame, DataType, IntoLazy, QuantileMethod};
use serde::{Deserialize, Serialize};

use crate::history::{pairs, Op, OpType, NEMESIS};

/// The label of time outside every fault window.
pub const NO_FAULT: &str = "none";

/// Nemesis ops that are no fault family of their own.
const NOT_FAULTS: [&str; 4] = ["heal", "heal-all", "heal-membership", "session-expired"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRow {
    pub f: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRow {
    pub fault: String,
    pub seconds: f64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub ok_per_second: f64,
    pub ok_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub by_op: Vec<OpRow>,
    pub by_fault: Vec<FaultRow>,
}

/// A fault family's window: `[start_ns, end_ns)`.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    family: String,
    start_ns: u64,
    end_ns: u64,
}

/// Fault windows from the nemesis ops; one still open at the end closes at
/// `end_ns`.
fn windows(ops: &[Op], end_ns: u64) -> Vec<Window> {
    let mut out = Vec::new();
    let mut open: Option<(String, u64)> = None;
    for o in ops
        .iter()
        .filter(|o| o.process == NEMESIS && o.kind == OpType::Info)
    {
        if o.f == "heal" {
            if let Some((family, start_ns)) = open.take() {
                out.push(Window {
                    family,
                    start_ns,
                    end_ns: o.time_ns,
                });
            }
        } else if !NOT_FAULTS.contains(&o.f.as_str()) && open.is_none() {
            open = Some((o.f.clone(), o.time_ns));
        }
    }
    if let Some((family, start_ns)) = open {
        out.push(Window {
            family,
            start_ns,
            end_ns: end_ns.max(start_ns),
        });
    }
    out
}

fn type_name(t: OpType) -> &'static str {
    match t {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info",
    }
}

/// Both tables for a history.
pub fn analyze(ops: &[Op]) -> Result<Analysis> {
    let end_ns = ops.iter().map(|o| o.time_ns).max().unwrap_or(0);
    let wins = windows(ops, end_ns);
    let (mut fs, mut kinds, mut lat, mut fam) = (vec![], vec![], vec![], vec![]);
    for p in pairs(ops) {
        let t = p.invoke.time_ns;
        fs.push(p.invoke.f.clone());
        kinds.push(type_name(p.outcome()));
        lat.push(p.complete.map(|c| c.time_ns.saturating_sub(t) as f64 / 1e6));
        fam.push(
            wins.iter()
                .find(|w| w.start_ns <= t && t < w.end_ns)
                .map_or(NO_FAULT, |w| w.family.as_str())
                .to_string(),
        );
    }
    let df = polars::df!(
        "f" => fs,
        "type" => kinds,
        "latency_ms" => lat,
        "fault" => fam,
    )
    .context("building the ops table")?;
    let q = |p: f64| col("latency_ms").quantile(lit(p), QuantileMethod::Equiprobable);
    let by_op = df
        .clone()
        .lazy()
        .group_by([col("f"), col("type")])
        .agg([
            len().cast(DataType::UInt64).alias("count"),
            q(0.50).alias("p50_ms"),
            q(0.95).alias("p95_ms"),
            q(0.99).alias("p99_ms"),
            col("latency_ms").max().alias("max_ms"),
        ])
        .sort(["f", "type"], Default::default())
        .collect()
        .context("grouping by operation")?;
    let is = |t: &str| col("type").eq(lit(t));
    let by_fault = df
        .lazy()
        .group_by([col("fault")])
        .agg([
            is("ok").sum().cast(DataType::UInt64).alias("ok"),
            is("fail").sum().cast(DataType::UInt64).alias("fail"),
            is("info").sum().cast(DataType::UInt64).alias("info"),
            col("latency_ms")
                .filter(is("ok"))
                .quantile(lit(0.99), QuantileMethod::Equiprobable)
                .alias("ok_p99_ms"),
        ])
        .sort(["fault"], Default::default())
        .collect()
        .context("grouping by fault")?;
    Ok(Analysis {
        by_op: op_rows(&by_op)?,
        by_fault: fault_rows(&by_fault, &wins, end_ns)?,
    })
}

fn strs(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let c = df.column(name).with_context(|| format!("column {name}"))?;
    let ca = c.str().with_context(|| format!("column {name}"))?;
    Ok((0..ca.len())
        .map(|i| ca.get(i).unwrap_or_default().to_string())
        .collect())
}

fn floats(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let c = df.column(name).with_context(|| format!("column {name}"))?;
    let ca = c.f64().with_context(|| format!("column {name}"))?;
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

fn counts(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    let c = df.column(name).with_context(|| format!("column {name}"))?;
    let ca = c.u64().with_context(|| format!("column {name}"))?;
    Ok((0..ca.len())
        .map(|i| ca.get(i).unwrap_or_default())
        .collect())
}

fn op_rows(df: &DataFrame) -> Result<Vec<OpRow>> {
    let (f, kind, count) = (strs(df, "f")?, strs(df, "type")?, counts(df, "count")?);
    let (p50, p95) = (floats(df, "p50_ms")?, floats(df, "p95_ms")?);
    let (p99, max) = (floats(df, "p99_ms")?, floats(df, "max_ms")?);
    Ok((0..df.height())
        .map(|i| OpRow {
            f: f[i].clone(),
            kind: kind[i].clone(),
            count: count[i],
            p50_ms: p50[i],
            p95_ms: p95[i],
            p99_ms: p99[i],
            max_ms: max[i],
        })
        .collect())
}

fn fault_rows(df: &DataFrame, wins: &[Window], end_ns: u64) -> Result<Vec<FaultRow>> {
    let fault = strs(df, "fault")?;
    let (ok, fail, info) = (counts(df, "ok")?, counts(df, "fail")?, counts(df, "info")?);
    let p99 = floats(df, "ok_p99_ms")?;
    let faulted_ns: u64 = wins.iter().map(|w| w.end_ns - w.start_ns).sum();
    let seconds = |family: &str| -> f64 {
        let ns = if family == NO_FAULT {
            end_ns.saturating_sub(faulted_ns)
        } else {
            wins.iter()
                .filter(|w| w.family == family)
                .map(|w| w.end_ns - w.start_ns)
                .sum()
        };
        ns as f64 / 1e9
    };
    Ok((0..df.height())
        .map(|i| {
            let s = seconds(&fault[i]);
            FaultRow {
                fault: fault[i].clone(),
                seconds: s,
                ok: ok[i],
                fail: fail[i],
                info: info[i],
                ok_per_second: if s > 0.0 { ok[i] as f64 / s } else { 0.0 },
                ok_p99_ms: p99[i],
            }
        })
        .collect())
}

/// A Markdown table.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let rule: Vec<String> = header.iter().map(|_| "---".to_string()).collect();
    let mut out = line(&head) + &line(&rule);
    for r in rows {
        out += &line(&r);
    }
    out
}

/// Both tables as Markdown, for `analysis.md`.
pub fn markdown(a: &Analysis) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let by_op = table(
        &["f", "type", "count", "p50", "p95", "p99", "max"],
        a.by_op.iter().map(|r| {
            vec![
                r.f.clone(),
                r.kind.clone(),
                r.count.to_string(),
                ms(r.p50_ms),
                ms(r.p95_ms),
                ms(r.p99_ms),
                ms(r.max_ms),
            ]
        }),
    );
    let by_fault = table(
        &[
            "fault",
            "seconds",
            "ok",
            "fail",
            "info",
            "ok/s",
            "ok p99 (ms)",
        ],
        a.by_fault.iter().map(|r| {
            vec![
                r.fault.clone(),
                format!("{:.1}", r.seconds),
                r.ok.to_string(),
                r.fail.to_string(),
                r.info.to_string(),
                format!("{:.1}", r.ok_per_second),
                ms(r.ok_p99_ms),
            ]
        }),
    );
    format!(
        "# Analysis\n\nPer operation and outcome (latency from invocation to completion, ms; \
         nearest-rank percentiles):\n\n{by_op}\n\
         Per fault family active when the op was invoked (`none`: no fault):\n\n{by_fault}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;
    use serde_json::json;

    fn op(time_ms: u64, process: Process, kind: OpType, f: &str) -> Op {
        Op {
            index: 0,
            time_ns: time_ms * 1_000_000,
            process,
            kind,
            f: f.into(),
            value: json!(null),
            error: None,
        }
    }

    /// 0–10 s; a kill from 2 s to 4 s. Client 1: two acquires (10 ms ok,
    /// 30 ms ok), a release that fails after 5 ms (during the kill), an
    /// acquire that never completes (invoked during the kill).
    fn history() -> Vec<Op> {
        use OpType::*;
        let c = Process::Client;
        vec![
            op(0, c(1), Invoke, "acquire"),
            op(10, c(1), Ok, "acquire"),
            op(1000, c(1), Invoke, "acquire"),
            op(1030, c(1), Ok, "acquire"),
            op(2000, NEMESIS, Invoke, "kill"),
            op(2000, NEMESIS, Info, "kill"),
            op(2500, c(1), Invoke, "release"),
            op(2505, c(1), Fail, "release"),
            op(3000, c(2), Invoke, "acquire"),
            op(4000, NEMESIS, Invoke, "heal"),
            op(4000, NEMESIS, Info, "heal"),
            op(10000, NEMESIS, Info, "heal-all"),
        ]
    }

    #[test]
    fn per_operation_counts_and_latencies() {
        let a = analyze(&history()).unwrap();
        let row = |f: &str, t: &str| {
            a.by_op
                .iter()
                .find(|r| r.f == f && r.kind == t)
                .unwrap_or_else(|| panic!("no row {f} {t}: {:?}", a.by_op))
                .clone()
        };
        let ok = row("acquire", "ok");
        assert_eq!(ok.count, 2);
        assert_eq!(ok.p50_ms, Some(10.0));
        assert_eq!(ok.p99_ms, Some(30.0));
        assert_eq!(ok.max_ms, Some(30.0));
        // Never completed: counted as info, with no latency.
        let info = row("acquire", "info");
        assert_eq!((info.count, info.max_ms), (1, None));
        assert_eq!(row("release", "fail").p50_ms, Some(5.0));
        assert_eq!(a.by_op.len(), 3);
    }

    #[test]
    fn per_fault_family_at_invocation() {
        let a = analyze(&history()).unwrap();
        let kill = a.by_fault.iter().find(|r| r.fault == "kill").unwrap();
        assert_eq!((kill.ok, kill.fail, kill.info), (0, 1, 1));
        assert!((kill.seconds - 2.0).abs() < 1e-9);
        assert_eq!(kill.ok_p99_ms, None);
        let none = a.by_fault.iter().find(|r| r.fault == NO_FAULT).unwrap();
        assert_eq!((none.ok, none.fail, none.info), (2, 0, 0));
        assert!((none.seconds - 8.0).abs() < 1e-9);
        assert!((none.ok_per_second - 0.25).abs() < 1e-9);
        assert_eq!(none.ok_p99_ms, Some(30.0));
        let md = markdown(&a);
        assert!(md.contains("| kill | 2.0 | 0 | 1 | 1 | 0.0 | - |"), "{md}");
    }

    #[test]
    fn a_fault_never_healed_lasts_to_the_end() {
        let mut h = history();
        h.retain(|o| o.f != "heal");
        let w = windows(&h, 10_000_000_000);
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].start_ns, w[0].end_ns),
            (2_000_000_000, 10_000_000_000)
        );
    }
}
