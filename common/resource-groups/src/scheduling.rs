//! Which waiting query a group starts next: the order of a leaf's queue,
//! and the subgroup a parent chooses by its `schedulingPolicy`. These are
//! the rules the RMs' state machine applies to linearizable groups, written
//! as pure functions so that eventual-mode coordinators order their own
//! waiting queries by them. Deterministic: no randomness, no clock.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

use super::spec::SchedulingPolicy;

/// Where a waiting query stands in its leaf: the highest rank starts first.
/// Arrival numbers grow with time (lower: came earlier).
pub type Rank = (i32, Reverse<u64>);

/// A leaf's order: under `query_priority` the highest `query_priority`
/// first, then the earliest; otherwise first come, first served.
pub fn rank(policy: SchedulingPolicy, priority: i32, arrival: u64) -> Rank {
    match policy {
        SchedulingPolicy::QueryPriority => (priority, Reverse(arrival)),
        _ => (0, Reverse(arrival)),
    }
}

/// A subgroup with a query that could start, as its parent weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub id: &'a str,
    /// Its running queries (everyone's, its descendants' included).
    pub running: u32,
    /// `schedulingWeight` (a weight of 0 counts as 1).
    pub weight: u32,
    /// `softConcurrencyLimit`, else its hard limit.
    pub soft_limit: u32,
    /// Its best waiting query, by priority then arrival.
    pub best: (i32, u64),
}

/// What a parent remembers from one choice to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turns {
    /// `fair`: the subgroup chosen last (the next turn goes to the one after).
    pub last: Option<String>,
    /// `weighted`: each subgroup's credit (smooth weighted round-robin).
    pub credits: BTreeMap<String, i64>,
}

