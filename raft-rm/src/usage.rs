//! The leader's usage stamper: every [`Timings::usage`], the running
//! queries' memory and CPU as this RM's workers' heartbeats give them,
//! proposed into the log (`Command::Usage`), where the state machine
//! charges them to resource groups and enforces `softMemoryLimit`, the CPU
//! limits and per-query limits on them (`rm_machine::usage`).
//!
//! Soft state goes in, replicated decisions come out: the heartbeats are
//! read here, on the leader only; replicas and replays see only stamps.
//!
//! [`Timings::usage`]: crate::config::Timings::usage

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::ClusterMemory;
use tokio::sync::watch;

use crate::core::Core;
use crate::machine::usage::{QueryUsage, UsageStamp};
use crate::machine::Command;
use crate::soft::SoftState;

/// An RM that just started has heard from few workers: a stamp from it
/// would show their queries' memory gone. It stamps only once it has been
/// up for this long (three heartbeat intervals of a default worker).
pub const WARM_UP: Duration = Duration::from_secs(3);

/// The stamp of a memory view: per query, memory and CPU summed over the
/// workers that run it. Queries a worker reports memory for but no group
/// (an older worker) are left out: they cannot be charged to a group.
pub fn stamp_of(view: &ClusterMemory, leak_timeout_ms: u64) -> UsageStamp {
    let mut queries: BTreeMap<String, QueryUsage> = BTreeMap::new();
    for node in &view.nodes {
        let hb = &node.heartbeat;
        for (id, r) in &hb.queries {
            let q = queries.entry(id.clone()).or_insert_with(|| QueryUsage {
                group: r.group.clone(),
                memory_bytes: 0,
                cpu_ms: 0,
            });
            q.cpu_ms = q.cpu_ms.saturating_add(r.cpu_ms);
            let memory = hb.memory.queries.get(id).copied().unwrap_or(0);
            q.memory_bytes = q.memory_bytes.saturating_add(memory);
        }
    }
    UsageStamp {
        cluster_memory_bytes: view.total_bytes,
        queries,
        leak_timeout_ms,
    }
}

/// Runs on every RM until `stop`; only a leader (past its warm-up)
/// proposes. An idle cluster writes nothing: a stamp with no queries is
/// proposed only when the log still shows some memory in use.
pub async fn run(
    core: Core,
    soft: Arc<SoftState>,
    leak_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut interval = tokio::time::interval(core.timings().usage);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = interval.tick() => {}
        }
        if started.elapsed() < WARM_UP || !core.may_propose() {
            continue;
        }
        // The planted bug for `jepsen selftest`: usage never reaches the
        // log, so memory and CPU limits never bind.
        if common::failpoints::planted("bug::usage-unstamped") {
            continue;
        }
        let stamp = stamp_of(&soft.memory(), leak_timeout.as_millis() as u64);
        if stamp.queries.is_empty() && !memory_in_use(&core) {
            continue;
        }
        match core.propose(Command::Usage(stamp)).await {
            Ok(_) => core.metrics().usage_stamped(),
            Err(e) => tracing::debug!(error = %e, "usage stamp not committed"),
        }
    }
}

fn memory_in_use(core: &Core) -> bool {
    let applied = core.applied().read();
    applied
        .state
        .admission
        .usage
        .queries
        .values()
        .any(|q| q.memory_bytes > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::WorkerMemory;
    use common::wire::{MemoryPool, QueryResources, WorkerHeartbeat};

    fn node(id: &str, queries: &[(&str, &str, u64, u64)]) -> WorkerMemory {
        WorkerMemory {
            age_ms: 0,
            heartbeat: Arc::new(WorkerHeartbeat {
                node_id: id.into(),
                memory: MemoryPool {
                    total_bytes: 1_000,
                    reserved_bytes: 0,
                    blocked_tasks: 0,
                    queries: queries
                        .iter()
                        .map(|(q, _, m, _)| (q.to_string(), *m))
                        .collect(),
                },
                cpu_cores: 0.0,
                running_tasks: 0,
                ttl_ms: 1_000,
                queries: queries
                    .iter()
                    .map(|(q, g, _, cpu_ms)| {
                        (
                            q.to_string(),
                            QueryResources {
                                group: g.to_string(),
                                cpu_ms: *cpu_ms,
                            },
                        )
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn a_stamp_sums_each_query_over_its_workers() {
        let view = ClusterMemory {
            workers: 2,
            total_bytes: 2_000,
            reserved_bytes: 0,
            free_bytes: 2_000,
            blocked_workers: 0,
            queries: BTreeMap::new(),
            nodes: vec![
                node("w1", &[("q1", "g.a", 100, 10), ("q2", "g.b", 5, 1)]),
                node("w2", &[("q1", "g.a", 50, 20)]),
            ],
        };
        let s = stamp_of(&view, 7);
        assert_eq!(s.cluster_memory_bytes, 2_000);
        assert_eq!(s.leak_timeout_ms, 7);
        assert_eq!(
            s.queries["q1"],
            QueryUsage {
                group: "g.a".into(),
                memory_bytes: 150,
                cpu_ms: 30
            }
        );
        assert_eq!(s.queries["q2"].memory_bytes, 5);
    }
}
