//! The ids of finished queries, remembered so that a late retry of their
//! acquire is refused rather than admitted again.
//!
//! Every acquire asks "did this id finish?", and up to
//! [`super::admission::FINISHED_KEPT`] ids are kept: a scan of the list
//! cost every acquire (on every replica) a pass over 100,000 strings. So the
//! ids are kept twice: in order (oldest dropped first) and in a set for the
//! question. Only the order is encoded; the set is rebuilt on decoding, so
//! snapshots keep their shape and stay deterministic.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinishedIds {
    order: VecDeque<String>,
    lookup: HashSet<String>,
}

impl FinishedIds {
    pub fn contains(&self, query_id: &str) -> bool {
        self.lookup.contains(query_id)
    }

    /// Remembers `query_id`, then forgets the oldest ids beyond `keep`. An
    /// id already remembered keeps its place.
    pub fn remember(&mut self, query_id: &str, keep: usize) {
        if self.lookup.insert(query_id.to_string()) {
            self.order.push_back(query_id.to_string());
        }
        while self.order.len() > keep {
            if let Some(old) = self.order.pop_front() {
                self.lookup.remove(&old);
            }
        }
    }
}

impl Serialize for FinishedIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.order.serialize(s)
    }
}

impl<'de> Deserialize<'de> for FinishedIds {
    /// Older snapshots may list an id twice (it was once appended on every
    /// release); the first place wins, as [`FinishedIds::remember`] would.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let listed = VecDeque::<String>::deserialize(d)?;
        let mut ids = FinishedIds::default();
        for id in &listed {
            ids.remember(id, usize::MAX);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_the_limit_and_keeps_lookup_in_step() {
        let mut f = FinishedIds::default();
        for q in ["a", "b", "a", "c"] {
            f.remember(q, 2);
        }
        // "a" kept its first place, so it is the one forgotten.
        assert!(!f.contains("a"));
        assert!(f.contains("b") && f.contains("c"));
        assert_eq!(f.order, ["b", "c"]);
    }

    #[test]
    fn encodes_as_the_old_list_and_drops_listed_duplicates() {
        let mut f = FinishedIds::default();
        for q in ["x", "y", "z"] {
            f.remember(q, 10);
        }
        // Encoded as the plain list it used to be.
        let bytes = common::codec::encode(&f).unwrap();
        let listed: VecDeque<String> = common::codec::decode(&bytes).unwrap();
        assert_eq!(listed, ["x", "y", "z"]);
        assert_eq!(common::codec::decode::<FinishedIds>(&bytes).unwrap(), f);
        let old = common::codec::encode(&VecDeque::from(["x", "y", "x"])).unwrap();
        let old: FinishedIds = common::codec::decode(&old).unwrap();
        assert_eq!(old.order, ["x", "y"]);
        assert!(old.contains("x") && old.contains("y"));
    }
}
