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
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::http::AppState;
use crate::machine::memory::{KillAnswer, KillProposal, KillReason, KillerPolicy, MemoryFigures};
use crate::machine::{Command, Response};
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

/// A proposal this round makes, worked out under the read lock.
enum Step {
    Settle {
        index: u64,
        query_id: String,
        bytes: u64,
    },
    Kill(KillProposal),
}

/// Runs the killer on every RM until `stop`; only a leader proposes.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(state.killer.config.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = Round::default();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = interval.tick() => {}
        }
        for step in plan(&state, &mut round) {
            execute(&state, step).await;
        }
    }
}

fn plan(state: &AppState, round: &mut Round) -> Vec<Step> {
    let killer = &state.killer;
    let config = &killer.config;
    let now = state.clock.now_ms();
    let view = state.soft.memory();
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
    let delay_ran_ms = killer.observe(now, !blocked.is_empty(), &state.metrics);
    let leader = state.raft.metrics().borrow().current_leader == Some(state.id)
        && !state.transferring.load(Ordering::Acquire);

    let applied = state.applied.read();
    let memory = &applied.state.memory;
    // Follow the unsettled decisions, also on followers, so a new leader
    // knows since when it has been waiting for each.
    let unsettled: Vec<_> = memory
        .decisions
        .iter()
        .filter(|d| d.outcome.is_none())
        .collect();
    round
        .first_seen
        .retain(|index, _| unsettled.iter().any(|d| d.index == *index));
    for d in &unsettled {
        round.first_seen.entry(d.index).or_insert(now);
    }
    let low_memory_unsettled = memory.unsettled_low_memory().map(|d| d.index);
    if round.low_memory_unsettled.is_some() && low_memory_unsettled.is_none() {
        killer.restart_delay(now);
    }
    round.low_memory_unsettled = low_memory_unsettled;
    if !leader {
        return Vec::new();
    }

    let mut steps = Vec::new();
    for d in &unsettled {
        let seen = round.first_seen[&d.index];
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
    let due = !blocked.is_empty() && delay_ran_ms >= config.delay.as_millis() as u64;
    if let (Some(policy), true, None) = (config.policy, due, low_memory_unsettled) {
        let victim = policy::choose(policy, &nodes, |q| {
            memory.decision_for(q).is_some()
                || steps
                    .iter()
                    .any(|s| matches!(s, Step::Kill(p) if p.query_id == q))
        });
        if let Some(v) = victim {
            let oom_ms = killer
                .episode()
                .map_or(0, |e| now.saturating_sub(e.since_ms));
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

async fn execute(state: &AppState, step: Step) {
    match step {
        Step::Settle {
            index,
            query_id,
            bytes,
        } => match state.propose(Command::SettleKill { index }).await {
            Ok((_, Response::KillSettled { settled: true })) => {
                state.metrics.memory.freed(bytes);
                tracing::info!(query = %query_id, decision = index, bytes, "killed query's memory is free");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "settlement not committed; next round"),
        },
        Step::Kill(proposal) => {
            let label = proposal.reason.label();
            let (query, figures) = (proposal.query_id.clone(), proposal.figures.clone());
            match state.propose(Command::Kill(proposal)).await {
                Ok((_, Response::Kill(KillAnswer::Decided { index, episode }))) => {
                    state.metrics.memory.killed(label);
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
}
