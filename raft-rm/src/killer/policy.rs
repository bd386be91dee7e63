//! Choosing what to kill, from a picture of the workers' memory pools.
//! Pure functions, so each policy is tested on constructed pictures.

use std::collections::BTreeMap;

use common::wire::MemoryPool;

use crate::machine::memory::{KillReason, KillerPolicy};

/// One worker's pool, as its last heartbeat reported it.
#[derive(Clone, Debug)]
pub struct NodePool {
    pub node: String,
    pub pool: MemoryPool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    pub query_id: String,
    /// The reservation the policy counted.
    pub bytes: u64,
    /// The reservation over the whole cluster.
    pub total_bytes: u64,
}

/// Bytes per query over all nodes (saturating: never overflows).
pub fn totals(nodes: &[NodePool]) -> BTreeMap<&str, u64> {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for n in nodes {
        for (q, bytes) in &n.pool.queries {
            let sum = totals.entry(q.as_str()).or_default();
            *sum = sum.saturating_add(*bytes);
        }
    }
    totals
}

/// The query `policy` kills, skipping those `skip` names (already killed).
///
/// Ties go to the greatest query id: ids begin with their submission time,
/// so among equals the newest query, with the least work to lose, dies.
pub fn choose(
    policy: KillerPolicy,
    nodes: &[NodePool],
    skip: impl Fn(&str) -> bool,
) -> Option<Victim> {
    let totals = totals(nodes);
    let counted: BTreeMap<&str, u64> = match policy {
        KillerPolicy::TotalReservation => totals.clone(),
        KillerPolicy::TotalReservationOnBlockedNodes => {
            let mut on_blocked: BTreeMap<&str, u64> = BTreeMap::new();
            for n in nodes.iter().filter(|n| n.pool.is_blocked()) {
                for (q, bytes) in &n.pool.queries {
                    let sum = on_blocked.entry(q.as_str()).or_default();
                    *sum = sum.saturating_add(*bytes);
                }
            }
            on_blocked
        }
    };
    counted
        .into_iter()
        .filter(|(q, bytes)| *bytes > 0 && !skip(q))
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)))
        .map(|(q, bytes)| Victim {
            query_id: q.to_string(),
            bytes,
            total_bytes: totals.get(q).copied().unwrap_or(bytes),
        })
}

