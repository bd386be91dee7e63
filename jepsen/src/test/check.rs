//! The check phase: every checker of the workload over the history and
//! the run's end state (also `jepsen check`, on a saved run), with the
//! intervals and latencies the checkers and the summary read off the
//! history.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use common::api::TaskInfo;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::quiesce::EndState;
use super::LINEARIZABILITY_BUDGET;
use crate::checker::availability::Availability;
use crate::checker::overlap::{Interval, Overlap};
use crate::checker::{self, Validity, Verdict};
use crate::history::{pairs, Op, OpType};
use crate::workload::{self, Workload};

/// Every verdict on a run, and what the summary reads beside them.
pub struct Checked {
    pub valid: Validity,
    /// Every checker's verdict, by name, as `results.json` shows them.
    pub checkers: BTreeMap<&'static str, Verdict>,
    /// Over-admission as the clients saw it (also in `checkers`).
    pub over_admission_client: Verdict<Overlap>,
    pub availability: Verdict<Availability>,
    /// Stalls of admission in fault-free time (queries and queue).
    pub stall: Option<Verdict<checker::stall::Stalls>>,
    pub successes: usize,
    pub admission: Vec<Duration>,
}

/// Every checker of `workload` over a history and the run's end state.
pub fn check_all(
    workload: Workload,
    ops: &[Op],
    limits: &BTreeMap<String, u64>,
    max_staleness_ms: u64,
    end: &EndState,
) -> Checked {
    let mut checkers: BTreeMap<&'static str, Verdict> = BTreeMap::new();
    let successes: Vec<u64>;
    let admission: Vec<Duration>;
    let over_admission_client: Verdict<Overlap>;
    let mut stall = None;
    match workload {
        Workload::Semaphore => {
            let l: HashMap<String, usize> = limits
                .iter()
                .map(|(g, n)| (g.clone(), *n as usize))
                .collect();
            let mut linearizable = checker::semaphore::check(ops, &l, LINEARIZABILITY_BUDGET);
            if ops.iter().any(|o| o.f == "session-expired") {
                // Revocations took permits outside the model.
                linearizable.valid = Validity::Unknown;
                linearizable.details["note"] =
                    json!("the harness's session expired during the run: permits were revoked outside the semaphore model");
            }
            checkers.insert("linearizable", linearizable);
            over_admission_client = checker::overlap::check(
                "client (acquire ok .. release invoked)",
                &permit_intervals(ops),
                limits,
            );
            successes = completions(ops, "acquire", |c| c.value["status"] == "admitted");
            admission = latencies(ops, "acquire");
        }
        Workload::Queries | Workload::Queue | Workload::Oom | Workload::Limits | Workload::Sql => {
            if workload == Workload::Sql {
                // The answers the engine gives on the data the workers
                // generated (the harness's cluster uses the default cache).
                let expected = crate::workload::sql::expected(&engine::tpch::default_cache());
                checkers.insert(
                    "answers_correct",
                    checker::answers::check(ops, &expected).to_json(),
                );
            }
            if workload == Workload::Limits {
                let (memory, cpu) = limits_check(ops, end, max_staleness_ms);
                checkers.insert("memory_limit_respected", memory.to_json());
                checkers.insert("cpu_limit_respected", cpu.to_json());
            }
            if workload == Workload::Oom {
                checkers.insert(
                    "one_oom_kill_per_episode",
                    checker::oom::check(ops, end.memory.as_ref().map(|m| m.kills.as_slice())),
                );
            }
            over_admission_client = checker::overlap::check(
                "client (certainly running)",
                &running_intervals(ops),
                limits,
            );
            checkers.insert(
                "over_admission_workers",
                checker::overlap::check(
                    "workers (task start .. end)",
                    &task_intervals(ops, &end.worker_tasks, end.start_wall_ms),
                    limits,
                )
                .to_json(),
            );
            checkers.insert(
                "no_lost_or_duplicated_queries",
                checker::completeness::check(ops, workload == Workload::Queue),
            );
            if workload != Workload::Oom {
                // A group at its hard CPU limit waits, by design, with
                // nothing running, until its quota regenerates.
                let skip = if workload == Workload::Limits {
                    "cpu"
                } else {
                    ""
                };
                let v = stall_check(ops, end, skip);
                checkers.insert("no_admission_stall", v.to_json());
                stall = Some(v);
            }
            successes = completions(ops, "query", |c| c.kind == OpType::Ok);
            admission = query_admission(ops);
        }
    }
    checkers.insert("over_admission_client", over_admission_client.to_json());
    if let Some(v) = &end.voters {
        checkers.insert("membership_restored", checker::membership::check(v));
    }
    if let Some(v) = checker::storage::check(ops) {
        checkers.insert("storage_faults_recovered", v);
    }
    if let Some(v) = checker::hostile::check(ops) {
        checkers.insert("hostile_requests_answered", v);
    }
    checkers.insert(
        "no_leaked_admissions",
        Verdict::new(
            if end.still_held.is_empty() {
                Validity::Valid
            } else {
                Validity::Invalid
            },
            json!({"still_held_after_quiescence": end.still_held}),
        ),
    );
    let availability =
        checker::availability::check(&successes, &end.windows, end.end_ns, 1_000_000_000);
    let valid = Validity::all(
        checkers
            .values()
            .map(|v| v.valid)
            .chain([availability.valid]),
    );
    Checked {
        valid,
        checkers,
        over_admission_client,
        availability,
        stall,
        successes: successes.len(),
        admission,
    }
}

