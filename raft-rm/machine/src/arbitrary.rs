//! Generated logs for property tests: every [`Command`] variant, drawn from
//! small pools of query ids, groups, coordinators and sessions so that
//! commands meet each other (a release finds an admission, a renewal a
//! session, a batch mixes them). Built for this crate's tests, and for the
//! node's (feature `arbitrary`): snapshots and the codec are checked
//! against the same logs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use resource_groups::{
    Consistency, CpuLimits, GroupSpec, MemoryLimit, PerQueryLimits, SchedulingPolicy,
};

use crate::admission::{AdmissionSettings, GroupsConfig};
use crate::memory::{KillProposal, KillReason, KillerPolicy, MemoryFigures};
use crate::usage::{QueryUsage, UsageStamp};
use crate::{AcquireRequest, Command, Request};

const QUERIES: u64 = 12;
const COORDINATORS: [&str; 3] = ["c1", "c2", "c3"];
const GROUPS: [&str; 4] = ["g.a", "g.b", "g.c.x", "h"];

fn query_id() -> impl Strategy<Value = String> {
    (0..QUERIES).prop_map(|q| format!("q{q}"))
}

fn coordinator() -> impl Strategy<Value = String> {
    prop::sample::select(&COORDINATORS[..]).prop_map(str::to_string)
}

/// Session ids are entry indexes: small numbers hit real sessions.
fn session() -> impl Strategy<Value = u64> {
    0..40u64
}

/// A coordinator and, mostly, the session [`log`] registered for it at
/// its start (entry 2 + its number); else any session, often not its own.
fn coordinator_session() -> impl Strategy<Value = (String, u64)> {
    (0..COORDINATORS.len(), prop::bool::weighted(0.85), session()).prop_map(|(k, own, other)| {
        let session = if own { k as u64 + 2 } else { other };
        (COORDINATORS[k].to_string(), session)
    })
}

fn group(name: &str, limit: u32, queued: u32, subs: Vec<GroupSpec>) -> GroupSpec {
    GroupSpec {
        name: name.to_string(),
        hard_concurrency_limit: limit,
        max_queued: queued,
        soft_concurrency_limit: None,
        soft_memory_limit: None,
        cpu_limits: None,
        per_query_limits: Default::default(),
        queued_time_limit_ms: None,
        jmx_export: false,
        scheduling_policy: SchedulingPolicy::Fair,
        scheduling_weight: 1,
        consistency: Consistency::Linearizable,
        sub_groups: subs,
    }
}

/// A configuration over [`GROUPS`], with drawn limits and policies.
pub fn config() -> impl Strategy<Value = GroupsConfig> {
    (
        1..5u32,
        0..4u32,
        prop::sample::select(vec![
            SchedulingPolicy::Fair,
            SchedulingPolicy::WeightedFair,
            SchedulingPolicy::Weighted,
            SchedulingPolicy::QueryPriority,
        ]),
        prop::option::of(prop_oneof![
            (1..1u64 << 30).prop_map(MemoryLimit::Bytes),
            (1..100u32).prop_map(|p| MemoryLimit::Percent(f64::from(p))),
        ]),
        any::<bool>(),
        2_000..60_000u64,
        prop::option::of((1..50_000u64, 1..100_000u64)),
        prop::option::of(1..60_000u64),
    )
        .prop_map(
            |(limit, queued, policy, memory, eventual, lease, cpu, per_query_cpu)| {
                let mut g = group(
                    "g",
                    limit + 1,
                    queued + 2,
                    vec![
                        group("a", limit, queued, vec![]),
                        group("b", 1, queued, vec![]),
                        group("c", limit, queued, vec![group("x", limit, queued, vec![])]),
                    ],
                );
                g.scheduling_policy = policy;
                g.soft_memory_limit = memory;
                g.cpu_limits = cpu.map(|(hard_ms, period_ms)| {
                    CpuLimits::new(Some(hard_ms / 2), hard_ms, period_ms)
                });
                g.sub_groups[0].per_query_limits = PerQueryLimits {
                    cpu_time_ms: per_query_cpu,
                    ..Default::default()
                };
                let mut h = group("h", limit, queued, vec![]);
                if eventual {
                    h.consistency = Consistency::Eventual {
                        max_staleness_ms: 500,
                    };
                }
                GroupsConfig {
                    version: 0,
                    roots: vec![g, h],
                    source: format!("limit {limit}, queued {queued}"),
                    settings: AdmissionSettings {
                        session_lease_ms: lease,
                        queue_timeout_ms: lease * 3,
                        orphan_timeout_ms: lease * 2,
                    },
                }
            },
        )
}

