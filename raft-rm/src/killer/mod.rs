//! The coordinated low-memory killer and the per-query memory limits.
//!
//! Every RM hears every worker's heartbeat (soft state), so every RM knows
//! whether the cluster is out of memory and for how long; only the leader
//! acts. Its decisions go through the log ([`crate::machine::memory`]), which
//! allows one unsettled low-memory kill at a time: a new leader sees it and
//! does not kill again for the same episode.
//!
//! Each round (every `interval`), on the leader:
//! 1. settle: a kill whose query no longer holds memory on any worker (by
//!    heartbeats received after this node saw the decision) is settled;
//! 2. limits: a query over `query.max-memory` (cluster) or
//!    `query.max-memory-per-node` is killed at once;
//! 3. low memory: if some worker's pool is blocked, has been for the delay
//!    (counted anew after each settled kill), and no low-memory kill is
//!    unsettled, the policy's choice is killed.
//!
//! The query's coordinator learns the kill on its watch and fails the
//! query; the workers learn it on their watch and from their heartbeat
//! answers, and stop its tasks themselves, so a dead coordinator cannot
//! keep memory held.

pub mod policy;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::core::Core;
use crate::machine::memory::{
    KillAnswer, KillProposal, KillReason, KillerPolicy, MemoryFigures, MemoryState,
};
use crate::machine::{Command, Response};
use crate::soft::{ClusterMemory, SoftState};
use policy::NodePool;

/// The killer's settings (each RM's own flags; only the leader's count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillerConfig {
    /// `query.low-memory-killer.policy`; `None` never kills for low memory.
    pub policy: Option<KillerPolicy>,
    /// `query.low-memory-killer.delay`: how long the cluster must stay out
    /// of memory before a kill.
    pub delay: Duration,
    /// A kill whose memory is still held after this long counts as leaked,
    /// and the next episode may kill again.
    pub leak_timeout: Duration,
    /// `query.max-memory`: most a query may reserve over the cluster.
    pub max_memory: Option<u64>,
    /// `query.max-memory-per-node`: most a query may reserve on one worker.
    pub max_memory_per_node: Option<u64>,
    /// How often the killer looks at the memory view.
    pub interval: Duration,
}

impl Default for KillerConfig {
    fn default() -> Self {
        Self {
            policy: Some(KillerPolicy::TotalReservationOnBlockedNodes),
            delay: Duration::from_secs(300),
            leak_timeout: Duration::from_secs(60),
            max_memory: Some(20 << 30),
            max_memory_per_node: None,
            interval: Duration::from_millis(100),
        }
    }
}

/// `none`, `total-reservation` or `total-reservation-on-blocked-nodes`.
pub fn parse_policy(text: &str) -> Result<Option<KillerPolicy>, String> {
    match text {
        "none" => Ok(None),
        "total-reservation" => Ok(Some(KillerPolicy::TotalReservation)),
        "total-reservation-on-blocked-nodes" => {
            Ok(Some(KillerPolicy::TotalReservationOnBlockedNodes))
        }
        other => Err(format!(
            "'{other}' is not none, total-reservation or total-reservation-on-blocked-nodes"
        )),
    }
}

/// This RM's own view of the current episode (not replicated: every RM
/// hears the heartbeats and keeps its own).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Episode {
    /// When this RM first saw the cluster out of memory (ms since epoch).
    pub since_ms: u64,
    /// When the delay started counting: the episode's start, or the
    /// settlement of the previous kill.
    pub delay_from_ms: u64,
}

#[derive(Default)]
struct Tracker {
    episode: Option<Episode>,
    last_ms: Option<u64>,
}

pub struct Killer {
    pub config: KillerConfig,
    tracker: Mutex<Tracker>,
}

