//! Memory kills, as the log decides them. Pure, like the rest of the
//! machine: the leader watches the workers' memory (soft state, see
//! the node's `killer`) and proposes; this module decides what stands.
//!
//! Rules:
//! - at most one low-memory kill is unsettled at a time: a proposal while
//!   one is unsettled is refused. This is upstream's "the last killed query
//!   is gone" rule, made durable: a new leader sees the unsettled decision
//!   and does not kill again for the same episode, and two leaders racing
//!   cannot both kill;
//! - a query is killed at most once, whatever the reason;
//! - a decision settles when the leader sees the query's memory gone from
//!   every worker (`Settle`), or, on a tick, when its leak deadline passes
//!   (the memory is then counted as leaked, and the next episode may kill).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Decisions kept for `/v1/memory`, the watch and the workers' heartbeat
/// answers (older ones are dropped, oldest first, once settled).
pub const DECISIONS_KEPT: usize = 1_000;

/// Upstream's `query.low-memory-killer.policy` values that kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KillerPolicy {
    /// The query with the largest reservation over the whole cluster.
    TotalReservation,
    /// The query with the largest reservation summed over blocked nodes.
    TotalReservationOnBlockedNodes,
}

impl KillerPolicy {
    pub fn name(self) -> &'static str {
        match self {
            KillerPolicy::TotalReservation => "total-reservation",
            KillerPolicy::TotalReservationOnBlockedNodes => "total-reservation-on-blocked-nodes",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillReason {
    /// The cluster was out of memory for longer than the killer's delay.
    LowMemory { policy: KillerPolicy },
    /// `query.max-memory`: the query's reservation over the cluster.
    ExceededGlobalLimit { limit_bytes: u64 },
    /// `query.max-memory-per-node`: the query's reservation on `node`.
    ExceededLocalLimit { node: String, limit_bytes: u64 },
    /// A group's `perQueryLimits.cpuTimeLimit`: the query's CPU time.
    ExceededCpuLimit { limit_ms: u64 },
}

impl KillReason {
    /// Trino's error name for the query's failure.
    pub fn error_name(&self) -> &'static str {
        match self {
            KillReason::LowMemory { .. } => "CLUSTER_OUT_OF_MEMORY",
            KillReason::ExceededGlobalLimit { .. } => "EXCEEDED_GLOBAL_MEMORY_LIMIT",
            KillReason::ExceededLocalLimit { .. } => "EXCEEDED_LOCAL_MEMORY_LIMIT",
            KillReason::ExceededCpuLimit { .. } => "EXCEEDED_CPU_LIMIT",
        }
    }

    /// The failure message, worded as upstream's.
    pub fn message(&self) -> String {
        match self {
            KillReason::LowMemory { .. } => {
                "Query killed because the cluster is out of memory. Please try again in a few minutes."
                    .to_string()
            }
            KillReason::ExceededGlobalLimit { limit_bytes } => format!(
                "Query exceeded distributed user memory limit of {}",
                human_bytes(*limit_bytes)
            ),
            KillReason::ExceededLocalLimit { node, limit_bytes } => format!(
                "Query exceeded per-node memory limit of {} [on {node}]",
                human_bytes(*limit_bytes)
            ),
            KillReason::ExceededCpuLimit { limit_ms } => {
                format!(
                    "Exceeded CPU limit of {}",
                    succinct_duration(std::time::Duration::from_millis(*limit_ms))
                )
            }
        }
    }

    /// The metric label: the policy, or the limit that was exceeded.
    pub fn label(&self) -> &'static str {
        match self {
            KillReason::LowMemory { policy } => policy.name(),
            KillReason::ExceededGlobalLimit { .. } => "query.max-memory",
            KillReason::ExceededLocalLimit { .. } => "query.max-memory-per-node",
            KillReason::ExceededCpuLimit { .. } => "perQueryLimits.cpuTimeLimit",
        }
    }
}

/// `1.5GB`-style sizes in messages (binary units, as upstream's DataSize).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

use resource_groups::succinct_duration;