fn kill() -> impl Strategy<Value = KillProposal> {
    (
        query_id(),
        prop_oneof![
            prop::sample::select(vec![
                KillerPolicy::TotalReservation,
                KillerPolicy::TotalReservationOnBlockedNodes
            ])
            .prop_map(|policy| KillReason::LowMemory { policy }),
            (1..1u64 << 30).prop_map(|limit_bytes| KillReason::ExceededGlobalLimit { limit_bytes }),
            (coordinator(), 1..1u64 << 30).prop_map(|(node, limit_bytes)| {
                KillReason::ExceededLocalLimit { node, limit_bytes }
            }),
        ],
        0..4u32,
        0..1u64 << 32,
        0..10_000u64,
    )
        .prop_map(|(query_id, reason, workers, bytes, ms)| KillProposal {
            query_id,
            reason,
            figures: MemoryFigures {
                workers,
                cluster_total_bytes: bytes * 2,
                cluster_reserved_bytes: bytes,
                blocked_nodes: (0..workers).map(|w| format!("w{w}")).collect(),
                query_bytes: bytes / 2,
                query_total_bytes: bytes / 2,
                out_of_memory_ms: ms,
            },
            leak_timeout_ms: ms + 1,
        })
}

/// One command that may travel in a batch.
pub fn batchable() -> impl Strategy<Value = Command> {
    prop_oneof![
        ((0..3u8), 0..8u64).prop_map(|(c, seq)| Command::Canary {
            client: format!("client-{c}"),
            seq
        }),
        session().prop_map(|session| Command::RenewSession { session }),
        (
            query_id(),
            prop::sample::select(&GROUPS[..]),
            coordinator_session(),
            -2..3i32,
            prop::option::of(0..5_000u64),
        )
            .prop_map(
                |(query_id, group, (coordinator, session), priority, max_queued_ms)| {
                    Command::Acquire(AcquireRequest {
                        query_id,
                        group: group.to_string(),
                        coordinator,
                        session,
                        priority,
                        payload: String::new(),
                        max_queued_ms,
                        template: Vec::new(),
                    })
                },
            ),
        query_id().prop_map(|query_id| Command::Release { query_id }),
        (query_id(), coordinator_session()).prop_map(|(query_id, (coordinator, session))| {
            Command::Adopt {
                query_id,
                coordinator,
                session,
            }
        }),
        (
            coordinator(),
            0..10u64,
            prop::collection::btree_map(
                prop::sample::select(&GROUPS[..]),
                (0..4u32, 0..4u32),
                0..3
            )
        )
            .prop_map(|(coordinator, seq, groups)| Command::Report {
                coordinator,
                seq,
                groups: groups
                    .into_iter()
                    .map(|(g, n)| (g.to_string(), n))
                    .collect::<BTreeMap<_, _>>(),
            }),
    ]
}

/// Any command, every variant of [`Command`] (batches included, with the
/// odd unbatchable command inside, which the machine must refuse).
pub fn command() -> impl Strategy<Value = Command> {
    let single = prop_oneof![
        6 => batchable(),
        2 => Just(Command::Tick),
        2 => coordinator().prop_map(|coordinator| Command::RegisterSession { coordinator }),
        1 => config().prop_map(Command::SetConfig),
        1 => kill().prop_map(Command::Kill),
        1 => (0..60u64).prop_map(|index| Command::SettleKill { index }),
        1 => usage(),
    ];
    prop_oneof![
        8 => single,
        1 => prop::collection::vec(batchable(), 1..6).prop_map(Command::Batch),
        1 => prop::collection::vec(command_unbatchable(), 1..3).prop_map(Command::Batch),
    ]
}

