//! Nemeses: faults on a schedule, each healed after its time, and all
//! healed at the end. Every fault and heal goes into the history as a
//! nemesis op, and its window is kept for the checkers and plots.
//!
//! The schedule comes from a seed, so two runs with the same seed try the
//! same sequence of faults (which process of a role, when) even though the
//! leader may differ.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{watch, Mutex};

use crate::cluster::{LocalCluster, Target};
use crate::history::{OpType, Recorder, NEMESIS};

pub mod asymmetric;
pub mod disk;
pub mod hostile;
pub mod membership;
pub mod packet;
pub mod reconfigure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL, restarted when the fault ends.
    Kill,
    /// SIGSTOP, SIGCONT when the fault ends: longer than the session lease
    /// and the election timeout.
    Pause,
    /// A network partition among the targeted processes (needs network
    /// namespaces), lasting as long as a pause: one of isolate one node,
    /// isolate the RM leader, random halves, a majorities ring, or two
    /// halves joined by one bridge node.
    Partition,
    /// One process's wall clock (libfaketime; never the machine's), for as
    /// long as a pause: shifted by ±5 s, or strobing between true time and
    /// +5 s every 200 ms. Timers stay true: only what reads wall time, such
    /// as the time the RM leader stamps into the log, sees it.
    Clock,
    /// Packet loss (nftables: 20% or 50% each way) on one targeted node or
    /// all of them, for as long as a pause (needs network namespaces);
    /// packet delay instead, half the time, where the kernel has netem.
    Packet,
    /// RM membership, for as long as a pause: shrink (remove a voter,
    /// sometimes the leader, kill it and wipe its data) or grow (a new
    /// empty RM joins as learner and is promoted). The heal, and the final
    /// heal, return to the original voters.
    Membership,
    /// An RM restarted armed to crash at one of the store's failpoints
    /// (needs raft-rm built with `failpoints`); the heal restarts it clean.
    CrashAt,
    /// An RM made to lag, then caught up by snapshot while snapshot builds
    /// are forced on it (openraft 0.9 builds and installs concurrently).
    Snapshot,
    /// An RM's data dir lost: started as it is (it must be refused), then
    /// replaced with `raft-rm admin replace` (it must rejoin).
    Wipe,
    /// A coordinator SIGKILLed and started again at once with the same id
    /// (a new process, a new session); the fault lasts until it serves.
    RestartCoordinator,
    /// Partial connectivity (needs network namespaces), for as long as a
    /// pause: a worker cut from the RM leader only, a worker cut from every
    /// RM, or an RM follower cut from the leader only.
    Asymmetric,
    /// The resource groups changed through the RMs' admin API, for as long
    /// as a pause: limits (and queues, and eventual groups' staleness
    /// bounds) only ever lowered, never a consistency mode; the heal puts
    /// the run's file back.
    Reconfigure,
    /// Hostile clients against one coordinator: odd headers, forged
    /// `nextUri`s, a bounded flood. Every request must get a 4xx, a 503 or
    /// a normal answer.
    Hostile,
}

impl Fault {
    /// The family's name, as the flags and the history spell it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::Clock => "clock",
            Fault::Packet => "packet",
            Fault::Membership => "membership",
            Fault::CrashAt => "crash-at",
            Fault::Snapshot => "snapshot",
            Fault::Wipe => "wipe",
            Fault::RestartCoordinator => "restart-coordinator",
            Fault::Asymmetric => "asymmetric",
            Fault::Reconfigure => "reconfigure",
            Fault::Hostile => "hostile",
        }
    }
}

/// Admin calls of the membership nemesis: adding a learner waits until it
/// has caught up.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a restarted coordinator may take to serve again.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How far a clock fault shifts.
const CLOCK_SHIFT_MS: i64 = 5_000;

/// The shapes a partition takes.
const PARTITIONS: [&str; 5] = ["isolate-one", "isolate-leader", "halves", "ring", "bridge"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Rm,
    Coordinator,
    Worker,
}

#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub faults: Vec<Fault>,
    pub roles: Vec<Role>,
    /// Quiet time between faults.
    pub interval: Duration,
    /// How long a kill lasts before the restart.
    pub kill_for: Duration,
    /// How long a pause lasts.
    pub pause_for: Duration,
    pub seed: u64,
    /// The failpoints the crash-at nemesis draws from (`raft-rm
    /// failpoints`; the probe fills it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failpoints: Vec<String>,
}

