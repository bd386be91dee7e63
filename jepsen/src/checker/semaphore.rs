//! Linearizability of the admission semaphore, per group.
//!
//! The model: a group with limit `L` holds a set of query ids. `acquire(q)`
//! answers `admitted` if `q` holds a permit or fewer than `L` do (and then
//! `q` holds one), else `rejected` (`QUERY_QUEUE_FULL`; the workload's
//! groups queue nothing); but once `q` was released it is finished, and an
//! acquire of it changes nothing (the RMs answer `QUERY_ALREADY_FINISHED`).
//! `release(q)` answers `released` if `q` held a permit (and frees it),
//! else `unknown`; either way `q` is finished.
//!
//! The search is Wing and Gong's, with Lowe's memoisation of (linearized
//! set, model state): at each step, any pending op invoked before the
//! earliest completion among the pending completed ops may take effect
//! next. Ops whose outcome is unknown (`info`, or never completed) may take
//! effect at any point after their invocation with either result, or never.
//! Groups are independent, so each is checked on its own. A search that
//! exceeds its budget answers `unknown`, never `true`.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{json, Value};

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Acquire,
    Release,
}

/// What the client saw; `None` for an unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Admitted,
    Rejected,
    Released,
    NotHeld,
}

#[derive(Debug, Clone)]
pub struct SemOp {
    pub call: Call,
    pub query: String,
    pub invoke_ns: u64,
    /// `None`: unknown outcome, may take effect any time after invoke.
    pub complete_ns: Option<u64>,
    pub seen: Option<Seen>,
    /// Index of the invocation in the history (for reports).
    pub history_index: u64,
}

impl SemOp {
    fn end(&self) -> u64 {
        self.complete_ns.unwrap_or(u64::MAX)
    }
}

/// The semaphore ops of one group, from a history. Definite failures (the
/// op surely had no effect: `fail`, or a rejection other than a full group)
/// are left out.
pub fn ops_by_group(history: &[Op]) -> HashMap<String, Vec<SemOp>> {
    let mut out: HashMap<String, Vec<SemOp>> = HashMap::new();
    for p in pairs(history) {
        let call = match p.invoke.f.as_str() {
            "acquire" => Call::Acquire,
            "release" => Call::Release,
            _ => continue,
        };
        let (Some(group), Some(query)) = (
            p.invoke.value["group"].as_str(),
            p.invoke.value["query_id"].as_str(),
        ) else {
            continue;
        };
        let (complete_ns, seen) = match (p.outcome(), p.complete) {
            (OpType::Fail, _) => continue,
            (OpType::Ok, Some(c)) => {
                let v = &c.value;
                let seen = match (&call, v["status"].as_str(), v["outcome"].as_str()) {
                    (Call::Acquire, Some("admitted"), _) => Seen::Admitted,
                    (Call::Acquire, Some("rejected"), _) if v["reason"] == "QUERY_QUEUE_FULL" => {
                        Seen::Rejected
                    }
                    // Any other refusal changed nothing.
                    (Call::Acquire, _, _) => continue,
                    (Call::Release, _, Some("released")) => Seen::Released,
                    (Call::Release, _, _) => Seen::NotHeld,
                };
                (Some(c.time_ns), Some(seen))
            }
            _ => (None, None),
        };
        out.entry(group.to_string()).or_default().push(SemOp {
            call,
            query: query.to_string(),
            invoke_ns: p.invoke.time_ns,
            complete_ns,
            seen,
            history_index: p.invoke.index,
        });
    }
    out
}

/// The outcome of one group's search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// No order explains the history; the ops linearized on the deepest
    /// path, and the ops that could go next there and did not fit.
    NotLinearizable {
        deepest: usize,
        stuck_on: Vec<u64>,
    },
    /// The budget (explored states) ran out.
    Unknown,
}

