//! Group memory and CPU usage, as the leader stamps it into the log.
//!
//! The figures come from the workers' heartbeats (soft state, which the
//! machine must not read). The leader proposes them as a [`UsageStamp`]
//! at a regular interval, as it stamps time; every replica folds the same
//! stamps in the same order, so admissions that depend on memory and CPU
//! (`softMemoryLimit`, `hardCpuLimit`, `softCpuLimit`) decide alike on
//! every replica and in every replay.
//!
//! As upstream's `InternalResourceGroup`:
//! - memory is instantaneous: a group's is the sum of its running
//!   queries' (and its descendants'), replaced by each stamp;
//! - CPU is cumulative: each stamp charges a query's growth since the last
//!   stamp to its group and every ancestor, and on each whole second of
//!   log time the quota regenerates (`resource_groups::limits`).
//!
//! A query missing from a stamp (finished, or its worker unheard) uses no
//! memory; its CPU figure is remembered for [`FORGET_AFTER_MS`] so that a
//! query that reappears is charged its growth only, never twice.

use std::collections::BTreeMap;

use resource_groups::limits::regenerate_cpu;
use resource_groups::{CpuLimits, ResourceUsage};
use serde::{Deserialize, Serialize};

/// How long (log time) a query missing from stamps keeps its CPU record.
pub const FORGET_AFTER_MS: u64 = 60_000;

/// One running query's figures, summed over the workers that run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryUsage {
    /// The resource group the coordinator gave its tasks.
    pub group: String,
    pub memory_bytes: u64,
    /// CPU time used so far (cumulative).
    pub cpu_ms: u64,
}

