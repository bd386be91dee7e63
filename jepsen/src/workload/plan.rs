//! The clients' choices, planned: each client's ops as a pure function of
//! the run's seed, the client's number and what the workload offers (no
//! I/O, no clock, no answers), so one seed always gives one plan. The
//! clients ([`super::SemaphoreClient`], [`super::QueryClient`]) execute
//! their plan step by step; what the cluster answers decides only whether
//! a step's later parts (a release, a back-off) are used, never the plan.

use std::ops::Range;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Workload, SEMAPHORE_GROUPS};

/// One acquire (and, once admitted, its release) of a semaphore client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreStep {
    /// One of [`SEMAPHORE_GROUPS`].
    pub group: &'static str,
    /// Which RM the acquire goes to (an index into the RMs).
    pub acquire_rm: usize,
    /// How long an admitted permit is held before its release.
    pub hold: Duration,
    /// Which RM the first release goes to; a retry goes to the next RM
    /// round from there.
    pub release_rm: usize,
}

/// What the queries of a workload look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMix {
    /// (user, the group its selector picks), one per query.
    pub users: Vec<(&'static str, &'static str)>,
    /// How long each simulated query runs, in ms.
    pub duration_ms: Range<u64>,
    /// How much memory each reserves, in bytes: one of these.
    pub memory_bytes: Vec<u64>,
    /// CPU time each uses (`simulate_cpu_ms`); `None`: the default (its
    /// duration).
    pub cpu_ms: Option<u64>,
    /// Real statements to choose among (the sql workload's TPC-H
    /// queries); 0: simulated queries.
    pub statements: usize,
}

impl QueryMix {
    /// The mix of a query workload: the queue and oom workloads' queries
    /// run longer; the oom workload's take 250 or 500 bytes, sizes that tile
    /// a pool exactly, so pools fill up and block (no memory free, tasks
    /// waiting).
    pub fn of(workload: Workload) -> QueryMix {
        if workload == Workload::Limits {
            // Queries long enough to be stamped while they run, using
            // 2 s of CPU each (see `super::LIMITS_*`).
            return QueryMix {
                users: vec![("mona", "mem"), ("carl", "cpu")],
                duration_ms: 3_000..8_000,
                memory_bytes: vec![super::LIMITS_QUERY_MEMORY_BYTES],
                cpu_ms: Some(super::LIMITS_QUERY_CPU_MS),
                statements: 0,
            };
        }
        if workload == Workload::Sql {
            // Real queries: their memory and time are their own.
            return QueryMix {
                users: vec![("sam", "sql")],
                duration_ms: 0..1,
                memory_bytes: vec![0],
                cpu_ms: None,
                statements: super::sql::queries().len(),
            };
        }
        let long = matches!(workload, Workload::Queue | Workload::Oom);
        let oom = workload == Workload::Oom;
        QueryMix {
            users: if oom {
                vec![("mallory", "m")]
            } else {
                vec![("alice", "q.a"), ("bob", "q.b")]
            },
            duration_ms: if long { 800..2000 } else { 100..600 },
            memory_bytes: if oom { vec![250, 500] } else { vec![1000] },
            cpu_ms: None,
            statements: 0,
        }
    }
}

/// One query of a query client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryStep {
    pub user: &'static str,
    pub group: &'static str,
    /// Which coordinator it is submitted to (an index).
    pub coordinator: usize,
    pub duration_ms: u64,
    pub memory_bytes: u64,
    /// The pause after a `QUERY_QUEUE_FULL` refusal, as a real client
    /// would (no resubmission storm).
    pub backoff: Duration,
    /// Which real statement (an index into the mix's), if any.
    pub statement: Option<usize>,
}