struct Search<'a> {
    ops: &'a [SemOp],
    limit: usize,
    query_ix: HashMap<&'a str, u32>,
    /// Random 128-bit keys per op: the linearized set's hash is the XOR of
    /// its members' keys (Zobrist hashing), kept as ops come and go.
    keys: Vec<(u64, u64)>,
    hash: (u64, u64),
    /// Pending ops with a known outcome: by completion (the bound) and by
    /// invocation (the candidates).
    known_by_end: BTreeSet<(u64, usize)>,
    known_by_invoke: BTreeSet<(u64, usize)>,
    /// Pending ops of unknown outcome, by invocation.
    unknown_by_invoke: BTreeSet<(u64, usize)>,
    /// Visited (linearized set, holders) pairs, both as hashes: 24 bytes
    /// a state, so a budget of millions fits in memory.
    seen_states: HashSet<(u64, u64, u64)>,
    /// Random keys per query id, for the holders' hash.
    query_keys: Vec<u64>,
    /// Query id -> linearized releases of it (it is finished if > 0). A
    /// function of the linearized set, so the state key need not hold it.
    released: Vec<u32>,
    budget: usize,
    explored: usize,
    deepest: usize,
    stuck_on: Vec<u64>,
}

impl Search<'_> {
    /// Applies `op` to `holders`: the resulting states (none if the result
    /// contradicts what the client saw).
    fn step(&self, op: &SemOp, holders: &BTreeSet<u32>) -> Vec<BTreeSet<u32>> {
        let q = self.query_ix[op.query.as_str()];
        let mut next = holders.clone();
        let result = match op.call {
            // Finished: refused with no effect. A known outcome
            // (`admitted`, or `rejected` for a full group) contradicts it; an
            // unknown one need not be linearized.
            Call::Acquire if self.released[q as usize] > 0 => return Vec::new(),
            Call::Acquire => {
                if holders.contains(&q) || holders.len() < self.limit {
                    next.insert(q);
                    Seen::Admitted
                } else {
                    Seen::Rejected
                }
            }
            Call::Release => {
                if next.remove(&q) {
                    Seen::Released
                } else {
                    Seen::NotHeld
                }
            }
        };
        match op.seen {
            Some(s) if s != result => Vec::new(),
            // An op of unknown outcome that changes nothing need not be
            // linearized at all: leaving it out is the same history.
            None if next == *holders => Vec::new(),
            _ => vec![next],
        }
    }

    fn take(&mut self, i: usize) {
        let o = &self.ops[i];
        if o.call == Call::Release {
            self.released[self.query_ix[o.query.as_str()] as usize] += 1;
        }
        if o.seen.is_some() {
            self.known_by_end.remove(&(o.end(), i));
            self.known_by_invoke.remove(&(o.invoke_ns, i));
        } else {
            self.unknown_by_invoke.remove(&(o.invoke_ns, i));
        }
        self.hash.0 ^= self.keys[i].0;
        self.hash.1 ^= self.keys[i].1;
    }

    fn put_back(&mut self, i: usize) {
        let o = &self.ops[i];
        if o.call == Call::Release {
            self.released[self.query_ix[o.query.as_str()] as usize] -= 1;
        }
        if o.seen.is_some() {
            self.known_by_end.insert((o.end(), i));
            self.known_by_invoke.insert((o.invoke_ns, i));
        } else {
            self.unknown_by_invoke.insert((o.invoke_ns, i));
        }
        self.hash.0 ^= self.keys[i].0;
        self.hash.1 ^= self.keys[i].1;
    }

    /// Depth-first search; `Some(true)` found, `Some(false)` exhausted,
    /// `None` out of budget.
    fn search(&mut self, holders: &BTreeSet<u32>, depth: usize) -> Option<bool> {
        // Done when every op with a known outcome is linearized.
        let Some(&(bound, _)) = self.known_by_end.first() else {
            return Some(true);
        };
        self.explored += 1;
        if self.explored > self.budget {
            return None;
        }
        let holders_hash = holders
            .iter()
            .fold(0u64, |h, q| h ^ self.query_keys[*q as usize]);
        if !self
            .seen_states
            .insert((self.hash.0, self.hash.1, holders_hash))
        {
            return Some(false);
        }
        // Ops invoked before the earliest pending completion may go next:
        // known outcomes first (unknown ones may wait).
        let candidates: Vec<usize> = self
            .known_by_invoke
            .iter()
            .take_while(|(t, _)| *t < bound)
            .chain(
                self.unknown_by_invoke
                    .iter()
                    .take_while(|(t, _)| *t < bound),
            )
            .map(|(_, i)| *i)
            .collect();
        for &i in &candidates {
            for next in self.step(&self.ops[i], holders) {
                self.take(i);
                let r = self.search(&next, depth + 1);
                self.put_back(i);
                match r {
                    Some(true) => return Some(true),
                    None => return None,
                    Some(false) => {}
                }
            }
        }
        if depth >= self.deepest {
            self.deepest = depth;
            self.stuck_on = candidates
                .iter()
                .filter(|i| self.ops[**i].seen.is_some())
                .map(|i| self.ops[*i].history_index)
                .collect();
        }
        Some(false)
    }
}

