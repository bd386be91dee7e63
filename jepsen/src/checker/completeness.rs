//! No lost and no duplicated queries. Every query a client submitted ends,
//! as the client saw it: `FINISHED`, or `FAILED` with Trino's error name.
//! An indeterminate end (`info`: the coordinator died under the client)
//! must say why. No two clients finish the same query id. Queries that were
//! ever seen queued must end the same way: run, or fail with a reason.
//!
//! With `every_query_answered` (the `queue` workload, whose clients move
//! between coordinators as behind a load balancer), an indeterminate end is
//! a violation too: the system must say how every query it acknowledged
//! ended. A submission that got no answer at all (its coordinator died with
//! the request in flight: `unanswered_submission`) was never acknowledged,
//! so it stays indeterminate, and is counted apart.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

pub fn check(history: &[Op], every_query_answered: bool) -> Verdict {
    let mut submitted = 0;
    let mut finished = 0;
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    let mut indeterminate = 0;
    let mut unanswered_submissions = 0u64;
    let mut lost = Vec::new();
    let mut unexplained = Vec::new();
    let mut ids: BTreeMap<String, u64> = BTreeMap::new();
    let mut queued = (0, 0);
    for p in pairs(history).into_iter().filter(|p| p.invoke.f == "query") {
        submitted += 1;
        let Some(c) = p.complete else {
            lost.push(p.invoke.index);
            continue;
        };
        let was_queued = c.value["was_queued"] == true;
        if was_queued {
            queued.0 += 1;
        }
        match p.outcome() {
            OpType::Ok => {
                finished += 1;
                if was_queued {
                    queued.1 += 1;
                }
            }
            OpType::Fail => match c.value["error_name"].as_str() {
                Some(name) if !name.is_empty() => {
                    *failed.entry(name.to_string()).or_default() += 1;
                    if was_queued {
                        queued.1 += 1;
                    }
                }
                _ => unexplained.push(c.index),
            },
            _ => {
                indeterminate += 1;
                let unanswered = c.value["unanswered_submission"] == true;
                unanswered_submissions += u64::from(unanswered);
                let silent = c.error.as_deref().is_none_or(str::is_empty);
                if silent || (every_query_answered && !unanswered) {
                    unexplained.push(c.index);
                }
            }
        }
        if let Some(id) = c.value["query_id"].as_str().filter(|s| !s.is_empty()) {
            *ids.entry(id.to_string()).or_default() += 1;
        }
    }
    let duplicated: Vec<&String> = ids
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let valid = if submitted == 0 {
        Validity::Unknown
    } else if lost.is_empty() && duplicated.is_empty() && unexplained.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    Verdict::new(
        valid,
        json!({"submitted": submitted, "finished": finished, "failed": failed,
               "indeterminate": indeterminate, "unanswered_submissions": unanswered_submissions,
               "lost": lost, "duplicated": duplicated,
               "unexplained": unexplained, "were_queued": queued.0,
               "were_queued_and_ended_with_a_reason": queued.1}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Process, Recorder};

    fn run(script: &[(u64, OpType, serde_json::Value, Option<&str>)]) -> Verdict {
        let h = Recorder::new(None).unwrap();
        for (p, t, v, e) in script {
            h.record(
                Process::Client(*p),
                *t,
                "query",
                v.clone(),
                e.map(String::from),
            );
        }
        check(&h.ops(), false)
    }

    #[test]
    fn every_query_ends_with_a_reason() {
        let v = run(&[
            (0, OpType::Invoke, json!({}), None),
            (1, OpType::Invoke, json!({}), None),
            (2, OpType::Invoke, json!({}), None),
            (
                0,
                OpType::Ok,
                json!({"query_id": "q0", "was_queued": true}),
                None,
            ),
            (
                1,
                OpType::Fail,
                json!({"query_id": "q1", "error_name": "QUERY_QUEUE_FULL"}),
                None,
            ),
            (2, OpType::Info, json!({}), Some("coordinator unreachable")),
        ]);
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.details);
        assert_eq!(v.details["failed"]["QUERY_QUEUE_FULL"], 1);
    }

    #[test]
    fn a_lost_a_duplicated_or_an_unexplained_query_is_invalid() {
        let lost = run(&[(0, OpType::Invoke, json!({}), None)]);
        assert_eq!(lost.valid, Validity::Invalid);
        let dup = run(&[
            (0, OpType::Invoke, json!({}), None),
            (1, OpType::Invoke, json!({}), None),
            (0, OpType::Ok, json!({"query_id": "same"}), None),
            (1, OpType::Ok, json!({"query_id": "same"}), None),
        ]);
        assert_eq!(dup.valid, Validity::Invalid);
        assert_eq!(dup.details["duplicated"], json!(["same"]));
        let silent = run(&[
            (0, OpType::Invoke, json!({}), None),
            (0, OpType::Fail, json!({"query_id": "q"}), None),
        ]);
        assert_eq!(silent.valid, Validity::Invalid);
    }

    /// One query that ended unknown, with `value` and `error`.
    fn unknown_end(value: serde_json::Value, error: Option<&str>) -> Vec<Op> {
        let h = Recorder::new(None).unwrap();
        h.record(Process::Client(0), OpType::Invoke, "query", json!({}), None);
        h.record(
            Process::Client(0),
            OpType::Info,
            "query",
            value,
            error.map(String::from),
        );
        h.ops()
    }

    #[test]
    fn when_every_query_must_be_answered_an_unknown_end_is_invalid() {
        let ops = unknown_end(json!({}), Some("coordinator unreachable"));
        assert_eq!(check(&ops, false).valid, Validity::Valid);
        assert_eq!(check(&ops, true).valid, Validity::Invalid);
    }

    /// A submission whose coordinator died with the request in flight got
    /// no answer: nothing was acknowledged, so even the strict check lets
    /// it stay unknown (with its reason), and counts it.
    #[test]
    fn an_unanswered_submission_is_unknown_even_when_every_query_must_be_answered() {
        let ops = unknown_end(
            json!({"unanswered_submission": true}),
            Some("submitting to c1: connection closed before message completed"),
        );
        let v = check(&ops, true);
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.details);
        assert_eq!(v.details["unanswered_submissions"], 1);
        // Without its reason it is still unexplained.
        let ops = unknown_end(json!({"unanswered_submission": true}), None);
        assert_eq!(check(&ops, true).valid, Validity::Invalid);
    }
}