/// What `jepsen check` finds on a saved run.
#[derive(Debug, Serialize)]
pub struct Rechecked {
    pub valid: Validity,
    pub checkers: BTreeMap<&'static str, Verdict>,
    pub availability: Verdict<Availability>,
    pub analysis: crate::analysis::Analysis,
}

/// Re-runs the checkers on a saved run directory.
pub fn check_saved(dir: &Path) -> Result<Rechecked> {
    let results: SavedResults = serde_json::from_slice(
        &std::fs::read(dir.join("results.json")).context("reading results.json")?,
    )
    .context("results.json")?;
    let groups_text = std::fs::read_to_string(dir.join("resource-groups.json"))
        .context("reading resource-groups.json")?;
    let limits = limits_of(&groups_text)?;
    let end: EndState = serde_json::from_slice(
        &std::fs::read(dir.join("end-state.json")).context("reading end-state.json")?,
    )
    .context("end-state.json")?;
    let ops = crate::history::load(&dir.join("history.jsonl"))?;
    let c = check_all(
        results.workload,
        &ops,
        &limits,
        max_staleness_of(&groups_text),
        &end,
    );
    let analysis = crate::analysis::analyze(&ops)?;
    Ok(Rechecked {
        valid: c.valid,
        checkers: c.checkers,
        availability: c.availability,
        analysis,
    })
}

/// What `jepsen check` reads of a saved `results.json`.
#[derive(Debug, Deserialize)]
struct SavedResults {
    workload: Workload,
}

/// group id -> hard concurrency limit, from the resource-groups file.
pub fn limits_of(text: &str) -> Result<BTreeMap<String, u64>> {
    let v: Value = serde_json::from_str(text)?;
    let mut out = BTreeMap::new();
    fn walk(groups: &Value, prefix: &str, out: &mut BTreeMap<String, u64>) {
        for g in groups.as_array().into_iter().flatten() {
            let name = g["name"].as_str().unwrap_or_default();
            let id = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            if let Some(l) = g["hardConcurrencyLimit"].as_u64() {
                out.insert(id.clone(), l);
            }
            walk(&g["subGroups"], &id, out);
        }
    }
    walk(&v["rootGroups"], "", &mut out);
    Ok(out)
}

