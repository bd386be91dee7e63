//! Workloads: client processes that drive the cluster and record every
//! operation in the history.
//!
//! - `semaphore`: acquire and release straight against random RMs, for a
//!   few groups with small limits and no queue (a permit model);
//! - `queries`: simulated queries through random coordinators over Trino's
//!   protocol, followed to the end;
//! - `queue`: longer queries, more clients than the groups run and queue
//!   (so the queues stay full and some submissions are refused), followed
//!   through a load balancer's eyes: a poll whose coordinator died moves to
//!   another, which adopts the queued query (or says how it ended);
//! - `oom`: memory-heavy queries under the low-memory killer;
//! - `limits`: queries in a memory-limited group and a CPU-limited group
//!   (`softMemoryLimit`, `hardCpuLimit`), more than the limits let run;
//! - `sql`: real TPC-H queries at `tpch.tiny` in a group with a memory
//!   limit, their answers checked ([`sql`]).
//!
//! A client whose op ends `info` continues as a new process (its number
//! plus the concurrency), as in Jepsen.
//!
//! Every random choice a client makes comes from its seeded plan
//! ([`plan`]); the clients here are the one impure interpreter of it.

pub mod plan;
pub mod sql;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::HttpError;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::history::{OpType, Process, Recorder};
use crate::rm_client::RmClient;
use crate::trino::TrinoClient;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Semaphore,
    Queries,
    Queue,
    /// Memory-heavy queries on small worker pools, under the low-memory
    /// killer (delay 1 s).
    Oom,
    /// Queries in a group limited by memory (`softMemoryLimit`) and one
    /// limited by CPU (`hardCpuLimit`), more than the limits let run.
    Limits,
    /// Real TPC-H queries (`tpch.tiny`) in a group with a memory limit;
    /// every finished query's answer is checked.
    Sql,
}

/// What every client shares.
#[derive(Clone)]
pub struct Ctx {
    pub history: Arc<Recorder>,
    pub stop: watch::Receiver<bool>,
    pub concurrency: u64,
    /// Ops invoked and not completed, by process (completed as `info` if
    /// the run ends under them).
    pub open: Arc<Mutex<HashMap<u64, (String, Value)>>>,
}

impl Ctx {
    fn invoke(&self, p: u64, f: &str, value: Value) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p, (f.to_string(), value.clone()));
        self.history
            .record(Process::Client(p), OpType::Invoke, f, value, None);
    }

    fn complete(&self, p: u64, kind: OpType, f: &str, value: Value, error: Option<String>) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&p);
        self.history
            .record(Process::Client(p), kind, f, value, error);
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Completes every open op as `info` (the run ended under it).
    pub fn close_open(&self) {
        let open: Vec<(u64, (String, Value))> = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (p, (f, v)) in open {
            self.history.record(
                Process::Client(p),
                OpType::Info,
                &f,
                v,
                Some("the run ended before an answer".into()),
            );
        }
    }
}

/// 4xx: the request was refused and changed nothing. Anything else (a
/// timeout, a lost connection, 5xx) may or may not have taken effect.
fn definite(e: &HttpError) -> bool {
    e.status().is_some_and(|s| (400..500).contains(&s))
}

/// The semaphore's groups: name -> limit. No queue, so an acquire is
/// admitted or rejected.
pub const SEMAPHORE_GROUPS: [(&str, u32); 3] = [("s0", 1), ("s1", 2), ("s2", 3)];

pub fn semaphore_groups_json() -> String {
    let roots: Vec<Value> = SEMAPHORE_GROUPS
        .iter()
        .map(|(g, l)| json!({"name": g, "hardConcurrencyLimit": l, "maxQueued": 0}))
        .collect();
    json!({"rootGroups": roots, "selectors": [{"group": "s0"}]}).to_string()
}

pub struct SemaphoreClient {
    pub ctx: Ctx,
    pub rm: RmClient,
    pub rms: Vec<String>,
    /// The harness's session (replaced if it ever expires).
    pub session: Arc<common::session::SessionKeeper>,
    pub seed: u64,
}

