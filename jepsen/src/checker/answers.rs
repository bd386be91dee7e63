//! Every finished real query answered what it must (the sql workload): its
//! rows are the ones the engine gives for its statement on the same data
//! ([`crate::workload::sql::expected`], compared by
//! [`crate::workload::sql::same_rows`]). A statement the engine does not
//! run must not finish through the cluster either.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};
use crate::workload::sql::same_rows;

pub fn check(history: &[Op], expected: &BTreeMap<&str, Result<Vec<Value>, String>>) -> Verdict {
    let mut checked: BTreeMap<String, u64> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for p in pairs(history).into_iter().filter(|p| p.invoke.f == "query") {
        let Some(c) = p.complete else { continue };
        if c.kind != OpType::Ok {
            continue;
        }
        let Some(statement) = c.value["statement"].as_str() else {
            continue;
        };
        let got = c.value["data"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let verdict = match expected.get(statement) {
            Some(Ok(want)) => same_rows(got, want),
            Some(Err(e)) => Err(format!("it finished; the engine fails it with {e}")),
            None => {
                unknown.push(statement.to_string());
                continue;
            }
        };
        match verdict {
            Ok(()) => *checked.entry(statement.to_string()).or_default() += 1,
            Err(difference) => wrong.push(json!({
                "index": c.index, "statement": statement, "query_id": c.value["query_id"],
                "difference": difference,
            })),
        }
    }
    let valid = if !wrong.is_empty() || !unknown.is_empty() {
        Validity::Invalid
    } else if checked.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Verdict::new(
        valid,
        json!({"answers_checked": checked, "wrong": wrong, "unknown_statements": unknown}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;
    use serde_json::Value;

    fn op(index: u64, kind: OpType, value: Value) -> Op {
        Op {
            index,
            time_ns: index,
            process: Process::Client(0),
            kind,
            f: "query".into(),
            value,
            error: None,
        }
    }

    #[test]
    fn a_wrong_answer_is_found() {
        let expected = BTreeMap::from([
            ("q01", Ok(vec![json!([1, 2.5])])),
            ("q02", Err("NOT_SUPPORTED".to_string())),
        ]);
        let good = [
            op(0, OpType::Invoke, json!({"statement": "q01"})),
            op(
                1,
                OpType::Ok,
                json!({"statement": "q01", "data": [[1, 2.5]]}),
            ),
        ];
        assert_eq!(check(&good, &expected).valid, Validity::Valid);
        let bad = [
            op(0, OpType::Invoke, json!({"statement": "q01"})),
            op(
                1,
                OpType::Ok,
                json!({"statement": "q01", "data": [[1, 2.6]]}),
            ),
            op(2, OpType::Invoke, json!({"statement": "q02"})),
            op(3, OpType::Ok, json!({"statement": "q02", "data": []})),
        ];
        let v = check(&bad, &expected);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["wrong"].as_array().unwrap().len(), 2);
        let none = [
            op(0, OpType::Invoke, json!({"statement": "q01"})),
            op(1, OpType::Fail, json!({})),
        ];
        assert_eq!(check(&none, &expected).valid, Validity::Unknown);
    }
}