/// The candidate a parent of `policy` starts next (an index into
/// `candidates`), updating `turns` for that choice; `None` with no
/// candidates. Ties go to the lower id.
///
/// - `fair`: round-robin, the next id after the last chosen;
/// - `weighted_fair`: the lowest `running / weight`;
/// - `weighted`: those under their soft limit first, then smooth weighted
///   round-robin (every candidate gains its weight, the richest is chosen
///   and pays the sum): starts in proportion to the weights;
/// - `query_priority`: the best waiting query across the subgroups.
pub fn choose(
    policy: SchedulingPolicy,
    candidates: &[Candidate<'_>],
    turns: &mut Turns,
) -> Option<usize> {
    let by_id = |a: &(usize, &Candidate<'_>), b: &(usize, &Candidate<'_>)| a.1.id.cmp(b.1.id);
    let all = || candidates.iter().enumerate();
    let chosen = match policy {
        SchedulingPolicy::Fair => {
            let after = all()
                .filter(|(_, c)| turns.last.as_deref().is_none_or(|last| c.id > last))
                .min_by(by_id);
            let chosen = after.or_else(|| all().min_by(by_id))?.0;
            turns.last = Some(candidates[chosen].id.to_string());
            chosen
        }
        SchedulingPolicy::WeightedFair => {
            all()
                .min_by(|a, b| share_order(a.1, b.1).then_with(|| by_id(a, b)))?
                .0
        }
        SchedulingPolicy::Weighted => {
            let under_soft = all().any(|(_, c)| c.running < c.soft_limit);
            let pool: Vec<usize> = all()
                .filter(|(_, c)| !under_soft || c.running < c.soft_limit)
                .map(|(i, _)| i)
                .collect();
            let weight = |i: usize| i64::from(candidates[i].weight.max(1));
            let sum: i64 = pool.iter().map(|&i| weight(i)).sum();
            for &i in &pool {
                *turns
                    .credits
                    .entry(candidates[i].id.to_string())
                    .or_default() += weight(i);
            }
            let credit = |i: usize| turns.credits.get(candidates[i].id).copied();
            let chosen = pool.iter().copied().max_by(|&a, &b| {
                credit(a)
                    .cmp(&credit(b))
                    .then_with(|| candidates[b].id.cmp(candidates[a].id))
            })?;
            if let Some(c) = turns.credits.get_mut(candidates[chosen].id) {
                *c -= sum;
            }
            chosen
        }
        SchedulingPolicy::QueryPriority => {
            all()
                .max_by(|a, b| {
                    let (pa, aa) = a.1.best;
                    let (pb, ab) = b.1.best;
                    (pa, Reverse(aa))
                        .cmp(&(pb, Reverse(ab)))
                        .then_with(|| by_id(b, a))
                })?
                .0
        }
    };
    Some(chosen)
}

/// `a.running / a.weight` against `b.running / b.weight`, without division.
fn share_order(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let share =
        |x: &Candidate<'_>, y: &Candidate<'_>| u64::from(x.running) * u64::from(y.weight.max(1));
    share(a, b).cmp(&share(b, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, running: u32, weight: u32, best: (i32, u64)) -> Candidate<'_> {
        Candidate {
            id,
            running,
            weight,
            soft_limit: u32::MAX,
            best,
        }
    }

    /// The ids chosen in `n` choices among the same candidates.
    fn picks(policy: SchedulingPolicy, candidates: &[Candidate<'_>], n: usize) -> Vec<String> {
        let mut turns = Turns::default();
        (0..n)
            .filter_map(|_| choose(policy, candidates, &mut turns))
            .map(|i| candidates[i].id.to_string())
            .collect()
    }

    #[test]
    fn a_leaf_orders_by_priority_only_under_query_priority() {
        let qp = SchedulingPolicy::QueryPriority;
        assert!(rank(qp, 5, 9) > rank(qp, 1, 1));
        assert!(rank(qp, 5, 1) > rank(qp, 5, 2));
        let fair = SchedulingPolicy::Fair;
        assert!(rank(fair, 1, 1) > rank(fair, 5, 9));
    }

    #[test]
    fn fair_takes_turns_in_id_order() {
        let cs = [
            candidate("g.b", 0, 1, (0, 1)),
            candidate("g.a", 5, 1, (0, 2)),
        ];
        assert_eq!(
            picks(SchedulingPolicy::Fair, &cs, 4),
            ["g.a", "g.b", "g.a", "g.b"]
        );
    }

    #[test]
    fn weighted_starts_in_proportion_to_the_weights() {
        let cs = [
            candidate("g.a", 0, 1, (0, 1)),
            candidate("g.b", 0, 3, (0, 2)),
        ];
        let got = picks(SchedulingPolicy::Weighted, &cs, 8);
        assert_eq!(got.iter().filter(|id| *id == "g.a").count(), 2);
        assert_eq!(got.iter().filter(|id| *id == "g.b").count(), 6);
        // Smooth: a takes its turn within every four.
        assert_eq!(got[..4], ["g.b", "g.a", "g.b", "g.b"]);
    }

    #[test]
    fn weighted_serves_subgroups_under_their_soft_limit_first() {
        let mut cs = [
            candidate("g.a", 2, 1, (0, 1)),
            candidate("g.b", 2, 9, (0, 2)),
        ];
        cs[0].soft_limit = 3;
        cs[1].soft_limit = 2;
        assert_eq!(picks(SchedulingPolicy::Weighted, &cs, 2), ["g.a", "g.a"]);
    }

    #[test]
    fn weighted_fair_picks_the_lowest_share_of_running() {
        let cs = [
            candidate("g.a", 2, 1, (0, 1)),
            candidate("g.b", 4, 3, (0, 2)),
        ];
        assert_eq!(picks(SchedulingPolicy::WeightedFair, &cs, 1), ["g.b"]);
        let tie = [
            candidate("g.b", 1, 1, (0, 1)),
            candidate("g.a", 1, 1, (0, 2)),
        ];
        assert_eq!(picks(SchedulingPolicy::WeightedFair, &tie, 1), ["g.a"]);
    }

    #[test]
    fn query_priority_picks_the_best_query_across_subgroups() {
        let cs = [
            candidate("g.a", 0, 1, (1, 1)),
            candidate("g.b", 0, 1, (7, 5)),
        ];
        assert_eq!(picks(SchedulingPolicy::QueryPriority, &cs, 1), ["g.b"]);
        let same = [
            candidate("g.a", 0, 1, (7, 6)),
            candidate("g.b", 0, 1, (7, 5)),
        ];
        assert_eq!(picks(SchedulingPolicy::QueryPriority, &same, 1), ["g.b"]);
    }

    #[test]
    fn nothing_to_choose_from_chooses_nothing() {
        for policy in [
            SchedulingPolicy::Fair,
            SchedulingPolicy::WeightedFair,
            SchedulingPolicy::Weighted,
            SchedulingPolicy::QueryPriority,
        ] {
            assert_eq!(choose(policy, &[], &mut Turns::default()), None);
        }
    }
}