/// Checks one group's ops against a semaphore of `limit` permits.
pub fn check_group(ops: &[SemOp], limit: usize, budget: usize) -> (Outcome, usize) {
    use rand::{Rng, SeedableRng};
    let mut ops = ops.to_vec();
    ops.sort_by_key(|o| o.invoke_ns);
    let query_ix = ops
        .iter()
        .map(|o| o.query.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, q)| (q, i as u32))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let keys = ops.iter().map(|_| (rng.gen(), rng.gen())).collect();
    let query_keys = (0..ops.len()).map(|_| rng.gen()).collect();
    let mut s = Search {
        ops: &ops,
        limit,
        query_ix,
        keys,
        hash: (0, 0),
        known_by_end: BTreeSet::new(),
        known_by_invoke: BTreeSet::new(),
        unknown_by_invoke: BTreeSet::new(),
        seen_states: HashSet::new(),
        query_keys,
        released: vec![0; ops.len()],
        budget,
        explored: 0,
        deepest: 0,
        stuck_on: Vec::new(),
    };
    for (i, o) in ops.iter().enumerate() {
        if o.seen.is_some() {
            s.known_by_end.insert((o.end(), i));
            s.known_by_invoke.insert((o.invoke_ns, i));
        } else {
            s.unknown_by_invoke.insert((o.invoke_ns, i));
        }
    }
    let outcome = match s.search(&BTreeSet::new(), 0) {
        Some(true) => Outcome::Linearizable,
        Some(false) => Outcome::NotLinearizable {
            deepest: s.deepest,
            stuck_on: s.stuck_on.clone(),
        },
        None => Outcome::Unknown,
    };
    (outcome, s.explored)
}