impl SemaphoreClient {
    pub async fn run(self, first_process: u64) {
        let mut p = first_process;
        let steps = plan::semaphore(self.seed, first_process, self.rms.len());
        for (step, n) in steps.zip(1u64..) {
            if self.ctx.stopped() {
                break;
            }
            let group = step.group;
            let q = format!("p{p}-{n}");
            let addr = &self.rms[step.acquire_rm];
            let v = json!({"group": group, "query_id": q});
            self.ctx.invoke(p, "acquire", v.clone());
            let session = self.session.latest().unwrap_or_default();
            let admitted = match self.rm.acquire(addr, &q, group, session).await {
                Ok(a) => {
                    let admitted = a.status == crate::rm_client::AcquireStatus::Admitted;
                    self.ctx.complete(
                        p,
                        OpType::Ok,
                        "acquire",
                        json!({"group": group, "query_id": q, "status": a.status, "reason": a.reason}),
                        None,
                    );
                    admitted
                }
                Err(e) if definite(&e) => {
                    self.ctx
                        .complete(p, OpType::Fail, "acquire", v.clone(), Some(e.to_string()));
                    false
                }
                Err(e) => {
                    self.ctx
                        .complete(p, OpType::Info, "acquire", v.clone(), Some(e.to_string()));
                    p += self.ctx.concurrency;
                    // It may hold a permit: give it back.
                    true
                }
            };
            if !admitted {
                continue;
            }
            tokio::time::sleep(step.hold).await;
            // Release until an answer says what happened, round the RMs.
            for attempt in 0.. {
                let addr = &self.rms[(step.release_rm + attempt) % self.rms.len()];
                self.ctx.invoke(p, "release", v.clone());
                match self.rm.release(addr, &q).await {
                    Ok(outcome) => {
                        self.ctx.complete(
                            p,
                            OpType::Ok,
                            "release",
                            json!({"group": group, "query_id": q, "outcome": outcome}),
                            None,
                        );
                        break;
                    }
                    Err(e) => {
                        let kind = if definite(&e) {
                            OpType::Fail
                        } else {
                            OpType::Info
                        };
                        self.ctx
                            .complete(p, kind, "release", v.clone(), Some(e.to_string()));
                        if kind == OpType::Info {
                            p += self.ctx.concurrency;
                        }
                        if self.ctx.stopped() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
}

/// The queries workload's groups: `q` (limit 4) over `q.a` and `q.b`
/// (limit 2 each), 20 queued each; `consistency` for the whole tree.
pub fn query_groups_json(consistency: &Value) -> String {
    groups_json(consistency, 20)
}

/// Each leaf group's queue in the queue workload: small, so that
/// [`QUEUE_CLIENTS`] clients keep it full.
pub const QUEUE_MAX_QUEUED: u64 = 4;

/// Clients the queue workload runs at least: more than the groups hold
/// running (4) and queued (2 × [`QUEUE_MAX_QUEUED`]), so the queues fill
/// and some submissions are refused with `QUERY_QUEUE_FULL`.
pub const QUEUE_CLIENTS: u64 = 4 + 2 * QUEUE_MAX_QUEUED + 4;

/// The queue workload's groups: the queries workload's, with short queues.
pub fn queue_groups_json(consistency: &Value) -> String {
    groups_json(consistency, QUEUE_MAX_QUEUED)
}

/// `q` (limit 4) over `q.a` and `q.b` (limit 2 each, `max_queued` each).
fn groups_json(consistency: &Value, max_queued: u64) -> String {
    json!({
        "rootGroups": [{
            "name": "q", "hardConcurrencyLimit": 4, "maxQueued": 2 * max_queued,
            "consistency": consistency,
            "subGroups": [
                {"name": "a", "hardConcurrencyLimit": 2, "maxQueued": max_queued},
                {"name": "b", "hardConcurrencyLimit": 2, "maxQueued": max_queued}
            ]
        }],
        "selectors": [{"user": "alice", "group": "q.a"}, {"user": "bob", "group": "q.b"}]
    })
    .to_string()
}

/// The limits workload: `mem`'s soft memory limit lets two of its
/// queries (150 bytes each) hold memory and a third start; `cpu`'s hard CPU
/// limit of 3 s, regenerated at 1 s per second, lets about one of its
/// queries (2 s of CPU each) start every two seconds once the first ran.
/// Concurrency limits are wide: memory and CPU are what limit.
pub const LIMITS_SOFT_MEMORY_BYTES: u64 = 300;
pub const LIMITS_QUERY_MEMORY_BYTES: u64 = 150;
pub const LIMITS_HARD_CPU_MS: u64 = 3_000;
pub const LIMITS_CPU_QUOTA_MS_PER_S: u64 = 1_000;
pub const LIMITS_QUERY_CPU_MS: u64 = 2_000;
/// Clients the limits workload runs at least: more than either limit lets
/// run, in each group.
pub const LIMITS_CLIENTS: u64 = 12;

pub fn limits_groups_json(consistency: &Value) -> String {
    json!({
        "rootGroups": [
            {"name": "mem", "hardConcurrencyLimit": 8, "maxQueued": 40,
             "softMemoryLimit": format!("{LIMITS_SOFT_MEMORY_BYTES}B"), "consistency": consistency},
            {"name": "cpu", "hardConcurrencyLimit": 8, "maxQueued": 40,
             "hardCpuLimit": format!("{LIMITS_HARD_CPU_MS}ms"), "consistency": consistency}
        ],
        "selectors": [{"user": "mona", "group": "mem"}, {"user": "carl", "group": "cpu"}],
        // Hard 3 s over a 3 s period: 1 s of CPU regenerated per second.
        "cpuQuotaPeriod": format!("{}ms", LIMITS_HARD_CPU_MS * 1000 / LIMITS_CPU_QUOTA_MS_PER_S)
    })
    .to_string()
}

/// The oom workload's one group: wide, so memory is what limits.
/// The sql workload's group: three queries at once, 600 MB of measured
/// memory among them (`softMemoryLimit`), a queue.
pub fn sql_groups_json(consistency: &Value) -> String {
    json!({
        "rootGroups": [{"name": "sql", "hardConcurrencyLimit": 3, "maxQueued": 100,
            "softMemoryLimit": "600MB", "consistency": consistency}],
        "selectors": [{"group": "sql"}]
    })
    .to_string()
}

pub fn oom_groups_json(consistency: &Value) -> String {
    json!({
        "rootGroups": [{"name": "m", "hardConcurrencyLimit": 16, "maxQueued": 50, "consistency": consistency}],
        "selectors": [{"group": "m"}]
    })
    .to_string()
}

pub struct QueryClient {
    pub ctx: Ctx,
    pub trino: TrinoClient,
    pub coordinators: Vec<String>,
    pub seed: u64,
    /// What its queries look like (the plan picks among it).
    pub mix: plan::QueryMix,
}

impl QueryClient {
    /// What a step submits: a real statement (with its name), or a
    /// simulated query's session properties.
    fn statement(&self, step: &plan::QueryStep) -> (&'static str, Option<&'static str>) {
        match step.statement {
            Some(i) => {
                let (name, text) = sql::queries()[i];
                (text, Some(name))
            }
            None => ("SELECT simulated", None),
        }
    }

    pub async fn run(self, first_process: u64) {
        let mut p = first_process;
        let history = self.ctx.history.clone();
        let now = move || history.now_ns();
        let steps = plan::queries(self.seed, first_process, &self.mix, self.coordinators.len());
        for step in steps {
            if self.ctx.stopped() {
                break;
            }
            let (user, group, ms) = (step.user, step.group, step.duration_ms);
            let coordinator = &self.coordinators[step.coordinator];
            let cpu_ms = self.mix.cpu_ms.unwrap_or(ms);
            let (text, statement) = self.statement(&step);
            let mut v = json!({"user": user, "group": group, "coordinator": coordinator, "duration_ms": ms,
                "memory_bytes": step.memory_bytes, "cpu_ms": cpu_ms});
            let (session, path) = match statement {
                Some(name) => {
                    v["statement"] = json!(name);
                    (Vec::new(), Some((sql::CATALOG, sql::SCHEMA)))
                }
                None => (
                    vec![
                        ("simulate_duration_ms", ms.to_string()),
                        ("simulate_memory_bytes", step.memory_bytes.to_string()),
                        ("simulate_cpu_ms", cpu_ms.to_string()),
                    ],
                    None,
                ),
            };
            self.ctx.invoke(p, "query", v.clone());
            match self
                .trino
                .run_in(coordinator, user, text, &session, path, &now)
                .await
            {
                Ok(e) => {
                    let mut value = json!({"group": group, "query_id": e.id, "coordinator": coordinator,
                        "running_from_ns": e.running_from_ns, "running_until_ns": e.running_until_ns,
                        "was_queued": e.was_queued});
                    if let Some(name) = statement {
                        value["statement"] = json!(name);
                        value["rows"] = json!(e.data.len());
                        value["data"] = Value::Array(e.data.clone());
                    }
                    let kind = if e.state == "FINISHED" {
                        OpType::Ok
                    } else {
                        value["error_name"] = json!(e.error_name());
                        value["message"] = e
                            .error
                            .as_ref()
                            .map_or(Value::Null, |x| x["message"].clone());
                        OpType::Fail
                    };
                    let full = value["error_name"] == "QUERY_QUEUE_FULL";
                    self.ctx.complete(p, kind, "query", value, None);
                    if full {
                        // As a real client would: no resubmission storm.
                        tokio::time::sleep(step.backoff).await;
                    }
                }
                Err(e) => {
                    let mut v = v;
                    if e.downcast_ref::<crate::trino::UnansweredSubmission>()
                        .is_some()
                    {
                        // No answer at all: the system never acknowledged it.
                        v["unanswered_submission"] = json!(true);
                    }
                    self.ctx
                        .complete(p, OpType::Info, "query", v, Some(format!("{e:#}")));
                    p += self.ctx.concurrency;
                }
            }
        }
    }
}
