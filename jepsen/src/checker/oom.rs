//! The coordinated low-memory killer, from the outside: at most one kill
//! per out-of-memory episode, and no query killed without a decision.
//!
//! Evidence: the history (queries that failed with `CLUSTER_OUT_OF_MEMORY`)
//! and the RMs' decisions as `GET /v1/memory` lists them at the end
//! (`kills`, newest first, each with its episode, decision time and
//! outcome).
//!
//! Invalid when a query failed with `CLUSTER_OUT_OF_MEMORY` but no decision
//! names it, when two low-memory decisions overlap (the next one decided
//! before the previous one settled), or when episode numbers repeat.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{Validity, Verdict};
use crate::history::{Op, OpType};

pub fn check(history: &[Op], memory_view: &Value) -> Verdict {
    let Some(kills) = memory_view["kills"].as_array() else {
        return Verdict::new(
            Validity::Unknown,
            json!({"error": "no memory view from the RMs at the end of the run"}),
        );
    };
    let mut low: Vec<&Value> = kills
        .iter()
        .filter(|k| k["error_name"] == "CLUSTER_OUT_OF_MEMORY")
        .collect();
    low.sort_by_key(|k| k["decision"].as_u64().unwrap_or(0));
    let decided: BTreeSet<&str> = kills
        .iter()
        .filter_map(|k| k["query_id"].as_str())
        .collect();
    let killed_seen: Vec<&str> = history
        .iter()
        .filter(|o| o.f == "query" && o.kind == OpType::Fail)
        .filter(|o| o.value["error_name"] == "CLUSTER_OUT_OF_MEMORY")
        .filter_map(|o| o.value["query_id"].as_str())
        .collect();
    let without_decision: Vec<&str> = killed_seen
        .iter()
        .filter(|q| !decided.contains(*q))
        .copied()
        .collect();
    let mut overlapping = Vec::new();
    let mut repeated_episodes = Vec::new();
    for pair in low.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let settled = a["settled_ms"].as_u64();
        let next = b["decided_ms"].as_u64().unwrap_or(0);
        if settled.is_none_or(|s| s > next) {
            overlapping.push(json!([a["decision"], b["decision"]]));
        }
        if a["episode"] == b["episode"] {
            repeated_episodes.push(a["episode"].clone());
        }
    }
    // The view lists the newest kills only: older evidence may be missing.
    let truncated = kills.len() >= 50;
    let valid = if !without_decision.is_empty() && !truncated
        || !overlapping.is_empty()
        || !repeated_episodes.is_empty()
    {
        Validity::Invalid
    } else if truncated {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Verdict::new(
        valid,
        json!({"low_memory_kills": low.len(), "limit_kills": kills.len() - low.len(),
               "clients_saw_cluster_out_of_memory": killed_seen.len(),
               "killed_without_a_decision": without_decision,
               "overlapping_decisions": overlapping, "repeated_episodes": repeated_episodes,
               "kill_list_truncated": truncated}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Process, Recorder};

    fn killed_query(h: &Recorder, q: &str) {
        h.record(Process::Client(0), OpType::Invoke, "query", json!({}), None);
        h.record(
            Process::Client(0),
            OpType::Fail,
            "query",
            json!({"query_id": q, "error_name": "CLUSTER_OUT_OF_MEMORY"}),
            None,
        );
    }

    fn kill(decision: u64, episode: u64, q: &str, decided: u64, settled: Option<u64>) -> Value {
        json!({"decision": decision, "episode": episode, "query_id": q,
               "error_name": "CLUSTER_OUT_OF_MEMORY", "decided_ms": decided, "settled_ms": settled})
    }

    #[test]
    fn one_kill_per_episode_each_with_its_decision_is_valid() {
        let h = Recorder::new(None).unwrap();
        killed_query(&h, "a");
        killed_query(&h, "b");
        let view =
            json!({"kills": [kill(20, 2, "b", 300, Some(400)), kill(10, 1, "a", 100, Some(200))]});
        assert_eq!(check(&h.ops(), &view).valid, Validity::Valid);
    }

    #[test]
    fn a_kill_without_a_decision_or_two_at_once_is_invalid() {
        let h = Recorder::new(None).unwrap();
        killed_query(&h, "ghost");
        let view = json!({"kills": [kill(10, 1, "a", 100, Some(200))]});
        let v = check(&h.ops(), &view);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["killed_without_a_decision"], json!(["ghost"]));
        // b decided at 150, while a (decided at 100) was unsettled until 200.
        let h = Recorder::new(None).unwrap();
        let overlap =
            json!({"kills": [kill(10, 1, "a", 100, Some(200)), kill(11, 2, "b", 150, None)]});
        assert_eq!(check(&h.ops(), &overlap).valid, Validity::Invalid);
        let same_episode =
            json!({"kills": [kill(10, 1, "a", 100, Some(200)), kill(11, 1, "b", 250, None)]});
        assert_eq!(check(&h.ops(), &same_episode).valid, Validity::Invalid);
        assert_eq!(check(&h.ops(), &json!({})).valid, Validity::Unknown);
    }
}