/// One fault of a schedule, drawn from the seed alone: which family, which
/// role, which process of that role (`pick`, taken modulo the processes
/// there are when the fault comes), whether to aim at the RM leader, and
/// the seed of a partition's shuffle. Shapes follow from `pick` too. The
/// nemesis resolves a draw against the cluster as it stands at that
/// moment; the draws themselves never depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub fault: Fault,
    pub role: Role,
    pub pick: usize,
    pub prefer_leader: bool,
    pub shuffle_seed: u64,
}

impl Planned {
    /// The partition's shape, for a partition.
    fn partition_shape(&self) -> &'static str {
        PARTITIONS[self.pick % PARTITIONS.len()]
    }

    /// The clock fault's shape, for a clock fault.
    fn clock_shape(&self) -> &'static str {
        ["forward", "backward", "strobe"][self.pick % 3]
    }
}

impl Schedule {
    /// The schedule's faults in order: a pure function of the seed, the
    /// fault families and the roles (no I/O, no clock), so one seed always
    /// gives one schedule. Empty when there is nothing to draw from.
    pub fn planned(&self) -> impl Iterator<Item = Planned> + '_ {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let possible = !self.faults.is_empty() && !self.roles.is_empty();
        std::iter::from_fn(move || {
            possible.then(|| Planned {
                fault: self.faults[rng.gen_range(0..self.faults.len())],
                role: self.roles[rng.gen_range(0..self.roles.len())],
                pick: rng.gen_range(0..1000usize),
                prefer_leader: rng.gen_bool(0.5),
                shuffle_seed: rng.gen(),
            })
        })
    }

    /// `kill,pause,partition on rm,coordinator, seed 7` (`no faults` when
    /// none), as the flags spell them.
    pub fn describe(&self) -> String {
        use clap::ValueEnum;
        fn names<T: ValueEnum>(items: &[T]) -> String {
            items
                .iter()
                .filter_map(|i| i.to_possible_value())
                .map(|v| v.get_name().to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
        if self.faults.is_empty() {
            return format!("no faults, seed {}", self.seed);
        }
        format!(
            "{} on {}, seed {}",
            names(&self.faults),
            names(&self.roles),
            self.seed
        )
    }
}

/// A fault's time in the run, for checkers and plots.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub fault: Fault,
    pub targets: Vec<String>,
    pub start_ns: u64,
    pub end_ns: u64,
}

fn role_of(t: &Target) -> Role {
    match t {
        Target::Rm(_) => Role::Rm,
        Target::Member(n) if n.starts_with('c') => Role::Coordinator,
        Target::Member(_) => Role::Worker,
    }
}

/// The names of the processes whose role the schedule targets.
fn targeted(c: &LocalCluster, roles: &[Role]) -> Vec<String> {
    c.targets()
        .iter()
        .filter(|t| roles.contains(&role_of(t)))
        .map(|t| t.to_string())
        .collect()
}