/// Queries over `query.max-memory` (over the cluster) or
/// `query.max-memory-per-node` (on one node), in query id order, with the
/// reservation that broke the limit. A query over both is reported once,
/// for the global limit.
pub fn over_limits(
    nodes: &[NodePool],
    max_memory: Option<u64>,
    max_memory_per_node: Option<u64>,
) -> Vec<(String, KillReason, u64)> {
    let mut out = Vec::new();
    for (q, total) in totals(nodes) {
        if let Some(limit) = max_memory.filter(|l| total > *l) {
            out.push((
                q.to_string(),
                KillReason::ExceededGlobalLimit { limit_bytes: limit },
                total,
            ));
            continue;
        }
        let Some(limit) = max_memory_per_node else {
            continue;
        };
        let worst = nodes
            .iter()
            .filter_map(|n| n.pool.queries.get(q).map(|b| (*b, &n.node)))
            .filter(|(b, _)| *b > limit)
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)));
        if let Some((bytes, node)) = worst {
            out.push((
                q.to_string(),
                KillReason::ExceededLocalLimit {
                    node: node.clone(),
                    limit_bytes: limit,
                },
                bytes,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of 100 bytes holding `queries`; blocked if full and `waiting`.
    fn node(name: &str, waiting: u32, queries: &[(&str, u64)]) -> NodePool {
        let queries: BTreeMap<String, u64> =
            queries.iter().map(|(q, b)| (q.to_string(), *b)).collect();
        NodePool {
            node: name.into(),
            pool: MemoryPool {
                total_bytes: 100,
                reserved_bytes: queries.values().sum(),
                blocked_tasks: waiting,
                queries,
            },
        }
    }

    fn pick(policy: KillerPolicy, nodes: &[NodePool]) -> Option<(String, u64)> {
        choose(policy, nodes, |_| false).map(|v| (v.query_id, v.bytes))
    }

    /// w1 is blocked with a (60) and b (40); w2 is not, with c (90) and b (5).
    fn picture() -> Vec<NodePool> {
        vec![
            node("w1", 2, &[("a", 60), ("b", 40)]),
            node("w2", 0, &[("c", 90), ("b", 5)]),
        ]
    }

    #[test]
    fn total_reservation_takes_the_largest_over_the_cluster() {
        assert_eq!(
            pick(KillerPolicy::TotalReservation, &picture()),
            Some(("c".into(), 90))
        );
    }

    #[test]
    fn on_blocked_nodes_counts_only_blocked_nodes() {
        assert_eq!(
            pick(KillerPolicy::TotalReservationOnBlockedNodes, &picture()),
            Some(("a".into(), 60))
        );
        // Nothing is blocked: nothing to kill under this policy.
        let calm = vec![node("w1", 0, &[("a", 100)])];
        assert_eq!(
            pick(KillerPolicy::TotalReservationOnBlockedNodes, &calm),
            None
        );
        // Full but nobody waiting is not blocked either.
        assert!(!calm[0].pool.is_blocked());
    }

    #[test]
    fn a_query_spread_over_blocked_nodes_is_summed() {
        let nodes = vec![
            node("w1", 1, &[("a", 50), ("b", 50)]),
            node("w2", 1, &[("a", 30), ("c", 70)]),
        ];
        assert_eq!(
            pick(KillerPolicy::TotalReservationOnBlockedNodes, &nodes),
            Some(("a".into(), 80))
        );
    }

    #[test]
    fn ties_go_to_the_newest_query_and_skipped_ones_are_passed_over() {
        let nodes = vec![node(
            "w1",
            1,
            &[
                ("1700000000000_00001_c1", 50),
                ("1700000000500_00002_c2", 50),
            ],
        )];
        for policy in [
            KillerPolicy::TotalReservation,
            KillerPolicy::TotalReservationOnBlockedNodes,
        ] {
            assert_eq!(
                pick(policy, &nodes),
                Some(("1700000000500_00002_c2".into(), 50))
            );
            let v = choose(policy, &nodes, |q| q == "1700000000500_00002_c2").unwrap();
            assert_eq!(v.query_id, "1700000000000_00001_c1");
        }
        assert_eq!(pick(KillerPolicy::TotalReservation, &[]), None);
    }

    #[test]
    fn limits_report_each_offender_once() {
        let nodes = vec![
            node("w1", 0, &[("a", 60), ("b", 30)]),
            node("w2", 0, &[("a", 50), ("b", 35), ("c", 10)]),
        ];
        let got = over_limits(&nodes, Some(100), Some(32));
        assert_eq!(
            got,
            vec![
                (
                    "a".to_string(),
                    KillReason::ExceededGlobalLimit { limit_bytes: 100 },
                    110
                ),
                (
                    "b".to_string(),
                    KillReason::ExceededLocalLimit {
                        node: "w2".into(),
                        limit_bytes: 32
                    },
                    35
                ),
            ]
        );
        assert!(over_limits(&nodes, None, None).is_empty());
    }

    /// Reservations summed over workers saturate instead of overflowing.
    #[test]
    fn totals_saturate() {
        let huge = |name| NodePool {
            node: name,
            pool: MemoryPool {
                total_bytes: u64::MAX,
                reserved_bytes: u64::MAX,
                blocked_tasks: 1,
                queries: BTreeMap::from([("a".to_string(), u64::MAX)]),
            },
        };
        let nodes = [huge("w1".into()), huge("w2".into())];
        assert_eq!(totals(&nodes)["a"], u64::MAX);
        for policy in [
            KillerPolicy::TotalReservation,
            KillerPolicy::TotalReservationOnBlockedNodes,
        ] {
            assert_eq!(pick(policy, &nodes), Some(("a".into(), u64::MAX)));
        }
        assert_eq!(over_limits(&nodes, Some(1), Some(1)).len(), 1);
    }
}