/// What the leader proposes: every running query it heard of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageStamp {
    /// The live workers' memory pools, summed: `softMemoryLimit` in percent
    /// is of this.
    pub cluster_memory_bytes: u64,
    pub queries: BTreeMap<String, QueryUsage>,
    /// A per-query limit kill's leak deadline (the leader's killer setting).
    pub leak_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampedQuery {
    pub group: String,
    pub memory_bytes: u64,
    pub cpu_ms: u64,
    /// Log time of the last stamp that carried it.
    pub seen_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageState {
    pub cluster_memory_bytes: u64,
    pub queries: BTreeMap<String, StampedQuery>,
    /// Group id (every level) -> its usage, descendants included. Groups
    /// that use nothing are absent.
    pub groups: BTreeMap<String, ResourceUsage>,
    /// Log time up to which CPU quota has been regenerated (0: not yet).
    pub regenerated_to_ms: u64,
    /// Stamps applied (for operators: usage is live when this grows).
    pub stamps: u64,
}

impl UsageState {
    pub fn of(&self, group: &str) -> ResourceUsage {
        self.groups.get(group).copied().unwrap_or_default()
    }

    /// Folds a stamp in at log time `now_ms`.
    pub fn stamp(&mut self, stamp: &UsageStamp, now_ms: u64) {
        self.stamps = self.stamps.saturating_add(1);
        self.cluster_memory_bytes = stamp.cluster_memory_bytes;
        for (id, q) in &stamp.queries {
            let charged = match self.queries.get(id) {
                Some(prev) if prev.group == q.group => q.cpu_ms.saturating_sub(prev.cpu_ms),
                _ => q.cpu_ms,
            };
            if charged > 0 {
                for g in resource_groups::chain_ids(&q.group) {
                    let u = self.groups.entry(g).or_default();
                    u.cpu_ms = u.cpu_ms.saturating_add(charged);
                }
            }
            let cpu_ms = match self.queries.get(id) {
                Some(prev) if prev.group == q.group => prev.cpu_ms.max(q.cpu_ms),
                _ => q.cpu_ms,
            };
            self.queries.insert(
                id.clone(),
                StampedQuery {
                    group: q.group.clone(),
                    memory_bytes: q.memory_bytes,
                    cpu_ms,
                    seen_ms: now_ms,
                },
            );
        }
        for (id, q) in self.queries.iter_mut() {
            if !stamp.queries.contains_key(id) {
                q.memory_bytes = 0;
            }
        }
        self.queries
            .retain(|_, q| q.seen_ms.saturating_add(FORGET_AFTER_MS) > now_ms);
        for u in self.groups.values_mut() {
            u.memory_bytes = 0;
        }
        for q in self.queries.values().filter(|q| q.memory_bytes > 0) {
            for g in resource_groups::chain_ids(&q.group) {
                let u = self.groups.entry(g).or_default();
                u.memory_bytes = u.memory_bytes.saturating_add(q.memory_bytes);
            }
        }
        self.drop_idle();
    }

    /// Regenerates CPU quota for every whole second of log time since the
    /// last regeneration; `cpu_limits` gives a group's limits (`None`: no
    /// CPU limits, so nothing charged stays past a second, as upstream).
    pub fn regenerate(&mut self, now_ms: u64, cpu_limits: impl Fn(&str) -> Option<CpuLimits>) {
        if self.regenerated_to_ms == 0 || now_ms < self.regenerated_to_ms {
            self.regenerated_to_ms = now_ms;
            return;
        }
        let elapsed_s = (now_ms - self.regenerated_to_ms) / 1000;
        if elapsed_s == 0 {
            return;
        }
        self.regenerated_to_ms += elapsed_s * 1000;
        for (id, u) in self.groups.iter_mut() {
            u.cpu_ms = regenerate_cpu(cpu_limits(id), u.cpu_ms, elapsed_s);
        }
        self.drop_idle();
    }

    fn drop_idle(&mut self) {
        self.groups
            .retain(|_, u| u.memory_bytes > 0 || u.cpu_ms > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(queries: &[(&str, &str, u64, u64)]) -> UsageStamp {
        UsageStamp {
            cluster_memory_bytes: 1_000,
            queries: queries
                .iter()
                .map(|(id, group, memory_bytes, cpu_ms)| {
                    (
                        id.to_string(),
                        QueryUsage {
                            group: group.to_string(),
                            memory_bytes: *memory_bytes,
                            cpu_ms: *cpu_ms,
                        },
                    )
                })
                .collect(),
            leak_timeout_ms: 1_000,
        }
    }

    fn usage(memory_bytes: u64, cpu_ms: u64) -> ResourceUsage {
        ResourceUsage {
            memory_bytes,
            cpu_ms,
        }
    }

    #[test]
    fn memory_is_replaced_and_cpu_charged_by_growth_up_the_chain() {
        let mut u = UsageState::default();
        u.stamp(
            &stamp(&[("q1", "a.b", 100, 50), ("q2", "a.c", 10, 5)]),
            1_000,
        );
        assert_eq!(u.of("a.b"), usage(100, 50));
        assert_eq!(u.of("a"), usage(110, 55));
        u.stamp(
            &stamp(&[("q1", "a.b", 30, 80), ("q2", "a.c", 10, 5)]),
            2_000,
        );
        assert_eq!(
            u.of("a.b"),
            usage(30, 80),
            "memory replaced, CPU grew by 30"
        );
        assert_eq!(u.of("a"), usage(40, 85));
        // q1 finished: its memory goes, the CPU it used stays charged.
        u.stamp(&stamp(&[("q2", "a.c", 10, 5)]), 3_000);
        assert_eq!(u.of("a.b"), usage(0, 80));
        assert_eq!(u.of("a"), usage(10, 85));
    }

    #[test]
    fn a_query_that_reappears_is_charged_its_growth_only() {
        let mut u = UsageState::default();
        u.stamp(&stamp(&[("q1", "g", 100, 500)]), 1_000);
        // Its worker went unheard for a stamp (a new leader, a partition).
        u.stamp(&stamp(&[]), 2_000);
        assert_eq!(u.of("g"), usage(0, 500));
        u.stamp(&stamp(&[("q1", "g", 100, 600)]), 3_000);
        assert_eq!(u.of("g"), usage(100, 600));
        // Unseen for longer than FORGET_AFTER_MS: the record goes.
        u.stamp(&stamp(&[]), 3_000 + FORGET_AFTER_MS);
        assert!(u.queries.is_empty());
    }

    #[test]
    fn quota_regenerates_per_whole_second_of_log_time() {
        let limits = CpuLimits::new(None, 10_000, 10_000); // 1000 ms/s
        let mut u = UsageState::default();
        u.regenerate(1_000, |_| Some(limits));
        u.stamp(&stamp(&[("q1", "g", 0, 5_000)]), 1_000);
        u.regenerate(2_500, |_| Some(limits));
        assert_eq!(u.of("g").cpu_ms, 4_000, "one whole second");
        u.regenerate(3_000, |_| Some(limits));
        assert_eq!(u.of("g").cpu_ms, 3_000, "the half second carried over");
        // Without CPU limits nothing charged stays.
        u.regenerate(4_000, |_| None);
        assert!(u.groups.is_empty());
    }
}