/// A batch may only hold batchable commands; these are the others.
fn command_unbatchable() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Tick),
        coordinator().prop_map(|coordinator| Command::RegisterSession { coordinator }),
        (0..60u64).prop_map(|index| Command::SettleKill { index }),
        usage(),
    ]
}

/// A leader's usage stamp: some queries, in any group, with any figures.
fn usage() -> impl Strategy<Value = Command> {
    (
        0..1u64 << 32,
        prop::collection::btree_map(
            query_id(),
            (
                prop::sample::select(&GROUPS[..]),
                0..1u64 << 31,
                0..100_000u64,
            ),
            0..4,
        ),
    )
        .prop_map(|(cluster_memory_bytes, queries)| {
            Command::Usage(UsageStamp {
                cluster_memory_bytes,
                queries: queries
                    .into_iter()
                    .map(|(id, (group, memory_bytes, cpu_ms))| {
                        (
                            id,
                            QueryUsage {
                                group: group.to_string(),
                                memory_bytes,
                                cpu_ms,
                            },
                        )
                    })
                    .collect(),
                leak_timeout_ms: 1_000,
            })
        })
}

/// A log: a configuration first (so admissions have groups) and a session
/// for each coordinator (entries 2, 3, 4), then commands with leader
/// times that mostly advance (and sometimes step back, as a new leader's
/// clock may).
pub fn log(max: usize) -> impl Strategy<Value = Vec<Request>> {
    (
        config(),
        prop::collection::vec((command(), 0..1_500u64, prop::bool::weighted(0.1)), 0..max),
    )
        .prop_map(|(config, commands)| {
            let mut t = 1_000u64;
            let mut out = vec![Request {
                leader_time_ms: t,
                command: Command::SetConfig(config),
            }];
            for c in COORDINATORS {
                out.push(Request {
                    leader_time_ms: t,
                    command: Command::RegisterSession {
                        coordinator: c.to_string(),
                    },
                });
            }
            for (command, step, back) in commands {
                t = if back {
                    t.saturating_sub(step)
                } else {
                    t + step
                };
                out.push(Request {
                    leader_time_ms: t,
                    command,
                });
            }
            out
        })
}

/// Extreme and odd values, as a faulty or hostile client (or a leader
/// with a broken clock) might put them in the log: the machine must
/// answer every one without panicking (an overflow there would stop every
/// replica at the same index) and keep its invariants.
pub mod hostile {
    use super::*;

