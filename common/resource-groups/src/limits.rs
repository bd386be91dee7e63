//! Whether a group may start another query, given its usage: Trino's
//! `canRunMore` rules, in one place for both modes (the RMs' state machine
//! for linearizable groups, coordinators for eventual ones). Pure
//! arithmetic on figures the caller got from the log (or the RMs' view).
//!
//! - memory: no new query runs while the group's memory is *over* its
//!   `softMemoryLimit` (equal still runs, as upstream);
//! - CPU: usage is CPU time charged to the group (its queries' and its
//!   descendants'), less the quota regenerated since: `hardCpuLimit /
//!   cpuQuotaPeriod` per second. At or over `hardCpuLimit` nothing starts;
//!   between `softCpuLimit` and `hardCpuLimit` the concurrency limit shrinks
//!   linearly, by at least one, but never below one.

use serde::{Deserialize, Serialize};

use super::spec::{GroupSpec, MemoryLimit};

/// A group's CPU limits, in milliseconds of CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuLimits {
    /// From `softCpuLimit`; `None`: no penalty before the hard limit.
    pub soft_ms: Option<u64>,
    pub hard_ms: u64,
    /// CPU time regenerated per second of (log) time:
    /// `1000 * hardCpuLimit / cpuQuotaPeriod`, at least 1 (as upstream).
    pub quota_ms_per_s: u64,
}

impl CpuLimits {
    pub fn new(soft_ms: Option<u64>, hard_ms: u64, period_ms: u64) -> CpuLimits {
        let rate = (1000.0 * hard_ms as f64 / period_ms.max(1) as f64).min(u64::MAX as f64);
        CpuLimits {
            soft_ms,
            hard_ms,
            quota_ms_per_s: (rate as u64).max(1),
        }
    }
}

/// The limits [`can_run_more`] reads, copied out of a [`GroupSpec`] (the
/// RMs keep them for a group whose spec was removed while it drains).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunLimits {
    pub hard_concurrency_limit: u32,
    pub soft_memory_limit: Option<MemoryLimit>,
    pub cpu_limits: Option<CpuLimits>,
}

impl GroupSpec {
    pub fn run_limits(&self) -> RunLimits {
        RunLimits {
            hard_concurrency_limit: self.hard_concurrency_limit,
            soft_memory_limit: self.soft_memory_limit,
            cpu_limits: self.cpu_limits,
        }
    }
}

/// What a group uses now: its running queries' memory (and its
/// descendants'), and the CPU time charged to it not yet regenerated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUsage {
    pub memory_bytes: u64,
    pub cpu_ms: u64,
}

/// `softMemoryLimit` in bytes for a cluster of `cluster_memory_bytes`
/// (a percentage is of the cluster's memory); `None`: no limit.
pub fn soft_memory_limit_bytes(limits: &RunLimits, cluster_memory_bytes: u64) -> Option<u64> {
    limits.soft_memory_limit.as_ref().map(|m| match m {
        MemoryLimit::Bytes(b) => *b,
        MemoryLimit::Percent(p) => (cluster_memory_bytes as f64 * p / 100.0) as u64,
    })
}

/// The running limit in force at `cpu_ms` of charged CPU time: the hard
/// concurrency limit, less the soft-to-hard CPU penalty; 0 at or over the
/// hard CPU limit.
pub fn running_limit(limits: &RunLimits, cpu_ms: u64) -> u32 {
    let hard = limits.hard_concurrency_limit;
    let Some(cpu) = limits.cpu_limits else {
        return hard;
    };
    if cpu_ms >= cpu.hard_ms {
        return 0;
    }
    match cpu.soft_ms {
        Some(soft) if cpu_ms >= soft => {
            // soft <= cpu_ms < hard, so the span is positive.
            let penalty = (cpu_ms - soft) as f64 / (cpu.hard_ms - soft) as f64;
            let scaled = (f64::from(hard) * (1.0 - penalty)).floor() as u32;
            scaled.min(hard.saturating_sub(1)).max(1)
        }
        _ => hard,
    }
}

