//! Which queued query starts next: a walk from a root to a leaf, each group
//! choosing among its subgroups by its scheduling policy. Deterministic (no
//! randomness, no clock), like everything in the state machine.

use std::cmp::Reverse;

use resource_groups::SchedulingPolicy;

use super::admission::{Admission, QueryStatus};

/// Direct children of `id` among the live groups, in id order.
fn children(adm: &Admission, id: &str) -> Vec<String> {
    let prefix = format!("{id}.");
    adm.groups
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| !k[prefix.len()..].contains('.'))
        .map(|(k, _)| k.clone())
        .collect()
}

fn has_room(adm: &Admission, id: &str) -> bool {
    adm.can_run_more(id)
}

/// The best live queued query of a leaf: highest priority first under
/// `query_priority`, else first come first served.
fn leaf_pick(adm: &Admission, id: &str) -> Option<(String, i32, u64)> {
    let g = adm.groups.get(id)?;
    let live = g
        .queue
        .iter()
        .filter(|q| adm.has_live_session(q))
        .filter_map(|q| {
            let r = adm.queries.get(q)?;
            let QueryStatus::Queued { enqueued_index, .. } = r.status else {
                return None;
            };
            Some((q.clone(), r.priority, enqueued_index))
        });
    if g.limits.policy == SchedulingPolicy::QueryPriority {
        live.max_by_key(|(_, p, i)| (*p, Reverse(*i)))
    } else {
        live.min_by_key(|(_, _, i)| *i)
    }
}

/// The query that would start under `id` next, if any can (ignoring `id`'s
/// own policy state; used to compare subtrees).
fn best_in(adm: &Admission, id: &str) -> Option<(String, i32, u64)> {
    if !has_room(adm, id) {
        return None;
    }
    let kids = children(adm, id);
    if kids.is_empty() {
        return leaf_pick(adm, id);
    }
    kids.iter()
        .filter_map(|c| best_in(adm, c))
        .max_by_key(|(_, p, i)| (*p, Reverse(*i)))
}

/// The next query to start under `root`, updating the policies' state
/// (round-robin cursors, weighted credits) for the choice it makes.
pub(super) fn next_runnable(adm: &mut Admission, root: &str) -> Option<String> {
    let mut id = root.to_string();
    loop {
        if !has_room(adm, &id) {
            return None;
        }
        let kids = children(adm, &id);
        if kids.is_empty() {
            return leaf_pick(adm, &id).map(|(q, _, _)| q);
        }
        let eligible: Vec<String> = kids
            .into_iter()
            .filter(|c| best_in(adm, c).is_some())
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let policy = adm.groups[&id].limits.policy;
        let chosen = match policy {
            SchedulingPolicy::Fair => {
                let cursor = adm.groups[&id].fair_cursor.clone();
                let next = eligible
                    .iter()
                    .find(|c| cursor.as_ref().is_none_or(|cur| *c > cur))
                    .unwrap_or(&eligible[0])
                    .clone();
                adm.groups.get_mut(&id).expect("exists").fair_cursor = Some(next.clone());
                next
            }
            SchedulingPolicy::WeightedFair => eligible
                .iter()
                .min_by(|a, b| {
                    let (ga, gb) = (&adm.groups[*a], &adm.groups[*b]);
                    // running/weight, compared without division.
                    (u64::from(ga.running) * u64::from(gb.limits.weight))
                        .cmp(&(u64::from(gb.running) * u64::from(ga.limits.weight)))
                        .then_with(|| a.cmp(b))
                })
                .expect("eligible is not empty")
                .clone(),
            SchedulingPolicy::Weighted => {
                // As upstream, subgroups below their soft concurrency limit
                // (by default their hard one) come first.
                let below_soft: Vec<String> = eligible
                    .iter()
                    .filter(|c| {
                        let g = &adm.groups[*c];
                        let soft = g
                            .limits
                            .soft_concurrency_limit
                            .unwrap_or(g.limits.hard_concurrency_limit);
                        g.running < soft
                    })
                    .cloned()
                    .collect();
                let eligible = if below_soft.is_empty() {
                    eligible
                } else {
                    below_soft
                };
                // Smooth weighted round-robin: every candidate gains its
                // weight; the richest is chosen and pays the total.
                let total: i64 = eligible
                    .iter()
                    .map(|c| i64::from(adm.groups[c].limits.weight))
                    .sum();
                for c in &eligible {
                    let g = adm.groups.get_mut(c).expect("exists");
                    g.wrr_credit += i64::from(g.limits.weight);
                }
                let next = eligible
                    .iter()
                    .max_by_key(|c| (adm.groups[*c].wrr_credit, Reverse((*c).clone())))
                    .expect("eligible is not empty")
                    .clone();
                adm.groups.get_mut(&next).expect("exists").wrr_credit -= total;
                next
            }
            SchedulingPolicy::QueryPriority => eligible
                .iter()
                .max_by_key(|c| best_in(adm, c).map(|(_, p, i)| (p, Reverse(i))))
                .expect("eligible is not empty")
                .clone(),
        };
        id = chosen;
    }
}