/// Runs the schedule until `stop`, then heals everything. Answers the
/// fault windows.
pub async fn run(
    cluster: Arc<Mutex<LocalCluster>>,
    schedule: Schedule,
    history: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<Window>> {
    let mut plan = schedule.planned();
    let mut windows = Vec::new();
    let mut retired = membership::Retired::new();
    // The run's groups file while a reconfigure is not yet undone.
    let mut restore: Option<String> = None;
    let sleep_or_stop = |d: Duration, stop: &mut watch::Receiver<bool>| {
        let mut stop = stop.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(d) => false,
                _ = stop.wait_for(|s| *s) => true,
            }
        }
    };
    if schedule.faults.is_empty() || schedule.roles.is_empty() {
        let _ = stop.wait_for(|s| *s).await;
        return Ok(windows);
    }
    loop {
        if sleep_or_stop(schedule.interval, &mut stop).await {
            break;
        }
        let Some(planned) = plan.next() else { break };
        let (fault, role, pick) = (planned.fault, planned.role, planned.pick);
        let target = {
            let c = cluster.lock().await;
            let of_role: Vec<Target> = c
                .targets()
                .into_iter()
                .filter(|t| role_of(t) == role)
                .collect();
            if of_role.is_empty() {
                continue;
            }
            let leader = if role == Role::Rm && planned.prefer_leader {
                c.client.agreed_leader(&c.addr_list()).await.map(Target::Rm)
            } else {
                None
            };
            let chosen = leader.unwrap_or_else(|| of_role[pick % of_role.len()].clone());
            if matches!(fault, Fault::RestartCoordinator | Fault::Hostile) {
                // These aim at a coordinator, whatever the role drawn.
                let coordinators: Vec<Target> = c
                    .targets()
                    .into_iter()
                    .filter(|t| role_of(t) == Role::Coordinator)
                    .collect();
                if coordinators.is_empty() {
                    continue;
                }
                coordinators[pick % coordinators.len()].clone()
            } else {
                chosen
            }
        };
        let name = target.to_string();
        let shape = planned.partition_shape();
        let f = fault.name();
        let clock_shape = planned.clock_shape();
        // What the fault windows call it, where the target alone says too little.
        let mut label = name.clone();
        let storage = matches!(fault, Fault::CrashAt | Fault::Snapshot | Fault::Wipe);
        let rm_id = match &target {
            Target::Rm(id) => Some(*id),
            Target::Member(_) => None,
        };
        if storage && rm_id.is_none() {
            continue; // a storage fault needs an RM
        }
        let mut forced_builds = None;
        // A hostile fault's coordinator and a user the run's selectors admit.
        let mut hostile_to = None;
        let value = {
            let mut c = cluster.lock().await;
            match fault {
                Fault::Partition => {
                    let nodes = targeted(&c, &schedule.roles);
                    let leader = c
                        .client
                        .agreed_leader(&c.addr_list())
                        .await
                        .map(|l| format!("n{l}"));
                    let mut shuffle = StdRng::seed_from_u64(planned.shuffle_seed);
                    let grudges = partition(shape, &nodes, leader.as_deref(), &mut shuffle);
                    let value = json!({"shape": shape, "grudges": grudges});
                    history.record(NEMESIS, OpType::Invoke, f, value.clone(), None);
                    match c.net() {
                        Some(net) => net.partition(&grudges)?,
                        None => anyhow::bail!("a partition needs network namespaces"),
                    }
                    value
                }
                Fault::Packet => {
                    let Some(net) = c.net() else {
                        anyhow::bail!("packet faults need network namespaces");
                    };
                    let all = targeted(&c, &schedule.roles);
                    let p = packet::plan(pick, &name, &all, net.packet.delay.is_ok());
                    let value = json!(p);
                    label = p.label();
                    history.record(NEMESIS, OpType::Invoke, f, value.clone(), None);
                    packet::apply(net, &p)?;
                    value
                }
                Fault::Membership => {
                    let http = c.internal_http(ADMIN_TIMEOUT)?;
                    let Some(view) = membership::view(&c, &http).await else {
                        tracing::warn!("membership fault skipped: no leader");
                        continue;
                    };
                    let victim = match &target {
                        Target::Rm(id) => Some(*id),
                        Target::Member(_) => None,
                    };
                    let change = membership::plan(pick, &view.voters, victim);
                    label = change.label();
                    let mut value = json!(change);
                    history.record(NEMESIS, OpType::Invoke, f, value.clone(), None);
                    if let Err(e) = membership::apply(&mut c, &http, &change, &mut retired).await {
                        tracing::warn!(error = %format!("{e:#}"), "membership change failed");
                        value["error"] = json!(format!("{e:#}"));
                    }
                    value
                }
                Fault::Clock => {
                    let value =
                        json!({"target": name, "shape": clock_shape, "shift_ms": CLOCK_SHIFT_MS});
                    history.record(NEMESIS, OpType::Invoke, f, value.clone(), None);
                    let offset = if clock_shape == "backward" {
                        -CLOCK_SHIFT_MS
                    } else {
                        CLOCK_SHIFT_MS
                    };
                    c.set_clock_offset(&target, offset)?;
                    value
                }
                Fault::CrashAt | Fault::Snapshot | Fault::Wipe => {
                    let id = rm_id.expect("checked above");
                    history.record(NEMESIS, OpType::Invoke, f, json!([name]), None);
                    match fault {
                        Fault::CrashAt => {
                            let v = disk::arm_crash(&mut c, id, pick, &schedule.failpoints)?;
                            label = format!("{name} {}", v["failpoint"].as_str().unwrap_or(""));
                            v
                        }
                        Fault::Snapshot => {
                            let (v, builds) = disk::lag_and_snapshot(&mut c, id).await?;
                            forced_builds = Some(builds);
                            v
                        }
                        _ => disk::wipe(&mut c, id)?,
                    }
                }
                Fault::RestartCoordinator => {
                    history.record(NEMESIS, OpType::Invoke, f, json!([name]), None);
                    c.kill_target(&target);
                    c.restart(&target)?;
                    json!([name])
                }
                Fault::Asymmetric => {
                    let Some(net) = c.net() else {
                        anyhow::bail!("asymmetric faults need network namespaces");
                    };
                    let names = |role: Role| -> Vec<String> {
                        c.targets()
                            .iter()
                            .filter(|t| role_of(t) == role)
                            .map(|t| t.to_string())
                            .collect()
                    };
                    let leader = c
                        .client
                        .agreed_leader(&c.addr_list())
                        .await
                        .map(|l| format!("n{l}"));
                    let Some(cut) = asymmetric::plan(
                        pick,
                        &names(Role::Rm),
                        &names(Role::Worker),
                        leader.as_deref(),
                    ) else {
                        continue;
                    };
                    label = cut.label();
                    let value = json!(cut);
                    history.record(NEMESIS, OpType::Invoke, f, value.clone(), None);
                    net.partition(&cut.grudges)?;
                    value
                }
                Fault::Reconfigure => {
                    let original = std::fs::read_to_string(c.dir().join("resource-groups.json"))?;
                    let plan = reconfigure::plan(&original, pick)?;
                    label = plan.shape.to_string();
                    let mut value = json!(plan);
                    history.record(NEMESIS, OpType::Invoke, f, value.clone(), None);
                    let rm = c.client.over(&c.addr_list()).with_timeout(ADMIN_TIMEOUT);
                    match rm.replace_config(&plan.groups).await {
                        Ok(applied) => value["version"] = json!(applied.version),
                        Err(e) => {
                            tracing::warn!(error = %e, "reconfigure: not applied");
                            value["error"] = json!(e.to_string());
                        }
                    }
                    restore = Some(original);
                    value
                }
                Fault::Hostile => {
                    let addr = c
                        .members
                        .iter()
                        .find(|m| m.name == name)
                        .map(|m| m.addr.clone())
                        .unwrap_or_default();
                    let groups = std::fs::read_to_string(c.dir().join("resource-groups.json"))
                        .unwrap_or_default();
                    let user = selector_user(&groups);
                    let value = json!({"target": name, "coordinator": addr, "user": user,
                        "odd_users": hostile::odd_users(&user), "flood": hostile::FLOOD,
                        "concurrency": hostile::CONCURRENCY});
                    history.record(NEMESIS, OpType::Invoke, f, value.clone(), None);
                    hostile_to = Some((addr, user));
                    value
                }
                Fault::Kill | Fault::Pause => {
                    history.record(NEMESIS, OpType::Invoke, f, json!([name]), None);
                    if fault == Fault::Kill {
                        c.kill_target(&target);
                    } else {
                        c.pause(&target);
                    }
                    json!([name])
                }
            }
        };
        let start_ns = history
            .record(NEMESIS, OpType::Info, f, value.clone(), None)
            .time_ns;
        tracing::info!(fault = f, %value, "nemesis: fault");
        let lasts = match fault {
            Fault::Kill => schedule.kill_for,
            Fault::Pause
            | Fault::Partition
            | Fault::Clock
            | Fault::Packet
            | Fault::Membership
            | Fault::CrashAt
            | Fault::Snapshot
            | Fault::Wipe
            | Fault::Asymmetric
            | Fault::Reconfigure
            | Fault::Hostile => schedule.pause_for,
            Fault::RestartCoordinator => READY_WITHIN,
        };
        let stopped = if fault == Fault::Clock && clock_shape == "strobe" {
            strobe(&cluster, &target, lasts, &mut stop).await?
        } else if fault == Fault::RestartCoordinator {
            let addr = {
                let c = cluster.lock().await;
                c.members
                    .iter()
                    .find(|m| m.name == name)
                    .map(|m| m.addr.clone())
                    .unwrap_or_default()
            };
            let t = std::time::Instant::now();
            let mut stop_rx = stop.clone();
            let (ready, stopped) = tokio::select! {
                r = crate::trino::wait_ready(&addr, lasts) => (r.is_ok(), false),
                _ = stop_rx.wait_for(|s| *s) => (false, true),
            };
            history.record(
                NEMESIS,
                OpType::Info,
                "restart-coordinator-ready",
                json!({"target": name, "ready": ready,
                       "after_ms": t.elapsed().as_millis() as u64}),
                None,
            );
            stopped
        } else if let Some((addr, user)) = hostile_to.take() {
            // The window lasts at least a pause, and until the hostile
            // clients are done.
            let t = std::time::Instant::now();
            let report = hostile::run(&addr, &user, stop.clone()).await;
            history.record(
                NEMESIS,
                OpType::Info,
                crate::checker::hostile::ANSWERS,
                json!(report),
                None,
            );
            let rest = lasts.saturating_sub(t.elapsed());
            *stop.borrow() || sleep_or_stop(rest, &mut stop).await
        } else {
            sleep_or_stop(lasts, &mut stop).await
        };
        history.record(NEMESIS, OpType::Invoke, "heal", value.clone(), None);
        {
            let mut c = cluster.lock().await;
            match fault {
                Fault::Kill => c.restart(&target)?,
                Fault::Pause => {
                    c.resume(&target);
                }
                Fault::Partition | Fault::Asymmetric => {
                    if let Some(net) = c.net() {
                        net.heal()?;
                    }
                }
                Fault::RestartCoordinator | Fault::Hostile => c.restart(&target)?,
                Fault::Reconfigure => {
                    if let Some(original) = &restore {
                        let v = restore_config(&c, original).await;
                        if v.get("version").is_some() {
                            restore = None;
                        }
                        history.record(NEMESIS, OpType::Info, "reconfigure-restored", v, None);
                    }
                }
                Fault::Clock => c.set_clock_offset(&target, 0)?,
                Fault::Packet => {
                    if let Some(net) = c.net() {
                        packet::heal(net)?;
                    }
                }
                Fault::Membership => {
                    let http = c.internal_http(ADMIN_TIMEOUT)?;
                    if let Err(e) = membership::restore(&mut c, &http, &mut retired).await {
                        tracing::warn!(error = %format!("{e:#}"), "membership not restored");
                    }
                }
                Fault::CrashAt | Fault::Snapshot | Fault::Wipe => {
                    let id = rm_id.expect("checked above");
                    let evidence = match (fault, forced_builds.take()) {
                        (Fault::Snapshot, Some(builds)) => {
                            disk::heal_snapshot(&mut c, id, builds).await?
                        }
                        (Fault::Wipe, _) => disk::heal_wipe(&mut c, id).await?,
                        _ => disk::heal_crash(&mut c, id).await?,
                    };
                    tracing::info!(fault = f, %evidence, "nemesis: storage fault evidence");
                    history.record(
                        NEMESIS,
                        OpType::Info,
                        &format!("{f}-evidence"),
                        evidence,
                        None,
                    );
                }
            }
        }
        let end_ns = history
            .record(NEMESIS, OpType::Info, "heal", value.clone(), None)
            .time_ns;
        tracing::info!(%value, "nemesis: healed");
        let targets = match fault {
            Fault::Partition => vec![shape.to_string()],
            Fault::Clock => vec![format!("{name} {clock_shape}")],
            Fault::Packet
            | Fault::Membership
            | Fault::CrashAt
            | Fault::Asymmetric
            | Fault::Reconfigure => vec![label],
            _ => vec![name],
        };
        windows.push(Window {
            fault,
            targets,
            start_ns,
            end_ns,
        });
        if stopped {
            break;
        }
    }
    heal_all(&cluster, &history).await?;
    if let Some(original) = restore.take() {
        // A reconfigure whose heal could not put the file back.
        history.record(NEMESIS, OpType::Invoke, "heal-config", json!(null), None);
        let v = restore_config(&*cluster.lock().await, &original).await;
        history.record(NEMESIS, OpType::Info, "heal-config", v, None);
    }
    if schedule.faults.contains(&Fault::Membership) {
        history.record(
            NEMESIS,
            OpType::Invoke,
            "heal-membership",
            json!(null),
            None,
        );
        let mut c = cluster.lock().await;
        let http = c.internal_http(ADMIN_TIMEOUT)?;
        let voters = match membership::restore(&mut c, &http, &mut retired).await {
            Ok(v) => json!(v),
            Err(e) => json!({"error": format!("{e:#}")}),
        };
        history.record(NEMESIS, OpType::Info, "heal-membership", voters, None);
    }
    Ok(windows)
}