/// Permits certainly held: from the acquire's `admitted` answer to the
/// invocation of its release.
fn permit_intervals(ops: &[Op]) -> Vec<Interval> {
    let mut granted: HashMap<&str, (&str, u64)> = HashMap::new();
    let mut out = Vec::new();
    for p in pairs(ops) {
        let q = p.invoke.value["query_id"].as_str().unwrap_or_default();
        let g = p.invoke.value["group"].as_str().unwrap_or_default();
        match (p.invoke.f.as_str(), p.complete) {
            ("acquire", Some(c)) if c.kind == OpType::Ok && c.value["status"] == "admitted" => {
                granted.insert(q, (g, c.time_ns));
            }
            ("release", _) => {
                if let Some((g, from)) = granted.remove(q) {
                    out.push(Interval {
                        group: g.to_string(),
                        from_ns: from,
                        until_ns: p.invoke.time_ns,
                        query_id: q.to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Queries certainly running, as their clients saw them.
fn running_intervals(ops: &[Op]) -> Vec<Interval> {
    pairs(ops)
        .into_iter()
        .filter(|p| p.invoke.f == "query")
        .filter_map(|p| {
            let c = p.complete?;
            Some(Interval {
                group: c.value["group"].as_str()?.to_string(),
                from_ns: c.value["running_from_ns"].as_u64()?,
                until_ns: c.value["running_until_ns"].as_u64()?,
                query_id: c.value["query_id"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// After a fault heals, how long admission may take to come back before
/// waiting work with nothing running counts as a stall: an election, a
/// restarted process catching up and registering again.
pub const STALL_GRACE: Duration = Duration::from_secs(5);
/// The shortest stretch that counts as a stall.
pub const STALL_MIN: Duration = Duration::from_secs(2);

/// Fault-free stretches with queries waiting under a root group and none
/// of it running (see [`checker::stall`]).
fn stall_check(ops: &[Op], end: &EndState, skip_root: &str) -> Verdict<checker::stall::Stalls> {
    let root = |group: &str| group.split('.').next().unwrap_or(group).to_string();
    let waiting: Vec<checker::stall::Span> = pairs(ops)
        .into_iter()
        .filter(|p| p.invoke.f == "query")
        .filter_map(|p| {
            let group = p.invoke.value["group"].as_str()?;
            let until_ns = match p.complete {
                Some(c) => c.value["running_from_ns"].as_u64().unwrap_or(c.time_ns),
                None => end.end_ns,
            };
            Some(checker::stall::Span {
                root: root(group),
                from_ns: p.invoke.time_ns,
                until_ns,
            })
        })
        .filter(|s| s.root != skip_root)
        .collect();
    let running: Vec<checker::stall::Span> = running_intervals(ops)
        .into_iter()
        .filter(|i| root(&i.group) != skip_root)
        .map(|i| checker::stall::Span {
            root: root(&i.group),
            from_ns: i.from_ns,
            until_ns: i.until_ns,
        })
        .collect();
    checker::stall::check(
        &waiting,
        &running,
        &end.windows,
        end.end_ns,
        STALL_GRACE.as_nanos() as u64,
        STALL_MIN.as_nanos() as u64,
    )
}

/// How long after a query starts the RMs surely count its memory and CPU:
/// a worker heartbeat, a usage stamp (1 s), a commit, a client's poll,
/// with room to spare; eventual groups add their staleness bound.
pub const LIMITS_MARGIN: Duration = Duration::from_secs(3);

/// The limits workload's memory and CPU checks (see [`checker::limits`]).
fn limits_check(
    ops: &[Op],
    end: &EndState,
    max_staleness_ms: u64,
) -> (
    Verdict<checker::limits::LimitReport>,
    Verdict<checker::limits::LimitReport>,
) {
    let figures: HashMap<String, (u64, u64)> = pairs(ops)
        .into_iter()
        .filter(|p| p.invoke.f == "query")
        .filter_map(|p| {
            let c = p.complete?;
            let id = c.value["query_id"].as_str()?.to_string();
            let memory = p.invoke.value["memory_bytes"].as_u64()?;
            let cpu = p.invoke.value["cpu_ms"].as_u64()?;
            Some((id, (memory, cpu)))
        })
        .collect();
    let ran_in = |group: &str| -> Vec<checker::limits::Ran> {
        running_intervals(ops)
            .into_iter()
            .filter(|i| i.group == group)
            .filter_map(|i| {
                let (memory_bytes, cpu_ms) = figures.get(&i.query_id).copied()?;
                Some(checker::limits::Ran {
                    query_id: i.query_id,
                    from_ns: i.from_ns,
                    until_ns: i.until_ns,
                    memory_bytes,
                    cpu_ms,
                })
            })
            .collect()
    };
    let margin = (LIMITS_MARGIN + Duration::from_millis(max_staleness_ms)).as_nanos() as u64;
    let grace = STALL_GRACE.as_nanos() as u64;
    (
        checker::limits::check_memory(
            "mem",
            &ran_in("mem"),
            workload::LIMITS_SOFT_MEMORY_BYTES,
            margin,
            &end.windows,
            grace,
        ),
        checker::limits::check_cpu(
            "cpu",
            &ran_in("cpu"),
            workload::LIMITS_HARD_CPU_MS,
            workload::LIMITS_CPU_QUOTA_MS_PER_S,
            margin,
            &end.windows,
            grace,
        ),
    )
}

/// The largest eventual-mode staleness bound in a resource-groups file (0:
/// none).
pub fn max_staleness_of(text: &str) -> u64 {
    fn walk(v: &Value) -> u64 {
        match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| match (k.as_str(), v.as_u64()) {
                    ("maxStalenessMs", Some(ms)) => ms,
                    _ => walk(v),
                })
                .max()
                .unwrap_or(0),
            Value::Array(a) => a.iter().map(walk).max().unwrap_or(0),
            _ => 0,
        }
    }
    serde_json::from_str(text).map(|v| walk(&v)).unwrap_or(0)
}

/// Tasks as the workers ran them (their wall clock, on this machine).
fn task_intervals(ops: &[Op], tasks: &[TaskInfo], start_wall_ms: u64) -> Vec<Interval> {
    let group_of: HashMap<&str, &str> = ops
        .iter()
        .filter(|o| o.f == "query" && o.kind != OpType::Invoke)
        .filter_map(|o| Some((o.value["query_id"].as_str()?, o.value["group"].as_str()?)))
        .collect();
    let ns = |ms: u64| ms.saturating_sub(start_wall_ms) * 1_000_000;
    tasks
        .iter()
        .filter_map(|t| {
            let q = t.spec.query_id.as_str();
            Some(Interval {
                group: group_of.get(q)?.to_string(),
                from_ns: ns(t.started_ms?),
                until_ns: ns(t.finished_ms?),
                query_id: q.to_string(),
            })
        })
        .collect()
}

fn completions(ops: &[Op], f: &str, pred: impl Fn(&Op) -> bool) -> Vec<u64> {
    ops.iter()
        .filter(|o| o.f == f && o.kind != OpType::Invoke && pred(o))
        .map(|o| o.time_ns)
        .collect()
}

fn latencies(ops: &[Op], f: &str) -> Vec<Duration> {
    pairs(ops)
        .into_iter()
        .filter(|p| p.invoke.f == f && p.outcome() == OpType::Ok)
        .filter_map(|p| {
            p.complete
                .map(|c| Duration::from_nanos(c.time_ns - p.invoke.time_ns))
        })
        .collect()
}

/// Submit until the client first saw the query running.
fn query_admission(ops: &[Op]) -> Vec<Duration> {
    pairs(ops)
        .into_iter()
        .filter(|p| p.invoke.f == "query")
        .filter_map(|p| {
            let from = p.complete?.value["running_from_ns"].as_u64()?;
            Some(Duration::from_nanos(from.saturating_sub(p.invoke.time_ns)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload;

    #[test]
    fn limits_come_from_the_groups_file_with_chain_ids() {
        let l = limits_of(&workload::query_groups_json(
            &json!({"mode": "linearizable"}),
        ))
        .unwrap();
        assert_eq!(l["q"], 4);
        assert_eq!(l["q.a"], 2);
        let s = limits_of(&workload::semaphore_groups_json()).unwrap();
        assert_eq!(s["s0"], 1);
    }
}