impl Killer {
    pub fn new(config: KillerConfig) -> Killer {
        Killer {
            config,
            tracker: Mutex::default(),
        }
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current episode, if the cluster is out of memory.
    pub fn episode(&self) -> Option<Episode> {
        self.tracker().episode.clone()
    }

    /// Records whether the cluster is out of memory at `now_ms`; answers
    /// how long the delay has been running (0 when not out of memory).
    fn observe(&self, now_ms: u64, out_of_memory: bool, metrics: &crate::metrics::Metrics) -> u64 {
        let mut t = self.tracker();
        let elapsed = t.last_ms.map_or(0, |l| now_ms.saturating_sub(l));
        t.last_ms = Some(now_ms);
        if t.episode.is_some() {
            metrics.memory.out_of_memory_time(elapsed);
        }
        match (out_of_memory, &t.episode) {
            (false, Some(_)) => {
                t.episode = None;
                tracing::info!("the cluster has memory again; episode over");
            }
            (true, None) => {
                t.episode = Some(Episode {
                    since_ms: now_ms,
                    delay_from_ms: now_ms,
                });
                metrics.memory.episode_started();
                tracing::warn!("the cluster is out of memory: a worker's pool is blocked");
            }
            _ => {}
        }
        metrics.memory.set_out_of_memory(t.episode.is_some());
        t.episode
            .as_ref()
            .map_or(0, |e| now_ms.saturating_sub(e.delay_from_ms))
    }

    /// A kill settled: the next one needs the full delay again.
    fn restart_delay(&self, now_ms: u64) {
        if let Some(e) = self.tracker().episode.as_mut() {
            e.delay_from_ms = now_ms;
        }
    }
}

/// What this node remembers between rounds.
#[derive(Default)]
struct Round {
    /// Unsettled decision index -> when this node first saw it (local ms).
    first_seen: BTreeMap<u64, u64>,
    /// The unsettled low-memory decision of the previous round.
    low_memory_unsettled: Option<u64>,
}

impl Round {
    /// Follows the log's unsettled decisions, also on followers, so a new
    /// leader knows since when it has been waiting for each. A low-memory
    /// kill that settled restarts the delay.
    fn follow(&mut self, memory: &MemoryState, now_ms: u64, killer: &Killer) {
        let unsettled: Vec<u64> = memory
            .decisions
            .iter()
            .filter(|d| d.outcome.is_none())
            .map(|d| d.index)
            .collect();
        self.first_seen.retain(|index, _| unsettled.contains(index));
        for index in unsettled {
            self.first_seen.entry(index).or_insert(now_ms);
        }
        let low_memory_unsettled = memory.unsettled_low_memory().map(|d| d.index);
        if self.low_memory_unsettled.is_some() && low_memory_unsettled.is_none() {
            killer.restart_delay(now_ms);
        }
        self.low_memory_unsettled = low_memory_unsettled;
    }
}

/// A proposal a round makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Settle {
        index: u64,
        query_id: String,
        bytes: u64,
    },
    Kill(KillProposal),
}

/// Everything one round decides from, read only: [`plan`] is a pure
/// function of it.
pub struct PlanInputs<'a> {
    pub config: &'a KillerConfig,
    /// This node's clock (ms since epoch).
    pub now_ms: u64,
    /// Only a leader (not handing leadership over) proposes.
    pub leader: bool,
    /// The workers' memory, from this node's soft state.
    pub view: &'a ClusterMemory,
    /// The log's kill decisions.
    pub memory: &'a MemoryState,
    /// Unsettled decision index -> when this node first saw it.
    pub first_seen: &'a BTreeMap<u64, u64>,
    /// How long the low-memory delay has run (0 when not out of memory).
    pub delay_ran_ms: u64,
    /// When the current out-of-memory episode began, if there is one.
    pub out_of_memory_since_ms: Option<u64>,
}

/// Runs the killer on every RM until `stop`, watching the workers' memory
/// in `soft`; only a leader proposes, through `core`.
pub async fn run(
    core: Core,
    killer: Arc<Killer>,
    soft: Arc<SoftState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(killer.config.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = Round::default();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = interval.tick() => {}
        }
        for step in next_round(&core, &killer, &soft, &mut round) {
            execute(&core, step).await;
        }
    }
}

/// Gathers one round's inputs (and updates what this node remembers),
/// then plans.
fn next_round(core: &Core, killer: &Killer, soft: &SoftState, round: &mut Round) -> Vec<Step> {
    let now_ms = core.clock().now_ms();
    let view = soft.memory();
    let out_of_memory = view.nodes.iter().any(|n| n.heartbeat.memory.is_blocked());
    let delay_ran_ms = killer.observe(now_ms, out_of_memory, core.metrics());
    let leader = core.may_propose();
    let applied = core.applied().read();
    round.follow(&applied.state.memory, now_ms, killer);
    plan(&PlanInputs {
        config: &killer.config,
        now_ms,
        leader,
        view: &view,
        memory: &applied.state.memory,
        first_seen: &round.first_seen,
        delay_ran_ms,
        out_of_memory_since_ms: killer.episode().map(|e| e.since_ms),
    })
}