/// A semaphore client's steps against `rms` RMs: endless, and empty when
/// there is no RM to choose.
pub fn semaphore(seed: u64, client: u64, rms: usize) -> impl Iterator<Item = SemaphoreStep> {
    let mut rng = StdRng::seed_from_u64(seed ^ client);
    std::iter::from_fn(move || {
        (rms > 0).then(|| SemaphoreStep {
            group: SEMAPHORE_GROUPS[rng.gen_range(0..SEMAPHORE_GROUPS.len())].0,
            acquire_rm: rng.gen_range(0..rms),
            hold: Duration::from_millis(rng.gen_range(0..50)),
            release_rm: rng.gen_range(0..rms),
        })
    })
}

/// A query client's steps over `coordinators` coordinators: endless, and
/// empty when the mix or the coordinators leave nothing to choose.
pub fn queries(
    seed: u64,
    client: u64,
    mix: &QueryMix,
    coordinators: usize,
) -> impl Iterator<Item = QueryStep> {
    let mut rng = StdRng::seed_from_u64(seed ^ (client << 8));
    let mix = mix.clone();
    let possible = coordinators > 0
        && !mix.users.is_empty()
        && !mix.memory_bytes.is_empty()
        && !mix.duration_ms.is_empty();
    std::iter::from_fn(move || {
        possible.then(|| {
            let (user, group) = mix.users[rng.gen_range(0..mix.users.len())];
            QueryStep {
                user,
                group,
                coordinator: rng.gen_range(0..coordinators),
                duration_ms: rng.gen_range(mix.duration_ms.clone()),
                memory_bytes: mix.memory_bytes[rng.gen_range(0..mix.memory_bytes.len())],
                backoff: Duration::from_millis(rng.gen_range(100..300)),
                // Drawn only where there are statements: the simulated
                // workloads' plans stay what their seeds gave before.
                statement: (mix.statements > 0).then(|| rng.gen_range(0..mix.statements)),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_semaphore_plan() {
        let plan = |seed, client| semaphore(seed, client, 3).take(200).collect::<Vec<_>>();
        assert_eq!(plan(42, 0), plan(42, 0));
        assert_ne!(plan(42, 0), plan(43, 0), "another seed, another plan");
        assert_ne!(plan(42, 0), plan(42, 1), "another client, another plan");
        let a = plan(42, 0);
        assert!(a.iter().all(|s| s.acquire_rm < 3 && s.release_rm < 3));
        assert!(a.iter().all(|s| s.hold < Duration::from_millis(50)));
        // Every group is drawn.
        for (g, _) in SEMAPHORE_GROUPS {
            assert!(a.iter().any(|s| s.group == g), "{g} never drawn");
        }
    }

    #[test]
    fn one_seed_gives_one_query_plan() {
        for workload in [
            Workload::Queries,
            Workload::Queue,
            Workload::Oom,
            Workload::Sql,
        ] {
            let mix = QueryMix::of(workload);
            let plan = |seed, client| queries(seed, client, &mix, 2).take(200).collect::<Vec<_>>();
            assert_eq!(plan(7, 3), plan(7, 3));
            assert_ne!(plan(7, 3), plan(8, 3), "another seed, another plan");
            assert_ne!(plan(7, 3), plan(7, 4), "another client, another plan");
            for s in plan(7, 3) {
                assert!(mix.users.contains(&(s.user, s.group)));
                assert!(s.coordinator < 2);
                assert!(mix.duration_ms.contains(&s.duration_ms));
                assert!(mix.memory_bytes.contains(&s.memory_bytes));
                assert_eq!(s.statement.is_some(), workload == Workload::Sql);
                assert!(s.statement.is_none_or(|i| i < mix.statements));
            }
        }
    }

    #[test]
    fn nothing_to_choose_from_plans_nothing() {
        assert_eq!(semaphore(1, 0, 0).next(), None);
        let mix = QueryMix::of(Workload::Queries);
        assert_eq!(queries(1, 0, &mix, 0).next(), None);
        let empty = QueryMix {
            users: Vec::new(),
            ..mix
        };
        assert_eq!(queries(1, 0, &empty, 2).next(), None);
    }
}