/// Resumes every paused process and restarts every killed one.
pub async fn heal_all(cluster: &Arc<Mutex<LocalCluster>>, history: &Recorder) -> Result<()> {
    history.record(NEMESIS, OpType::Invoke, "heal-all", json!(null), None);
    let mut c = cluster.lock().await;
    if let Some(net) = c.net() {
        net.heal()?;
        packet::heal(net)?;
    }
    for t in c.targets() {
        if c.has_clock_control() {
            c.set_clock_offset(&t, 0)?;
        }
        c.resume(&t);
        c.restart(&t)?;
    }
    history.record(NEMESIS, OpType::Info, "heal-all", json!(null), None);
    Ok(())
}

/// Puts the run's groups file back on the RMs: `{"version": N}` or
/// `{"error": ...}`.
async fn restore_config(c: &LocalCluster, original: &str) -> serde_json::Value {
    let groups: serde_json::Value = match serde_json::from_str(original) {
        Ok(g) => g,
        Err(e) => return json!({"error": format!("the run's groups file: {e}")}),
    };
    let rm = c.client.over(&c.addr_list()).with_timeout(ADMIN_TIMEOUT);
    match rm.replace_config(&groups).await {
        Ok(applied) => json!({"version": applied.version}),
        Err(e) => {
            tracing::warn!(error = %e, "reconfigure: the original groups not restored");
            json!({"error": e.to_string()})
        }
    }
}