/// What a round proposes, in order: settlements of kills whose memory is
/// gone, kills of queries over a memory limit, then (out of memory for the
/// delay, no low-memory kill unsettled) the policy's victim. Nothing
/// unless leader.
pub fn plan(inputs: &PlanInputs) -> Vec<Step> {
    let PlanInputs {
        config,
        now_ms: now,
        view,
        memory,
        ..
    } = *inputs;
    if !inputs.leader {
        return Vec::new();
    }
    let nodes: Vec<NodePool> = view
        .nodes
        .iter()
        .map(|n| NodePool {
            node: n.heartbeat.node_id.clone(),
            pool: n.heartbeat.memory.clone(),
        })
        .collect();
    let blocked: Vec<String> = nodes
        .iter()
        .filter(|n| n.pool.is_blocked())
        .map(|n| n.node.clone())
        .collect();
    let mut steps = Vec::new();
    for d in memory.decisions.iter().filter(|d| d.outcome.is_none()) {
        // Seen now if this round is the first to see it.
        let seen = inputs.first_seen.get(&d.index).copied().unwrap_or(now);
        // Every worker has reported since this node saw the decision.
        let fresh = view
            .nodes
            .iter()
            .all(|n| now.saturating_sub(n.age_ms) > seen);
        let held = nodes
            .iter()
            .any(|n| n.pool.queries.contains_key(&d.query_id));
        if fresh && !held {
            steps.push(Step::Settle {
                index: d.index,
                query_id: d.query_id.clone(),
                bytes: d.figures.query_total_bytes,
            });
        }
    }
    let figures = |bytes: u64, total: u64, oom_ms: u64| MemoryFigures {
        workers: nodes.len() as u32,
        cluster_total_bytes: view.total_bytes,
        cluster_reserved_bytes: view.reserved_bytes,
        blocked_nodes: blocked.clone(),
        query_bytes: bytes,
        query_total_bytes: total,
        out_of_memory_ms: oom_ms,
    };
    let leak_timeout_ms = config.leak_timeout.as_millis() as u64;
    let totals = policy::totals(&nodes);
    for (query_id, reason, bytes) in
        policy::over_limits(&nodes, config.max_memory, config.max_memory_per_node)
    {
        if memory.decision_for(&query_id).is_none() {
            let total = totals.get(query_id.as_str()).copied().unwrap_or(bytes);
            steps.push(Step::Kill(KillProposal {
                query_id,
                reason,
                figures: figures(bytes, total, 0),
                leak_timeout_ms,
            }));
        }
    }
    let due = !blocked.is_empty() && inputs.delay_ran_ms >= config.delay.as_millis() as u64;
    let low_memory_unsettled = memory.unsettled_low_memory().is_some();
    if let (Some(policy), true, false) = (config.policy, due, low_memory_unsettled) {
        let victim = policy::choose(policy, &nodes, |q| {
            memory.decision_for(q).is_some()
                || steps
                    .iter()
                    .any(|s| matches!(s, Step::Kill(p) if p.query_id == q))
        });
        if let Some(v) = victim {
            let oom_ms = inputs
                .out_of_memory_since_ms
                .map_or(0, |since| now.saturating_sub(since));
            steps.push(Step::Kill(KillProposal {
                query_id: v.query_id,
                reason: KillReason::LowMemory { policy },
                figures: figures(v.bytes, v.total_bytes, oom_ms),
                leak_timeout_ms,
            }));
        }
    }
    steps
}