/// What the leader saw when it decided: kept with the decision, so an
/// operator can check it afterwards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryFigures {
    pub workers: u32,
    pub cluster_total_bytes: u64,
    pub cluster_reserved_bytes: u64,
    /// Workers whose pool was blocked (full, with tasks waiting).
    pub blocked_nodes: Vec<String>,
    /// The query's reservation as the policy counted it.
    pub query_bytes: u64,
    /// The query's reservation over the whole cluster.
    pub query_total_bytes: u64,
    /// How long the cluster had been out of memory (0 for limit kills).
    pub out_of_memory_ms: u64,
}

/// A kill as the leader proposes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillProposal {
    pub query_id: String,
    pub reason: KillReason,
    pub figures: MemoryFigures,
    /// Log time after which an unsettled decision counts as leaked.
    pub leak_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillOutcome {
    /// The query's memory was seen gone from every worker.
    Freed { at_ms: u64 },
    /// It was still reserved at the leak deadline.
    Leaked { at_ms: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillDecision {
    /// Log index of the decision (its identity).
    pub index: u64,
    /// Low-memory kills: the episode, numbered from 1. Limit kills: 0.
    pub episode: u64,
    pub query_id: String,
    pub reason: KillReason,
    pub figures: MemoryFigures,
    pub decided_ms: u64,
    pub leak_deadline_ms: u64,
    pub outcome: Option<KillOutcome>,
}

impl KillDecision {
    pub fn is_low_memory(&self) -> bool {
        matches!(self.reason, KillReason::LowMemory { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillAnswer {
    Decided {
        index: u64,
        episode: u64,
    },
    /// A low-memory kill is still unsettled (its decision index).
    Unsettled {
        index: u64,
    },
    /// The query was killed before (that decision's index).
    AlreadyKilled {
        index: u64,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryState {
    /// Low-memory episodes that ended in a kill so far.
    pub episodes: u64,
    /// Newest last; every unsettled decision is kept.
    pub decisions: VecDeque<KillDecision>,
}

impl MemoryState {
    /// The unsettled low-memory decision, if any.
    pub fn unsettled_low_memory(&self) -> Option<&KillDecision> {
        self.decisions
            .iter()
            .find(|d| d.is_low_memory() && d.outcome.is_none())
    }

    pub fn decision_for(&self, query_id: &str) -> Option<&KillDecision> {
        self.decisions.iter().find(|d| d.query_id == query_id)
    }

    pub fn kill(&mut self, index: u64, p: &KillProposal, now_ms: u64) -> KillAnswer {
        if let Some(d) = self.decision_for(&p.query_id) {
            return KillAnswer::AlreadyKilled { index: d.index };
        }
        let low_memory = matches!(p.reason, KillReason::LowMemory { .. });
        if low_memory {
            if let Some(d) = self.unsettled_low_memory() {
                return KillAnswer::Unsettled { index: d.index };
            }
            self.episodes += 1;
        }
        let episode = if low_memory { self.episodes } else { 0 };
        self.decisions.push_back(KillDecision {
            index,
            episode,
            query_id: p.query_id.clone(),
            reason: p.reason.clone(),
            figures: p.figures.clone(),
            decided_ms: now_ms,
            leak_deadline_ms: now_ms.saturating_add(p.leak_timeout_ms),
            outcome: None,
        });
        self.trim();
        KillAnswer::Decided { index, episode }
    }

    /// The leader saw the memory of decision `index` gone. False if there
    /// is no such unsettled decision (already settled, or unknown).
    pub fn settle_freed(&mut self, index: u64, now_ms: u64) -> bool {
        match self
            .decisions
            .iter_mut()
            .find(|d| d.index == index && d.outcome.is_none())
        {
            Some(d) => {
                d.outcome = Some(KillOutcome::Freed { at_ms: now_ms });
                self.trim();
                true
            }
            None => false,
        }
    }

    /// Marks decisions past their leak deadline as leaked; returns them.
    pub fn tick(&mut self, now_ms: u64) -> Vec<u64> {
        let mut leaked = Vec::new();
        for d in self.decisions.iter_mut() {
            if d.outcome.is_none() && d.leak_deadline_ms <= now_ms {
                d.outcome = Some(KillOutcome::Leaked { at_ms: now_ms });
                leaked.push(d.index);
            }
        }
        if !leaked.is_empty() {
            self.trim();
        }
        leaked
    }

    /// Drops the oldest settled decisions beyond the bound.
    fn trim(&mut self) {
        while self.decisions.len() > DECISIONS_KEPT {
            match self.decisions.iter().position(|d| d.outcome.is_some()) {
                Some(i) => {
                    self.decisions.remove(i);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(query: &str, reason: KillReason) -> KillProposal {
        KillProposal {
            query_id: query.into(),
            reason,
            figures: MemoryFigures::default(),
            leak_timeout_ms: 1_000,
        }
    }

    fn low() -> KillReason {
        KillReason::LowMemory {
            policy: KillerPolicy::TotalReservationOnBlockedNodes,
        }
    }

    #[test]
    fn one_low_memory_kill_at_a_time() {
        let mut m = MemoryState::default();
        assert_eq!(
            m.kill(10, &proposal("q1", low()), 100),
            KillAnswer::Decided {
                index: 10,
                episode: 1
            }
        );
        // A second leader (or a retry) proposing for the same episode.
        assert_eq!(
            m.kill(11, &proposal("q2", low()), 150),
            KillAnswer::Unsettled { index: 10 }
        );
        // Limit kills are not held back by the episode.
        let limit = KillReason::ExceededGlobalLimit { limit_bytes: 5 };
        assert_eq!(
            m.kill(12, &proposal("q3", limit.clone()), 160),
            KillAnswer::Decided {
                index: 12,
                episode: 0
            }
        );
        assert_eq!(
            m.kill(13, &proposal("q3", limit), 170),
            KillAnswer::AlreadyKilled { index: 12 }
        );
        assert!(m.settle_freed(10, 200));
        assert!(!m.settle_freed(10, 210), "settles once");
        assert_eq!(
            m.kill(14, &proposal("q2", low()), 300),
            KillAnswer::Decided {
                index: 14,
                episode: 2
            }
        );
        assert_eq!(
            m.kill(15, &proposal("q1", low()), 400),
            KillAnswer::AlreadyKilled { index: 10 }
        );
    }

    #[test]
    fn an_unsettled_kill_leaks_at_its_deadline() {
        let mut m = MemoryState::default();
        m.kill(10, &proposal("q1", low()), 100);
        assert!(m.tick(1_099).is_empty());
        assert_eq!(m.tick(1_100), vec![10]);
        assert_eq!(
            m.decisions[0].outcome,
            Some(KillOutcome::Leaked { at_ms: 1_100 })
        );
        assert!(!m.settle_freed(10, 1_200));
        assert!(m.unsettled_low_memory().is_none());
    }

    #[test]
    fn settled_decisions_are_dropped_beyond_the_bound_unsettled_never() {
        let mut m = MemoryState::default();
        let limit = KillReason::ExceededGlobalLimit { limit_bytes: 5 };
        m.kill(1, &proposal("unsettled", low()), 0);
        for i in 0..DECISIONS_KEPT as u64 + 5 {
            m.kill(i + 2, &proposal(&format!("q{i}"), limit.clone()), 0);
            m.settle_freed(i + 2, 1);
        }
        assert_eq!(m.decisions.len(), DECISIONS_KEPT);
        assert_eq!(m.unsettled_low_memory().map(|d| d.index), Some(1));
    }

    #[test]
    fn messages_follow_upstream() {
        assert_eq!(
            low().message(),
            "Query killed because the cluster is out of memory. Please try again in a few minutes."
        );
        let global = KillReason::ExceededGlobalLimit {
            limit_bytes: 20 << 30,
        };
        assert_eq!(
            global.message(),
            "Query exceeded distributed user memory limit of 20GB"
        );
        assert_eq!(global.error_name(), "EXCEEDED_GLOBAL_MEMORY_LIMIT");
        assert_eq!(human_bytes(1536), "1.50kB");
        let cpu = KillReason::ExceededCpuLimit { limit_ms: 90_000 };
        assert_eq!(cpu.message(), "Exceeded CPU limit of 1.50m");
        let cpu = KillReason::ExceededCpuLimit { limit_ms: 1_000 };
        assert_eq!(cpu.message(), "Exceeded CPU limit of 1.00s");
        assert_eq!(cpu.error_name(), "EXCEEDED_CPU_LIMIT");
        assert_eq!(human_bytes(100), "100B");
    }
}