/// Whether the group may start one more query (its own limits only: the
/// caller checks every group on the chain).
pub fn can_run_more(
    limits: &RunLimits,
    running: u32,
    usage: &ResourceUsage,
    cluster_memory_bytes: u64,
) -> bool {
    if soft_memory_limit_bytes(limits, cluster_memory_bytes).is_some_and(|l| usage.memory_bytes > l)
    {
        return false;
    }
    running < running_limit(limits, usage.cpu_ms)
}

/// `cpu_ms` after `elapsed_s` whole seconds of quota regeneration.
pub fn regenerate_cpu(cpu_limits: Option<CpuLimits>, cpu_ms: u64, elapsed_s: u64) -> u64 {
    match cpu_limits {
        Some(cpu) => cpu_ms.saturating_sub(elapsed_s.saturating_mul(cpu.quota_ms_per_s)),
        // Upstream regenerates at Long.MAX_VALUE per second: nothing stays.
        None if elapsed_s > 0 => 0,
        None => cpu_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Consistency, PerQueryLimits, SchedulingPolicy};

    fn spec(hard: u32, cpu: Option<CpuLimits>, memory: Option<MemoryLimit>) -> RunLimits {
        GroupSpec {
            name: "g".into(),
            hard_concurrency_limit: hard,
            max_queued: 10,
            soft_concurrency_limit: None,
            soft_memory_limit: memory,
            cpu_limits: cpu,
            per_query_limits: PerQueryLimits::default(),
            queued_time_limit_ms: None,
            jmx_export: false,
            scheduling_policy: SchedulingPolicy::Fair,
            scheduling_weight: 1,
            consistency: Consistency::Linearizable,
            sub_groups: Vec::new(),
        }
        .run_limits()
    }

    #[test]
    fn the_cpu_penalty_is_linear_by_at_least_one_and_keeps_one_running() {
        // soft 1 min, hard 2 min, over 1 h.
        let s = spec(
            10,
            Some(CpuLimits::new(Some(60_000), 120_000, 3_600_000)),
            None,
        );
        assert_eq!(running_limit(&s, 0), 10);
        assert_eq!(running_limit(&s, 59_999), 10);
        // At the soft limit: penalty 0, but always at least one.
        assert_eq!(running_limit(&s, 60_000), 9);
        // Half way: floor(10 * 0.5) = 5.
        assert_eq!(running_limit(&s, 90_000), 5);
        // Nearly at hard: floor(10 * tiny) = 0, kept at one.
        assert_eq!(running_limit(&s, 119_999), 1);
        assert_eq!(running_limit(&s, 120_000), 0);
        // hard 2 min per hour: 33 ms of CPU regenerate per second.
        assert_eq!(s.cpu_limits.map(|c| c.quota_ms_per_s), Some(33));
        assert_eq!(regenerate_cpu(s.cpu_limits, 120_000, 3), 119_901);
        assert_eq!(regenerate_cpu(s.cpu_limits, 50, 3), 0);
    }

    #[test]
    fn a_group_over_its_soft_memory_limit_runs_nothing_new() {
        let s = spec(5, None, Some(MemoryLimit::Bytes(100)));
        let at = |memory_bytes| ResourceUsage {
            memory_bytes,
            cpu_ms: 0,
        };
        assert!(can_run_more(&s, 0, &at(100), 0), "equal still runs");
        assert!(!can_run_more(&s, 0, &at(101), 0));
        assert!(!can_run_more(&s, 5, &at(0), 0), "concurrency still counts");
        let pct = spec(5, None, Some(MemoryLimit::Percent(50.0)));
        assert!(can_run_more(&pct, 0, &at(500), 1_000));
        assert!(!can_run_more(&pct, 0, &at(501), 1_000));
    }

    #[test]
    fn without_cpu_limits_usage_never_stays() {
        let s = spec(5, None, None);
        assert_eq!(running_limit(&s, u64::MAX), 5);
        assert_eq!(regenerate_cpu(s.cpu_limits, 5_000, 0), 5_000);
        assert_eq!(regenerate_cpu(s.cpu_limits, 5_000, 1), 0);
        // A rate that rounds below 1 ms/s is 1, as upstream.
        assert_eq!(CpuLimits::new(None, 1, 3_600_000).quota_ms_per_s, 1);
    }
}