async fn execute(core: &Core, step: Step) {
    match step {
        Step::Settle {
            index,
            query_id,
            bytes,
        } => match core.propose(Command::SettleKill { index }).await {
            Ok((_, Response::KillSettled { settled: true })) => {
                core.metrics().memory.freed(bytes);
                tracing::info!(query = %query_id, decision = index, bytes, "killed query's memory is free");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "settlement not committed; next round"),
        },
        Step::Kill(proposal) => {
            let label = proposal.reason.label();
            let (query, figures) = (proposal.query_id.clone(), proposal.figures.clone());
            match core.propose(Command::Kill(proposal)).await {
                Ok((_, Response::Kill(KillAnswer::Decided { index, episode }))) => {
                    core.metrics().memory.killed(label);
                    tracing::warn!(
                        query = %query, decision = index, episode, reason = label,
                        bytes = figures.query_bytes, blocked = ?figures.blocked_nodes,
                        out_of_memory_ms = figures.out_of_memory_ms,
                        "killed a query for memory"
                    );
                }
                Ok((_, Response::Kill(other))) => {
                    tracing::debug!(query = %query, ?other, "kill not needed")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "kill not committed; next round"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_upstream_spells_them() {
        assert_eq!(parse_policy("none"), Ok(None));
        assert_eq!(
            parse_policy("total-reservation-on-blocked-nodes"),
            Ok(Some(KillerPolicy::TotalReservationOnBlockedNodes))
        );
        assert!(parse_policy("largest").is_err());
    }

    #[test]
    fn the_delay_runs_from_the_episode_start_and_restarts_after_a_kill() {
        let metrics = crate::metrics::Metrics::new();
        let k = Killer::new(KillerConfig::default());
        assert_eq!(k.observe(1_000, false, &metrics), 0);
        assert_eq!(k.observe(1_100, true, &metrics), 0);
        assert_eq!(k.observe(1_600, true, &metrics), 500);
        k.restart_delay(1_700);
        assert_eq!(k.observe(1_900, true, &metrics), 200);
        assert_eq!(k.episode().map(|e| e.since_ms), Some(1_100));
        assert_eq!(k.observe(2_000, false, &metrics), 0);
        assert!(k.episode().is_none());
        let text = metrics.render_registry();
        assert!(
            text.contains("raft_rm_memory_oom_episodes_total 1"),
            "{text}"
        );
        assert!(
            text.contains("raft_rm_memory_out_of_memory_seconds_total 0.9"),
            "{text}"
        );
    }

    /// A worker's pool of 100 bytes holding `queries`, heard `age_ms` ago;
    /// blocked when `waiting` tasks wait and the pool is full.
    fn worker(
        name: &str,
        age_ms: u64,
        waiting: u32,
        queries: &[(&str, u64)],
    ) -> crate::soft::WorkerMemory {
        let queries: BTreeMap<String, u64> =
            queries.iter().map(|(q, b)| (q.to_string(), *b)).collect();
        crate::soft::WorkerMemory {
            age_ms,
            heartbeat: std::sync::Arc::new(common::wire::WorkerHeartbeat {
                node_id: name.into(),
                memory: common::wire::MemoryPool {
                    total_bytes: 100,
                    reserved_bytes: queries.values().sum(),
                    blocked_tasks: waiting,
                    queries,
                },
                cpu_cores: 0.0,
                running_tasks: 0,
                ttl_ms: 1_000,
                queries: Default::default(),
            }),
        }
    }

    fn view(nodes: Vec<crate::soft::WorkerMemory>) -> ClusterMemory {
        let total_bytes = nodes.iter().map(|n| n.heartbeat.memory.total_bytes).sum();
        let reserved_bytes = nodes
            .iter()
            .map(|n| n.heartbeat.memory.reserved_bytes)
            .sum();
        ClusterMemory {
            workers: nodes.len(),
            total_bytes,
            reserved_bytes,
            free_bytes: total_bytes - reserved_bytes,
            blocked_workers: nodes
                .iter()
                .filter(|n| n.heartbeat.memory.is_blocked())
                .count(),
            queries: BTreeMap::new(),
            nodes,
        }
    }

    fn config() -> KillerConfig {
        KillerConfig {
            policy: Some(KillerPolicy::TotalReservation),
            delay: Duration::from_millis(500),
            max_memory: Some(90),
            ..KillerConfig::default()
        }
    }

    fn inputs<'a>(
        config: &'a KillerConfig,
        view: &'a ClusterMemory,
        memory: &'a MemoryState,
        first_seen: &'a BTreeMap<u64, u64>,
        delay_ran_ms: u64,
    ) -> PlanInputs<'a> {
        PlanInputs {
            config,
            now_ms: 10_000,
            leader: true,
            view,
            memory,
            first_seen,
            delay_ran_ms,
            out_of_memory_since_ms: Some(9_000),
        }
    }

    fn killed(steps: &[Step]) -> Vec<(&str, &KillReason)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Kill(p) => Some((p.query_id.as_str(), &p.reason)),
                Step::Settle { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_follower_plans_nothing() {
        let (c, m, seen) = (config(), MemoryState::default(), BTreeMap::new());
        let v = view(vec![worker("w1", 0, 2, &[("big", 100)])]);
        let mut i = inputs(&c, &v, &m, &seen, 60_000);
        i.leader = false;
        assert!(plan(&i).is_empty());
    }

    #[test]
    fn low_memory_kills_the_policys_choice_only_after_the_delay() {
        let (c, m, seen) = (config(), MemoryState::default(), BTreeMap::new());
        let v = view(vec![
            worker("w1", 0, 1, &[("small", 30), ("big", 70)]),
            worker("w2", 0, 0, &[("small", 20)]),
        ]);
        assert!(
            plan(&inputs(&c, &v, &m, &seen, 499)).is_empty(),
            "delay not over"
        );
        let steps = plan(&inputs(&c, &v, &m, &seen, 500));
        assert_eq!(
            killed(&steps),
            [(
                "big",
                &KillReason::LowMemory {
                    policy: KillerPolicy::TotalReservation
                }
            )]
        );
        let Step::Kill(p) = &steps[0] else {
            unreachable!()
        };
        assert_eq!(p.figures.blocked_nodes, ["w1"]);
        assert_eq!(p.figures.out_of_memory_ms, 1_000);
        assert_eq!(p.figures.query_total_bytes, 70);
    }

    #[test]
    fn no_second_low_memory_kill_while_one_is_unsettled() {
        let (c, seen) = (config(), BTreeMap::new());
        let v = view(vec![worker("w1", 0, 1, &[("a", 60), ("b", 40)])]);
        let mut m = MemoryState::default();
        let first = plan(&inputs(&c, &v, &m, &seen, 600));
        let Step::Kill(p) = &first[0] else {
            panic!("{first:?}")
        };
        m.kill(7, p, 10_000);
        let again = plan(&inputs(&c, &v, &m, &seen, 600));
        assert!(killed(&again).is_empty(), "{again:?}");
    }

    #[test]
    fn a_query_over_the_cluster_limit_is_killed_at_once_and_once() {
        let (c, seen) = (config(), BTreeMap::new());
        // 95 bytes over the cluster: over max_memory (90), no worker blocked.
        let v = view(vec![
            worker("w1", 0, 0, &[("wide", 50)]),
            worker("w2", 0, 0, &[("wide", 45)]),
        ]);
        let mut m = MemoryState::default();
        let steps = plan(&inputs(&c, &v, &m, &seen, 0));
        assert_eq!(
            killed(&steps),
            [("wide", &KillReason::ExceededGlobalLimit { limit_bytes: 90 })]
        );
        let Step::Kill(p) = &steps[0] else {
            unreachable!()
        };
        m.kill(3, p, 10_000);
        assert!(killed(&plan(&inputs(&c, &v, &m, &seen, 0))).is_empty());
    }

    #[test]
    fn a_kill_settles_once_every_worker_has_reported_without_its_query() {
        let c = config();
        let mut m = MemoryState::default();
        let held = view(vec![worker("w1", 0, 0, &[("gone", 10)])]);
        let first = plan(&inputs(&c, &held, &m, &BTreeMap::new(), 0));
        assert!(first.is_empty(), "{first:?}");
        let p = KillProposal {
            query_id: "gone".into(),
            reason: KillReason::ExceededGlobalLimit { limit_bytes: 5 },
            figures: MemoryFigures {
                query_total_bytes: 10,
                ..MemoryFigures::default()
            },
            leak_timeout_ms: 60_000,
        };
        m.kill(4, &p, 9_000);
        // Seen at 9,500 here; the query is still held: no settlement.
        let seen = BTreeMap::from([(4, 9_500)]);
        assert!(plan(&inputs(&c, &held, &m, &seen, 0)).is_empty());
        // Freed, but by a heartbeat from before the decision was seen.
        let stale = view(vec![worker("w1", 600, 0, &[])]);
        assert!(plan(&inputs(&c, &stale, &m, &seen, 0)).is_empty());
        // Freed, by a heartbeat since.
        let fresh = view(vec![worker("w1", 100, 0, &[])]);
        assert_eq!(
            plan(&inputs(&c, &fresh, &m, &seen, 0)),
            [Step::Settle {
                index: 4,
                query_id: "gone".into(),
                bytes: 10
            }]
        );
    }
}
