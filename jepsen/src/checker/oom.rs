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

use common::api::KillView;
use serde_json::json;

use super::{Validity, Verdict};
use crate::history::{Op, OpType};

/// `kills`: the RMs' kill list at the end (`None`: no RM answered).
pub fn check(history: &[Op], kills: Option<&[KillView]>) -> Verdict {
    let Some(kills) = kills else {
        return Verdict::new(
            Validity::Unknown,
            json!({"error": "no memory view from the RMs at the end of the run"}),
        );
    };
    let mut low: Vec<&KillView> = kills
        .iter()
        .filter(|k| k.error_name == "CLUSTER_OUT_OF_MEMORY")
        .collect();
    low.sort_by_key(|k| k.decision);
    let decided: BTreeSet<&str> = kills.iter().map(|k| k.query_id.as_str()).collect();
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
        if a.settled_ms.is_none_or(|s| s > b.decided_ms) {
            overlapping.push([a.decision, b.decision]);
        }
        if a.episode == b.episode {
            repeated_episodes.push(a.episode);
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
    use common::api::KillSettlement;

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

    fn kill(decision: u64, episode: u64, q: &str, decided: u64, settled: Option<u64>) -> KillView {
        KillView {
            decision,
            episode,
            query_id: q.into(),
            error_name: "CLUSTER_OUT_OF_MEMORY".into(),
            message: String::new(),
            reason: "total-reservation".into(),
            decided_ms: decided,
            figures: Default::default(),
            outcome: if settled.is_some() {
                KillSettlement::Freed
            } else {
                KillSettlement::Unsettled
            },
            settled_ms: settled,
        }
    }

    #[test]
    fn one_kill_per_episode_each_with_its_decision_is_valid() {
        let h = Recorder::new(None).unwrap();
        killed_query(&h, "a");
        killed_query(&h, "b");
        let kills = [
            kill(20, 2, "b", 300, Some(400)),
            kill(10, 1, "a", 100, Some(200)),
        ];
        assert_eq!(check(&h.ops(), Some(&kills)).valid, Validity::Valid);
    }

    #[test]
    fn a_kill_without_a_decision_or_two_at_once_is_invalid() {
        let h = Recorder::new(None).unwrap();
        killed_query(&h, "ghost");
        let kills = [kill(10, 1, "a", 100, Some(200))];
        let v = check(&h.ops(), Some(&kills));
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["killed_without_a_decision"], json!(["ghost"]));
        // b decided at 150, while a (decided at 100) was unsettled until 200.
        let h = Recorder::new(None).unwrap();
        let overlap = [
            kill(10, 1, "a", 100, Some(200)),
            kill(11, 2, "b", 150, None),
        ];
        assert_eq!(check(&h.ops(), Some(&overlap)).valid, Validity::Invalid);
        let same_episode = [
            kill(10, 1, "a", 100, Some(200)),
            kill(11, 1, "b", 250, None),
        ];
        assert_eq!(
            check(&h.ops(), Some(&same_episode)).valid,
            Validity::Invalid
        );
        assert_eq!(check(&h.ops(), None).valid, Validity::Unknown);
    }
}