    fn time() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(u64::MAX),
            Just(u64::MAX - 1),
            any::<u64>(),
            1_000..10_000u64,
        ]
    }

    fn big_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1u64),
            Just(u64::MAX),
            Just(u64::MAX / 2 + 1),
            any::<u64>(),
            0..40u64,
        ]
    }

    fn count() -> impl Strategy<Value = u32> {
        prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>(), 0..4u32]
    }

    /// Names a client may send: empty, dots in odd places, control
    /// characters, very long, and the ordinary ones.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".to_string()),
            Just("g..a".to_string()),
            Just("g.a.".to_string()),
            Just(".g".to_string()),
            Just("g.\t".to_string()),
            Just("x".repeat(300)),
            Just("g.a.too.deep".to_string()),
            prop::sample::select(&GROUPS[..]).prop_map(str::to_string),
            query_id(),
        ]
    }

    /// One tree (so limits drawn once hold for the whole log), with
    /// extreme limits, weights and settings.
    fn config(tree: (u32, u32, u32)) -> impl Strategy<Value = GroupsConfig> {
        (big_u64(), big_u64(), big_u64()).prop_map(move |(version, lease, timeout)| {
            let (limit, queued, weight) = tree;
            let mut g = group(
                "g",
                limit,
                queued,
                vec![
                    group("a", limit, queued, vec![]),
                    group("b", 1, queued, vec![]),
                    group("c", limit, queued, vec![group("x", limit, queued, vec![])]),
                ],
            );
            g.scheduling_policy = SchedulingPolicy::Weighted;
            for s in &mut g.sub_groups {
                s.scheduling_weight = weight;
            }
            let h = group("h", limit, queued, vec![]);
            GroupsConfig {
                version,
                roots: vec![g, h],
                source: String::new(),
                settings: AdmissionSettings {
                    session_lease_ms: lease,
                    queue_timeout_ms: timeout,
                    orphan_timeout_ms: timeout,
                },
            }
        })
    }

    // Boxed: the nested strategy types otherwise overflow a test
    // thread's stack in debug builds.
    fn command(tree: (u32, u32, u32)) -> BoxedStrategy<Command> {
        let batchable = prop_oneof![
            (name(), big_u64()).prop_map(|(client, seq)| Command::Canary { client, seq }),
            big_u64().prop_map(|session| Command::RenewSession { session }),
            (name(), name(), name(), big_u64(), any::<i32>(), big_u64()).prop_map(
                |(query_id, group, coordinator, session, priority, max_queued)| {
                    Command::Acquire(AcquireRequest {
                        query_id,
                        group,
                        coordinator,
                        session,
                        priority,
                        payload: String::new(),
                        max_queued_ms: Some(max_queued),
                        template: Vec::new(),
                    })
                }
            ),
            name().prop_map(|query_id| Command::Release { query_id }),
            (name(), name(), big_u64()).prop_map(|(query_id, coordinator, session)| {
                Command::Adopt {
                    query_id,
                    coordinator,
                    session,
                }
            }),
            (
                name(),
                big_u64(),
                prop::collection::btree_map(name(), (count(), count()), 0..4)
            )
                .prop_map(|(coordinator, seq, groups)| Command::Report {
                    coordinator,
                    seq,
                    groups,
                }),
        ]
        .boxed();
        let single = prop_oneof![
            4 => batchable.clone(),
            2 => Just(Command::Tick),
            2 => name().prop_map(|coordinator| Command::RegisterSession { coordinator }),
            1 => config(tree).prop_map(Command::SetConfig),
            1 => (name(), big_u64(), big_u64()).prop_map(|(query_id, bytes, leak_timeout_ms)| {
                Command::Kill(KillProposal {
                    query_id,
                    reason: KillReason::ExceededGlobalLimit { limit_bytes: bytes },
                    figures: MemoryFigures {
                        workers: u32::MAX,
                        cluster_total_bytes: bytes,
                        cluster_reserved_bytes: bytes,
                        blocked_nodes: Vec::new(),
                        query_bytes: bytes,
                        query_total_bytes: bytes,
                        out_of_memory_ms: bytes,
                    },
                    leak_timeout_ms,
                })
            }),
            1 => big_u64().prop_map(|index| Command::SettleKill { index }),
        ]
        .boxed();
        prop_oneof![
            8 => single,
            1 => prop::collection::vec(batchable, 1..6).prop_map(Command::Batch),
        ]
        .boxed()
    }

    /// A hostile log: a configuration with extreme limits and settings,
    /// then commands of every kind with extreme values, at leader times
    /// that jump anywhere (0, `u64::MAX`, backwards), at entry indexes
    /// that start anywhere up to the largest a fencing token can hold.
    pub fn log(max: usize) -> impl Strategy<Value = (u64, Vec<Request>)> {
        let tree = (
            prop_oneof![Just(u32::MAX), 0..4u32],
            prop_oneof![Just(u32::MAX), 0..4u32],
            prop_oneof![Just(u32::MAX), Just(0u32), 1..4u32],
        );
        tree.prop_flat_map(move |tree| {
            (
                prop_oneof![Just(1u64), 1..1u64 << 40],
                config(tree),
                prop::collection::vec((command(tree), time()), 0..max),
            )
        })
        .prop_map(|(first_index, config, commands)| {
            let mut out = vec![Request {
                leader_time_ms: 1_000,
                command: Command::SetConfig(config),
            }];
            out.extend(
                commands
                    .into_iter()
                    .map(|(command, leader_time_ms)| Request {
                        leader_time_ms,
                        command,
                    }),
            );
            (first_index, out)
        })
    }
}
