//! `jepsen test`: one run of a workload under a nemesis schedule, on real
//! processes, checked and reported in its run directory:
//! `history.jsonl`, `results.json`, `jepsen.log`, the resource groups it ran
//! with, node logs, plots (`latency.svg`, `running.svg`, `throughput.svg`),
//! `timeline.html` and `analysis.md`.

use common::clock::Clock;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Mutex};

use crate::checker::{self, overlap::Interval, Validity, Verdict};
use crate::cluster::{ClusterSpec, DataPlaneSpec, LocalCluster};
use crate::history::{pairs, Op, OpType, Recorder};
use crate::nemesis::{self, Schedule};
use crate::progress::Phase;
use crate::stats::summarize;
use crate::trino::TrinoClient;
use crate::workload::{self, Ctx, QueryClient, SemaphoreClient, Workload};

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
    /// The RMs' session lease: a paused coordinator outlives it.
    pub session_lease_ms: u64,
    /// Stay on loopback even where network namespaces are possible.
    pub loopback: bool,
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
    let groups_text = match spec.workload {
        Workload::Semaphore => {
            if spec.mode != Mode::Linearizable {
                bail!("the semaphore workload runs against the RMs directly: linearizable only");
            }
            workload::semaphore_groups_json()
        }
        Workload::Queries => workload::query_groups_json(&spec.mode.consistency()),
        Workload::Queue => workload::queue_groups_json(&spec.mode.consistency()),
        Workload::Oom => workload::oom_groups_json(&spec.mode.consistency()),
    };
    let groups_file = dir.join("resource-groups.json");
    std::fs::write(&groups_file, &groups_text)?;
    let limits = limits_of(&groups_text)?;

    let progress = crate::progress::Progress::new(&spec.mode.label());
    let env = probe_environment(spec)?;
    progress.phase(Phase::Probe, &env.network);
    for s in &env.skipped {
        progress.phase(Phase::Probe, &format!("skipped {}: {}", s.feature, s.why));
    }
    let Environment {
        net,
        network,
        packet,
        faketime,
        clock,
        schedule,
        skipped,
    } = env;
    let mut cluster = LocalCluster::start(ClusterSpec {
        net,
        faketime,
        nodes: spec.nodes,
        base_port: 0,
        dir: dir.clone(),
        bin_dir: spec.bin_dir.clone(),
        node_args: vec![
            "--resource-groups".into(),
            groups_file.display().to_string(),
            "--session-lease-ms".into(),
            spec.session_lease_ms.to_string(),
            // Queued queries of a dead coordinator wait to be adopted; in a
            // test nobody adopts them, so they must time out (with a
            // reason) before the run ends.
            "--queue-timeout-ms".into(),
            QUEUE_TIMEOUT_MS.to_string(),
            // Upstream's default is minutes; a test has seconds.
            "--low-memory-killer-delay".into(),
            "1s".into(),
        ],
    })?;
    let rms = cluster.addr_list();
    let rm_http = cluster.internal_http(Duration::from_secs(2))?;
    let rm = crate::rm_client::RmClient::new(rm_http);
    if cluster
        .client
        .wait_leader(&rms, Duration::from_secs(20))
        .await
        .is_none()
    {
        bail!("no leader within 20 s");
    }
    if !cluster
        .client
        .wait_config(&rms[0], Duration::from_secs(20))
        .await
    {
        bail!("the resource-group configuration was not applied within 20 s");
    }
    if spec.workload != Workload::Semaphore {
        cluster.start_data_plane(&DataPlaneSpec {
            workers: 2,
            coordinators: 2,
            // The oom workload's queries take 250 or 500 bytes.
            worker_memory_bytes: if spec.workload == Workload::Oom {
                OOM_WORKER_MEMORY_BYTES
            } else {
                1 << 30
            },
            resource_groups: groups_file.clone(),
            worker_base_port: 0,
            coordinator_base_port: 0,
            worker_args: vec!["--heartbeat-ms".into(), "200".into()],
        })?;
        for m in cluster.members.iter().filter(|m| m.binary == "coordinator") {
            crate::trino::wait_ready(&m.addr, Duration::from_secs(30)).await?;
        }
    }
    let coordinators: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.binary == "coordinator")
        .map(|m| m.addr.clone())
        .collect();
    let workers: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.binary == "worker")
        .map(|m| m.addr.clone())
        .collect();
    let internal = cluster.internal_http(Duration::from_secs(5))?;
    let cluster = Arc::new(Mutex::new(cluster));

    // The queue workload needs more clients than the groups hold.
    let concurrency = if spec.workload == Workload::Queue {
        spec.concurrency.max(workload::QUEUE_CLIENTS)
    } else {
        spec.concurrency
    };
    if concurrency != spec.concurrency {
        tracing::info!("queue workload: {concurrency} clients, so the queues fill");
    }
    progress.phase(
        Phase::Start,
        &format!(
            "{} RMs, {} coordinators, {} workers up; {concurrency} clients; nemesis {}",
            spec.nodes,
            coordinators.len(),
            workers.len(),
            schedule.describe()
        ),
    );
    let start_wall_ms = common::clock::SystemClock::default().now_ms();
    let history = Arc::new(Recorder::new(Some(&dir.join("history.jsonl")))?);
    let (stop_tx, stop) = watch::channel(false);
    let ctx = Ctx {
        history: history.clone(),
        stop: stop.clone(),
        concurrency,
        open: Default::default(),
    };
    let mut clients = Vec::new();
    let mut renewer = None;
    match spec.workload {
        Workload::Semaphore => {
            let session = Arc::new(std::sync::atomic::AtomicU64::new(
                register(&rm, &rms).await?,
            ));
            renewer = Some(tokio::spawn(renew(
                rm.clone(),
                rms.clone(),
                session.clone(),
                history.clone(),
                stop.clone(),
            )));
            for p in 0..concurrency {
                let c = SemaphoreClient {
                    ctx: ctx.clone(),
                    rm: rm.clone(),
                    rms: rms.clone(),
                    session: session.clone(),
                    seed: spec.schedule.seed,
                };
                clients.push(tokio::spawn(c.run(p)));
            }
        }
        Workload::Queries | Workload::Queue | Workload::Oom => {
            let queue = spec.workload == Workload::Queue;
            let oom = spec.workload == Workload::Oom;
            for p in 0..concurrency {
                let c = QueryClient {
                    ctx: ctx.clone(),
                    trino: if queue {
                        TrinoClient::with_failover(coordinators.clone())
                    } else {
                        TrinoClient::default()
                    },
                    coordinators: coordinators.clone(),
                    seed: spec.schedule.seed,
                    duration_ms: if queue || oom { 800..2000 } else { 100..600 },
                    // Sizes that tile a pool exactly, so pools fill up
                    // and block (no memory free, tasks waiting).
                    memory_bytes: if oom { vec![250, 500] } else { vec![1000] },
                    users: if oom {
                        vec![("mallory", "m")]
                    } else {
                        vec![("alice", "q.a"), ("bob", "q.b")]
                    },
                };
                clients.push(tokio::spawn(c.run(p)));
            }
        }
    }
    let nemesis = tokio::spawn(nemesis::run(
        cluster.clone(),
        schedule.clone(),
        history.clone(),
        stop.clone(),
    ));
    let run_start = Instant::now();
    while run_start.elapsed() < spec.time_limit {
        let t = history.tally();
        progress.bar(run_start.elapsed(), spec.time_limit, t.faults, t.client_ops);
        let left = spec.time_limit.saturating_sub(run_start.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
    }
    let _ = stop_tx.send(true);
    let windows = nemesis.await.context("nemesis task")??;
    let t = history.tally();
    progress.phase(
        Phase::Run,
        &format!(
            "{}/{} s, {}",
            spec.time_limit.as_secs(),
            spec.time_limit.as_secs(),
            crate::progress::counts(t.faults, t.client_ops)
        ),
    );
    for c in clients {
        let abort = c.abort_handle();
        if tokio::time::timeout(Duration::from_secs(40), c)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    ctx.close_open();
    if let Some(r) = renewer {
        r.abort();
    }
    let end_ns = history.now_ns();

    // Quiesce: every admission released (or revoked with its session), and
    // every orphaned queued query timed out.
    let leaked = wait_ledger_empty(
        &rm,
        &rms,
        Duration::from_millis(spec.session_lease_ms * 2 + QUEUE_TIMEOUT_MS + 5_000),
    )
    .await;
    let tasks = worker_tasks(&internal, &workers).await;
    let voters = if schedule.faults.contains(&nemesis::Fault::Membership) {
        let c = cluster.lock().await;
        let view = nemesis::membership::view(&c, &internal).await;
        Some(checker::membership::VotersAtEnd {
            original: c.original_rms(),
            voters: view.map(|v| v.voters),
        })
    } else {
        None
    };
    let ops = history.ops();
    progress.phase(
        Phase::Quiesce,
        &if leaked.is_empty() {
            "faults healed, every admission released".to_string()
        } else {
            format!("faults healed, {} groups still hold queries", leaked.len())
        },
    );

    let end_state = EndState {
        start_wall_ms,
        end_ns,
        worker_tasks: tasks,
        still_held: leaked,
        windows: windows.iter().map(|w| (w.start_ns, w.end_ns)).collect(),
        memory: memory_view(&rm, &rms).await,
        voters,
    };
    std::fs::write(dir.join("end-state.json"), serde_json::to_vec(&end_state)?)?;
    let checked = check_all(spec.workload, &ops, &limits, &end_state);
    let (valid, checkers, availability) = (checked.valid, &checked.checkers, &checked.availability);
    let over = checkers
        .get("over_admission_client")
        .map(|v| v.details.clone())
        .unwrap_or_default();
    let adm = summarize(&checked.admission);
    let summary = Summary {
        mode: spec.mode.label(),
        bound_ms: match spec.mode {
            Mode::Eventual { max_staleness_ms } => Some(max_staleness_ms),
            Mode::Linearizable => None,
        },
        valid,
        violations: over["violations"].as_u64().unwrap_or(0),
        max_excess: over["max_excess"].as_u64().unwrap_or(0),
        excess_seconds: over["excess_seconds"].as_f64().unwrap_or(0.0),
        admission_p50_ms: adm.as_ref().map(|s| s.p50_ms),
        admission_p99_ms: adm.as_ref().map(|s| s.p99_ms),
        ok_per_second: checked.successes as f64 / (end_ns as f64 / 1e9).max(1e-9),
        seconds_unavailable: availability.details["seconds_unavailable"]
            .as_f64()
            .unwrap_or(0.0),
        dir: dir.clone(),
        skipped: skipped.clone(),
    };
    progress.phase(
        Phase::Check,
        &format!(
            "valid: {}",
            serde_json::to_string(&valid).unwrap_or_default()
        ),
    );
    let counts = op_counts(&ops);
    // A table that cannot be computed costs the run its tables, not its verdict.
    let analysis = match crate::analysis::analyze(&ops) {
        Ok(a) => {
            std::fs::write(dir.join("analysis.md"), crate::analysis::markdown(&a))
                .context("writing analysis.md")?;
            json!(a)
        }
        Err(e) => json!({"error": format!("{e:#}")}),
    };
    let results = json!({
        "valid": valid,
        "workload": spec.workload,
        "mode": spec.mode.label(),
        "spec": spec,
        "network": network,
        "clock": clock,
        "faults_run": schedule.faults,
        "skipped": skipped,
        "clients": concurrency,
        "packet_faults": packet.report(),
        "checkers": checkers,
        "availability": availability,
        "nemesis": windows,
        "ops": counts,
        "admission_latency": adm,
        "summary": summary,
        "analysis": analysis,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    crate::report::write(&dir, &ops, &windows, &limits, end_ns)?;
    write_log(&dir.join("jepsen.log"), &ops, &results)?;
    // Stop the cluster; keep logs, drop the RMs' data.
    {
        let mut c = cluster.lock().await;
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

/// A requested fault family this machine cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Skipped {
    pub feature: String,
    pub why: String,
}

/// What this machine allows a run, found before anything starts.
struct Environment {
    /// Per-node network namespaces, or `None`: loopback.
    net: Option<Arc<crate::netns::Network>>,
    /// How the nodes are networked, in words.
    network: String,
    packet: crate::netns::packet::Capabilities,
    /// libfaketime to preload, when clock faults run.
    faketime: Option<PathBuf>,
    /// How clock faults run here, in words.
    clock: String,
    /// The spec's schedule less the fault families that cannot run here.
    schedule: Schedule,
    skipped: Vec<Skipped>,
}

/// Finds what the run may use: namespaces (root and `ip`), `nft` and `tc`
/// for packet faults (tried in a scratch namespace), libfaketime for clock
/// faults. A requested fault family whose tool is missing is skipped and
/// recorded, never an error; a tool is used only by the faults that need it.
fn probe_environment(spec: &TestSpec) -> Result<Environment> {
    let mut schedule = spec.schedule.clone();
    let mut skipped = Vec::new();
    let mut skip = |schedule: &mut Schedule, fault: nemesis::Fault, feature: &str, why: &str| {
        if schedule.faults.contains(&fault) {
            schedule.faults.retain(|f| *f != fault);
            skipped.push(Skipped {
                feature: feature.to_string(),
                why: why.to_string(),
            });
        }
    };
    // Namespaces where the machine allows them, else loopback (and then no
    // partitions: they would be a lie).
    let (net, network) = if spec.loopback {
        (
            None,
            "loopback (--loopback): process faults only".to_string(),
        )
    } else {
        match crate::netns::Network::probe() {
            Ok(()) => {
                let n = Arc::new(crate::netns::Network::create()?);
                let d = n.describe();
                (Some(n), d)
            }
            Err(why) => (
                None,
                format!("loopback: network namespaces unavailable ({why}); process faults only"),
            ),
        }
    };
    if net.is_none() {
        skip(
            &mut schedule,
            nemesis::Fault::Partition,
            "partition faults",
            &network,
        );
    }
    // Probed in a scratch namespace when the network was made.
    let packet = match &net {
        Some(n) => n.packet.clone(),
        None => crate::netns::packet::Capabilities::none(&network),
    };
    if let Err(why) = &packet.loss {
        skip(&mut schedule, nemesis::Fault::Packet, "packet faults", why);
    }
    let lib = crate::cluster::libfaketime();
    let clock = if lib.exists() {
        "libfaketime preloaded: the clock nemesis shifts one process's wall clock".to_string()
    } else {
        format!(
            "no {} (Debian package faketime): no clock faults",
            lib.display()
        )
    };
    if !lib.exists() {
        skip(&mut schedule, nemesis::Fault::Clock, "clock faults", &clock);
    }
    let faketime = schedule
        .faults
        .contains(&nemesis::Fault::Clock)
        .then_some(lib);
    Ok(Environment {
        net,
        network,
        packet,
        faketime,
        clock,
        schedule,
        skipped,
    })
}

/// Each worker's pool in the oom workload.
pub const OOM_WORKER_MEMORY_BYTES: u64 = 1000;

/// The RMs' queue timeout in a test: orphaned queued queries fail by then.
pub const QUEUE_TIMEOUT_MS: u64 = 8_000;

/// States the linearizability search may visit per group before it answers
/// `unknown` (about 100 bytes each).
pub const LINEARIZABILITY_BUDGET: usize = 10_000_000;

/// What the run gathered from the cluster at its end (kept as
/// `end-state.json`, so `jepsen check` can re-run the checkers).
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct EndState {
    pub start_wall_ms: u64,
    pub end_ns: u64,
    pub worker_tasks: Vec<Value>,
    /// Groups still holding queries after quiescence.
    pub still_held: Vec<Value>,
    /// Nemesis fault windows (ns).
    pub windows: Vec<(u64, u64)>,
    /// The RMs' `GET /v1/memory` (kill decisions) at the end.
    #[serde(default)]
    pub memory: Value,
    /// With the membership nemesis: the voters at the start and the end.
    #[serde(default)]
    pub voters: Option<checker::membership::VotersAtEnd>,
}

pub struct Checked {
    pub valid: Validity,
    pub checkers: BTreeMap<&'static str, Verdict>,
    pub availability: Verdict,
    pub successes: usize,
    pub admission: Vec<Duration>,
}

/// Every checker of `workload` over a history and the run's end state.
pub fn check_all(
    workload: Workload,
    ops: &[Op],
    limits: &BTreeMap<String, u64>,
    end: &EndState,
) -> Checked {
    let mut checkers: BTreeMap<&'static str, Verdict> = BTreeMap::new();
    let successes: Vec<u64>;
    let admission: Vec<Duration>;
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
            checkers.insert(
                "over_admission_client",
                checker::overlap::check(
                    "client (acquire ok .. release invoked)",
                    &permit_intervals(ops),
                    limits,
                ),
            );
            successes = completions(ops, "acquire", |c| c.value["status"] == "admitted");
            admission = latencies(ops, "acquire");
        }
        Workload::Queries | Workload::Queue | Workload::Oom => {
            if workload == Workload::Oom {
                checkers.insert(
                    "one_oom_kill_per_episode",
                    checker::oom::check(ops, &end.memory),
                );
            }
            checkers.insert(
                "over_admission_client",
                checker::overlap::check(
                    "client (certainly running)",
                    &running_intervals(ops),
                    limits,
                ),
            );
            checkers.insert(
                "over_admission_workers",
                checker::overlap::check(
                    "workers (task start .. end)",
                    &task_intervals(ops, &end.worker_tasks, end.start_wall_ms),
                    limits,
                ),
            );
            checkers.insert(
                "no_lost_or_duplicated_queries",
                checker::completeness::check(ops, workload == Workload::Queue),
            );
            successes = completions(ops, "query", |c| c.kind == OpType::Ok);
            admission = query_admission(ops);
        }
    }
    if let Some(v) = &end.voters {
        checkers.insert("membership_restored", checker::membership::check(v));
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
        availability,
        successes: successes.len(),
        admission,
    }
}

/// Re-runs the checkers on a saved run directory.
pub fn check_saved(dir: &Path) -> Result<Value> {
    let results: Value = serde_json::from_slice(
        &std::fs::read(dir.join("results.json")).context("reading results.json")?,
    )?;
    let workload: Workload = serde_json::from_value(results["workload"].clone())?;
    let limits = limits_of(&std::fs::read_to_string(dir.join("resource-groups.json"))?)?;
    let end: EndState = serde_json::from_slice(&std::fs::read(dir.join("end-state.json"))?)?;
    let ops = crate::history::load(&dir.join("history.jsonl"))?;
    let c = check_all(workload, &ops, &limits, &end);
    let analysis = crate::analysis::analyze(&ops)?;
    Ok(json!({
        "valid": c.valid,
        "checkers": c.checkers,
        "availability": c.availability,
        "analysis": analysis,
    }))
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

async fn register(rm: &crate::rm_client::RmClient, rms: &[String]) -> Result<u64> {
    rm.register_anywhere(rms, "jepsen", Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)
}

/// Keeps the semaphore clients' session alive: every 300 ms, a renewal to
/// every RM at once (a paused or cut-off RM delays none of the others). If
/// it expires anyway, its permits are revoked under the clients, outside
/// the semaphore model: that is recorded (`session-expired`, which makes
/// the linearizability verdict unknown) and a new session is registered.
async fn renew(
    rm: crate::rm_client::RmClient,
    rms: Vec<String>,
    session: Arc<std::sync::atomic::AtomicU64>,
    history: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        let current = session.load(Ordering::Relaxed);
        let mut renewals = tokio::task::JoinSet::new();
        for addr in &rms {
            let (rm, addr) = (rm.clone(), addr.clone());
            renewals.spawn(async move { rm.renew_session(&addr, current).await });
        }
        let answers: Vec<_> = renewals.join_all().await;
        if answers.iter().any(|a| matches!(a, Ok(true)))
            || !answers.iter().any(|a| matches!(a, Ok(false)))
        {
            continue;
        }
        tracing::error!(
            session = current,
            "the harness's session expired: permits were revoked under the clients"
        );
        history.record(
            crate::history::NEMESIS,
            OpType::Info,
            "session-expired",
            json!({"session": current}),
            None,
        );
        if let Ok(s) = register(&rm, &rms).await {
            session.store(s, Ordering::Relaxed);
        }
    }
}

/// Groups that still hold running or queued queries, after waiting up to
/// `timeout` for them to drain (linearizable reads).
async fn wait_ledger_empty(
    rm: &crate::rm_client::RmClient,
    rms: &[String],
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut held = Vec::new();
    while Instant::now() < deadline {
        for addr in rms {
            if let Ok(v) = rm.resource_groups(addr).await {
                held = v
                    .groups
                    .into_iter()
                    .filter(|g| g.running + g.queued > 0)
                    .map(|g| serde_json::to_value(g).unwrap_or_default())
                    .collect();
                if held.is_empty() {
                    return held;
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    held
}

/// The RMs' memory view and kill decisions (from the first RM that answers).
async fn memory_view(rm: &crate::rm_client::RmClient, rms: &[String]) -> Value {
    for addr in rms {
        if let Ok(v) = rm.memory(addr).await {
            return serde_json::to_value(v).unwrap_or_default();
        }
    }
    Value::Null
}

/// Every worker's tasks (those still remembered), as `GET /v1/tasks`.
async fn worker_tasks(http: &common::http::HttpClient, workers: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for w in workers {
        if let Ok(Value::Array(tasks)) = http
            .get_json::<Value>(&format!("http://{w}/v1/tasks"), 3)
            .await
        {
            out.extend(tasks);
        }
    }
    out
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

/// Tasks as the workers ran them (their wall clock, on this machine).
fn task_intervals(ops: &[Op], tasks: &[Value], start_wall_ms: u64) -> Vec<Interval> {
    let group_of: HashMap<&str, &str> = ops
        .iter()
        .filter(|o| o.f == "query" && o.kind != OpType::Invoke)
        .filter_map(|o| Some((o.value["query_id"].as_str()?, o.value["group"].as_str()?)))
        .collect();
    let ns = |ms: u64| ms.saturating_sub(start_wall_ms) * 1_000_000;
    tasks
        .iter()
        .filter_map(|t| {
            let q = t["query_id"].as_str()?;
            Some(Interval {
                group: group_of.get(q)?.to_string(),
                from_ns: ns(t["started_ms"].as_u64()?),
                until_ns: ns(t["finished_ms"].as_u64()?),
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
fn write_log(path: &Path, ops: &[Op], results: &Value) -> Result<()> {
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
    let _ = writeln!(
        out,
        "\n{}",
        serde_json::to_string_pretty(&results["checkers"])?
    );
    let _ = writeln!(out, "valid: {}", results["valid"]);
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(out.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

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