/// A user the run's selectors send to a group (the first selector that
/// names one), or `jepsen-hostile` (which no selector of a workload names).
fn selector_user(groups: &str) -> String {
    serde_json::from_str::<serde_json::Value>(groups)
        .ok()
        .and_then(|g| {
            g["selectors"]
                .as_array()?
                .iter()
                .find_map(|s| s["user"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "jepsen-hostile".to_string())
}

/// Who cannot reach whom, for a partition of `shape` over `nodes`.
fn partition(
    shape: &str,
    nodes: &[String],
    leader: Option<&str>,
    rng: &mut StdRng,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    use crate::netns::{grudges, ring};
    use rand::seq::SliceRandom;
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let alone = |one: &str| {
        let rest: Vec<String> = nodes.iter().filter(|n| *n != one).cloned().collect();
        grudges(&[vec![one.to_string()], rest], None)
    };
    match shape {
        "isolate-leader" => alone(leader.unwrap_or(&shuffled[0])),
        "halves" => {
            let (a, b) = shuffled.split_at(shuffled.len() / 2);
            grudges(&[a.to_vec(), b.to_vec()], None)
        }
        "ring" => ring(&shuffled),
        "bridge" => {
            let bridge = shuffled[0].clone();
            let rest = &shuffled[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            let mut a = a.to_vec();
            let mut b = b.to_vec();
            a.push(bridge.clone());
            b.push(bridge.clone());
            grudges(&[a, b], Some(&bridge))
        }
        _ => alone(&shuffled[0]),
    }
}

/// Flips `target`'s clock between true time and +shift every 200 ms, for
/// `lasts`; true if asked to stop meanwhile.
async fn strobe(
    cluster: &Arc<Mutex<LocalCluster>>,
    target: &Target,
    lasts: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool> {
    let until = tokio::time::Instant::now() + lasts;
    let mut shifted = true;
    while tokio::time::Instant::now() < until {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped {
            return Ok(true);
        }
        shifted = !shifted;
        let offset = if shifted { CLOCK_SHIFT_MS } else { 0 };
        cluster.lock().await.set_clock_offset(target, offset)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_describes_itself_as_its_flags_spell_it() {
        let mut s = Schedule {
            faults: vec![Fault::Kill, Fault::Partition],
            roles: vec![Role::Rm, Role::Coordinator],
            interval: Duration::from_secs(1),
            kill_for: Duration::from_secs(1),
            pause_for: Duration::from_secs(1),
            seed: 7,
            failpoints: Vec::new(),
        };
        assert_eq!(s.describe(), "kill,partition on rm,coordinator, seed 7");
        s.faults.clear();
        assert_eq!(s.describe(), "no faults, seed 7");
    }

    fn schedule(seed: u64) -> Schedule {
        Schedule {
            faults: vec![Fault::Kill, Fault::Pause, Fault::Partition, Fault::Clock],
            roles: vec![Role::Rm, Role::Coordinator, Role::Worker],
            interval: Duration::from_secs(1),
            kill_for: Duration::from_secs(1),
            pause_for: Duration::from_secs(1),
            seed,
            failpoints: Vec::new(),
        }
    }

    #[test]
    fn one_seed_gives_one_schedule() {
        let a: Vec<Planned> = schedule(42).planned().take(200).collect();
        let b: Vec<Planned> = schedule(42).planned().take(200).collect();
        assert_eq!(a, b);
        let other: Vec<Planned> = schedule(43).planned().take(200).collect();
        assert_ne!(a, other, "another seed, another schedule");
        // The draws cover what was asked for, and only that.
        let s = schedule(42);
        for fault in &s.faults {
            assert!(a.iter().any(|p| p.fault == *fault), "{fault:?} never drawn");
        }
        for role in &s.roles {
            assert!(a.iter().any(|p| p.role == *role), "{role:?} never drawn");
        }
        let shapes: std::collections::BTreeSet<&str> =
            a.iter().map(Planned::partition_shape).collect();
        assert_eq!(shapes.len(), PARTITIONS.len(), "{shapes:?}");
    }

    #[test]
    fn a_partition_is_the_same_for_the_same_draw() {
        let nodes: Vec<String> = ["n1", "n2", "n3", "c1", "c2"].map(String::from).to_vec();
        let p = schedule(7)
            .planned()
            .find(|p| p.fault == Fault::Partition)
            .expect("a partition");
        let cut = |p: &Planned| {
            let mut rng = StdRng::seed_from_u64(p.shuffle_seed);
            partition(p.partition_shape(), &nodes, Some("n1"), &mut rng)
        };
        assert_eq!(cut(&p), cut(&p));
    }

    #[test]
    fn every_family_is_named_as_its_flag_and_the_new_ones_are_drawn() {
        use clap::ValueEnum;
        for f in Fault::value_variants() {
            assert_eq!(f.to_possible_value().unwrap().get_name(), f.name());
            assert_eq!(json!(f), json!(f.name()));
        }
        let mut s = schedule(3);
        s.faults = vec![
            Fault::RestartCoordinator,
            Fault::Asymmetric,
            Fault::Reconfigure,
            Fault::Hostile,
        ];
        let a: Vec<Planned> = s.planned().take(100).collect();
        assert_eq!(a, s.planned().take(100).collect::<Vec<_>>());
        for fault in &s.faults {
            assert!(a.iter().any(|p| p.fault == *fault), "{fault:?} never drawn");
        }
        let shapes: std::collections::BTreeSet<&str> = a
            .iter()
            .filter(|p| p.fault == Fault::Asymmetric)
            .map(|p| asymmetric::SHAPES[p.pick % asymmetric::SHAPES.len()])
            .collect();
        assert_eq!(shapes.len(), asymmetric::SHAPES.len(), "{shapes:?}");
    }

    #[test]
    fn the_hostile_user_is_one_the_selectors_admit() {
        let groups = crate::workload::query_groups_json(&json!({"mode": "linearizable"}));
        assert_eq!(selector_user(&groups), "alice");
        assert_eq!(
            selector_user(r#"{"selectors":[{"group":"m"}]}"#),
            "jepsen-hostile"
        );
        assert_eq!(selector_user("not json"), "jepsen-hostile");
    }

    #[test]
    fn nothing_to_draw_from_plans_nothing() {
        let mut s = schedule(1);
        s.roles.clear();
        assert_eq!(s.planned().count(), 0);
    }
}