/// Every group of the history, each against its limit (`limits`: group ->
/// hard concurrency limit). Runs on a thread with a large stack: the search
/// recurses once per op.
pub fn check(history: &[Op], limits: &HashMap<String, usize>, budget: usize) -> Verdict {
    let by_group = ops_by_group(history);
    let mut groups = serde_json::Map::new();
    let mut validity = Vec::new();
    let mut names: Vec<&String> = by_group.keys().collect();
    names.sort();
    for g in names {
        let ops = &by_group[g];
        let Some(limit) = limits.get(g) else {
            groups.insert(
                g.clone(),
                json!({"valid": "unknown", "error": "no limit known for this group"}),
            );
            validity.push(Validity::Unknown);
            continue;
        };
        let (ops_v, limit) = (ops.clone(), *limit);
        let result = std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn(move || check_group(&ops_v, limit, budget))
            .ok()
            .and_then(|h| h.join().ok());
        let (entry, v) = match result {
            Some((Outcome::Linearizable, explored)) => (
                json!({"valid": true, "ops": ops.len(), "explored": explored}),
                Validity::Valid,
            ),
            Some((Outcome::NotLinearizable { deepest, stuck_on }, explored)) => (
                json!({"valid": false, "ops": ops.len(), "explored": explored,
                       "linearized_before_stuck": deepest,
                       "stuck_on_history_indices": stuck_on}),
                Validity::Invalid,
            ),
            Some((Outcome::Unknown, explored)) => (
                json!({"valid": "unknown", "ops": ops.len(), "explored": explored,
                       "error": format!("search budget of {budget} states exhausted")}),
                Validity::Unknown,
            ),
            None => (
                json!({"valid": "unknown", "error": "the search thread failed"}),
                Validity::Unknown,
            ),
        };
        groups.insert(g.clone(), entry);
        validity.push(v);
    }
    let valid = Validity::all(validity);
    Verdict::new(
        valid,
        json!({"model": "semaphore (permits per group)", "groups": Value::Object(groups)}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, q: &str, from: u64, to: Option<u64>, seen: Option<Seen>) -> SemOp {
        SemOp {
            call,
            query: q.into(),
            invoke_ns: from,
            complete_ns: to,
            seen,
            history_index: from,
        }
    }

    fn acq(q: &str, from: u64, to: u64, seen: Seen) -> SemOp {
        op(Call::Acquire, q, from, Some(to), Some(seen))
    }

    fn rel(q: &str, from: u64, to: u64) -> SemOp {
        op(Call::Release, q, from, Some(to), Some(Seen::Released))
    }

    fn verdict(ops: &[SemOp], limit: usize) -> Outcome {
        check_group(ops, limit, 1_000_000).0
    }

    #[test]
    fn sequential_within_the_limit_is_linearizable() {
        let ops = [
            acq("a", 0, 1, Seen::Admitted),
            acq("b", 2, 3, Seen::Rejected),
            rel("a", 4, 5),
            acq("b2", 6, 7, Seen::Admitted),
        ];
        assert_eq!(verdict(&ops, 1), Outcome::Linearizable);
    }

    #[test]
    fn two_holders_at_once_over_a_limit_of_one_is_not() {
        // a and b both admitted, neither released, limit 1.
        let ops = [
            acq("a", 0, 1, Seen::Admitted),
            acq("b", 2, 3, Seen::Admitted),
        ];
        assert!(matches!(verdict(&ops, 1), Outcome::NotLinearizable { .. }));
    }

    #[test]
    fn a_rejection_while_a_permit_is_surely_free_is_not() {
        let ops = [
            acq("a", 0, 1, Seen::Admitted),
            rel("a", 2, 3),
            acq("b", 4, 5, Seen::Rejected),
        ];
        assert!(matches!(verdict(&ops, 1), Outcome::NotLinearizable { .. }));
    }

    #[test]
    fn concurrent_ops_may_take_effect_in_either_order() {
        // b's acquire overlaps a's release: b may go after it.
        let ops = [
            acq("a", 0, 1, Seen::Admitted),
            rel("a", 2, 10),
            acq("b", 3, 9, Seen::Admitted),
        ];
        assert_eq!(verdict(&ops, 1), Outcome::Linearizable);
        // A stale read: the release finished before b started, yet b was rejected.
        let stale = [
            acq("a", 0, 1, Seen::Admitted),
            rel("a", 2, 3),
            acq("b", 4, 9, Seen::Rejected),
        ];
        assert!(matches!(
            verdict(&stale, 1),
            Outcome::NotLinearizable { .. }
        ));
    }

    #[test]
    fn an_unknown_acquire_may_or_may_not_have_taken_effect() {
        // x's acquire timed out; b is rejected later: x must have taken the permit.
        let took = [
            op(Call::Acquire, "x", 0, None, None),
            acq("b", 5, 6, Seen::Rejected),
        ];
        assert_eq!(verdict(&took, 1), Outcome::Linearizable);
        // ... or it never happened, and b gets the permit.
        let never = [
            op(Call::Acquire, "x", 0, None, None),
            acq("b", 5, 6, Seen::Admitted),
        ];
        assert_eq!(verdict(&never, 1), Outcome::Linearizable);
        // It cannot take effect before it was invoked.
        let early = [
            acq("b", 0, 1, Seen::Rejected),
            op(Call::Acquire, "x", 5, None, None),
        ];
        assert!(matches!(
            verdict(&early, 1),
            Outcome::NotLinearizable { .. }
        ));
    }

    #[test]
    fn an_acquire_cannot_take_effect_after_its_release() {
        // x's acquire timed out; its client released x (nothing held).
        // A late x cannot then fill the group and explain b's rejection.
        let late = [
            op(Call::Acquire, "x", 0, None, None),
            op(Call::Release, "x", 1, Some(2), Some(Seen::NotHeld)),
            acq("b", 5, 6, Seen::Rejected),
        ];
        assert!(matches!(verdict(&late, 1), Outcome::NotLinearizable { .. }));
        let fine = [
            op(Call::Acquire, "x", 0, None, None),
            op(Call::Release, "x", 1, Some(2), Some(Seen::NotHeld)),
            acq("b", 5, 6, Seen::Admitted),
        ];
        assert_eq!(verdict(&fine, 1), Outcome::Linearizable);
    }

    #[test]
    fn a_release_of_a_permit_never_held_is_not() {
        let ops = [rel("ghost", 0, 1)];
        assert!(matches!(verdict(&ops, 2), Outcome::NotLinearizable { .. }));
    }

    #[test]
    fn the_budget_gives_unknown_never_true() {
        // 20 acquires of unknown outcome, then 21 sure admissions in a
        // group of 20: impossible, but proving it means trying the subsets
        // of the unknown ones.
        let mut ops = Vec::new();
        for i in 0..20 {
            ops.push(op(Call::Acquire, &format!("u{i}"), i, None, None));
        }
        for i in 0..21 {
            ops.push(acq(
                &format!("k{i}"),
                100 + 2 * i,
                101 + 2 * i,
                Seen::Admitted,
            ));
        }
        assert_eq!(check_group(&ops, 20, 500).0, Outcome::Unknown);
        // The same shape, small enough to search to the end, is refuted.
        let mut small = Vec::new();
        for i in 0..6 {
            small.push(op(Call::Acquire, &format!("u{i}"), i, None, None));
        }
        for i in 0..7 {
            small.push(acq(
                &format!("k{i}"),
                100 + 2 * i,
                101 + 2 * i,
                Seen::Admitted,
            ));
        }
        assert!(matches!(
            check_group(&small, 6, 1_000_000).0,
            Outcome::NotLinearizable { .. }
        ));
    }

    #[test]
    fn the_checker_reads_histories_and_partitions_by_group() {
        use crate::history::{OpType, Process, Recorder};
        let h = Recorder::new(None).unwrap();
        let rec = |p, t, f: &str, v| {
            h.record(Process::Client(p), t, f, v, None);
        };
        // Group g (limit 1): a then b, both admitted, overlapping nothing.
        rec(
            0,
            OpType::Invoke,
            "acquire",
            json!({"group": "g", "query_id": "a"}),
        );
        rec(
            0,
            OpType::Ok,
            "acquire",
            json!({"group": "g", "query_id": "a", "status": "admitted"}),
        );
        rec(
            1,
            OpType::Invoke,
            "acquire",
            json!({"group": "g", "query_id": "b"}),
        );
        rec(
            1,
            OpType::Ok,
            "acquire",
            json!({"group": "g", "query_id": "b", "status": "admitted"}),
        );
        // Group h (limit 1): fine.
        rec(
            2,
            OpType::Invoke,
            "acquire",
            json!({"group": "h", "query_id": "c"}),
        );
        rec(
            2,
            OpType::Ok,
            "acquire",
            json!({"group": "h", "query_id": "c", "status": "admitted"}),
        );
        let limits = HashMap::from([("g".to_string(), 1), ("h".to_string(), 1)]);
        let v = check(&h.ops(), &limits, 100_000);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["groups"]["g"]["valid"], false);
        assert_eq!(v.details["groups"]["h"]["valid"], true);
        let two = HashMap::from([("g".to_string(), 2), ("h".to_string(), 1)]);
        assert_eq!(check(&h.ops(), &two, 100_000).valid, Validity::Valid);
    }
}
