//! The hostile nemesis's verdict: a coordinator must answer every hostile
//! request with a 4xx, a 503, or a normal answer. A 5xx other than 503, a
//! dropped connection, no answer within the request's timeout, or a 2xx
//! that is not JSON is a finding, and the run is invalid. Faults come one
//! at a time, so nothing else kills the coordinator during the hostile
//! window. Absent when no hostile fault ran.
//!
//! Reads the `hostile-answers` ops ([`crate::nemesis::hostile::Report`]):
//! the answers by kind of request and class.

use serde_json::{json, Value};

use super::{Validity, Verdict};
use crate::history::{Op, OpType, NEMESIS};

/// The history op that carries a hostile run's answers.
pub const ANSWERS: &str = "hostile-answers";

/// Whether an answer class is a finding: a 5xx but 503, a dropped
/// connection, no answer in time, or an undecodable success.
pub fn is_finding(class: &str) -> bool {
    match class.parse::<u16>() {
        Ok(status) => status >= 500 && status != 503,
        Err(_) => matches!(class, "dropped" | "timeout" | "undecodable"),
    }
}

/// `None` when the history has no hostile answers.
pub fn check(history: &[Op]) -> Option<Verdict> {
    let reports: Vec<&Op> = history
        .iter()
        .filter(|o| o.process == NEMESIS && o.kind == OpType::Info && o.f == ANSWERS)
        .collect();
    if reports.is_empty() {
        return None;
    }
    let mut sent = 0u64;
    let mut by_class: std::collections::BTreeMap<String, u64> = Default::default();
    let mut bad = Vec::new();
    for op in &reports {
        sent += op.value["sent"].as_u64().unwrap_or(0);
        let answers = op.value["answers"].as_object();
        for (kind, classes) in answers.into_iter().flatten() {
            for (class, n) in classes.as_object().into_iter().flatten() {
                let n = n.as_u64().unwrap_or(0);
                *by_class.entry(class.clone()).or_default() += n;
                if is_finding(class) && n > 0 {
                    bad.push(json!({
                        "coordinator": op.value["coordinator"],
                        "kind": kind,
                        "answer": class,
                        "count": n,
                    }));
                }
            }
        }
    }
    let examples: Vec<Value> = reports
        .iter()
        .flat_map(|o| o.value["findings"].as_array().cloned().unwrap_or_default())
        .take(10)
        .collect();
    Some(Verdict::new(
        if bad.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        json!({"runs": reports.len(), "sent": sent, "answers": by_class,
               "findings": bad, "examples": examples}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;

    fn answers(h: &Recorder, answers: Value) {
        h.record(
            NEMESIS,
            OpType::Info,
            ANSWERS,
            json!({"coordinator": "c1", "sent": 3, "answers": answers, "findings": []}),
            None,
        );
    }

    #[test]
    fn only_4xx_503_and_normal_answers_pass() {
        let h = Recorder::new(None).unwrap();
        assert!(check(&h.ops()).is_none(), "no hostile run, no verdict");
        answers(
            &h,
            json!({"submit": {"200": 1, "400": 5}, "flood": {"503": 9, "200": 3},
                   "poll-forged-id": {"404": 7}, "follow": {"unsendable": 1}}),
        );
        let v = check(&h.ops()).unwrap();
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert_eq!(v.details["answers"]["503"], 9);
    }

    #[test]
    fn a_500_a_drop_or_no_answer_is_invalid() {
        for class in ["500", "502", "504", "dropped", "timeout", "undecodable"] {
            let h = Recorder::new(None).unwrap();
            answers(&h, json!({"submit": {"400": 2}}));
            answers(&h, json!({"poll-wrong-slug": {"404": 1, class: 1}}));
            let v = check(&h.ops()).unwrap();
            assert_eq!(v.valid, Validity::Invalid, "{class}: {}", v.details);
            assert_eq!(v.details["findings"][0]["kind"], "poll-wrong-slug");
            assert_eq!(v.details["findings"][0]["answer"], class);
        }
    }

    #[test]
    fn odd_values_do_not_panic() {
        let h = Recorder::new(None).unwrap();
        h.record(NEMESIS, OpType::Info, ANSWERS, json!(null), None);
        h.record(
            NEMESIS,
            OpType::Info,
            ANSWERS,
            json!({"answers": {"x": 3, "y": {"500": "many"}}}),
            None,
        );
        assert_eq!(check(&h.ops()).unwrap().valid, Validity::Valid);
    }
}
