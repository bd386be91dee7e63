//! [`Node`]: what the membership records of a member: where it is, and
//! which data dir (incarnation) it is.
//!
//! The incarnation is the random id a node's data dir was created with
//! ([`crate::store::ClusterIdentity::incarnation`]). A member whose disk was
//! lost comes back with a new one, and the Raft RPCs carry both sides'
//! incarnations (see [`crate::network`]), so the node is refused until an
//! operator replaces it (`raft-rm admin replace`): it cannot vote, or take
//! entries, with an empty log under an identity that acknowledged entries.
//!
//! 0 means "not recorded": members added by a version before incarnations,
//! or peers that did not answer while the cluster was bootstrapped. They are
//! accepted as before (nothing to compare with) until replaced.
//!
//! # Wire form
//! Membership sits in log entries and snapshots, encoded with bincode,
//! which is positional: a struct with one more field cannot read the old
//! bytes. openraft's `BasicNode` (what this type replaces) encoded as one
//! string, its address; so does this type, as `addr` when the incarnation is
//! 0 (byte for byte what old data dirs hold) and `addr#<16 hex digits>`
//! otherwise (`#` cannot occur in a `host:port`). Human-readable formats
//! (JSON) get the fields, `{"addr": .., "incarnation": ..}`, as before plus
//! one. A node of an older version reads `addr#..` as an address it cannot
//! reach, so upgrade every node before replacing any.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A member of the Raft group: its HTTP address and the incarnation of the
/// data dir the membership knows it by (0: not recorded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// `host:port` of the member's HTTP listener.
    pub addr: String,
    pub incarnation: u64,
}

impl Node {
    /// A member whose incarnation is not recorded.
    pub fn new(addr: impl Into<String>) -> Self {
        Self::with_incarnation(addr, 0)
    }

    pub fn with_incarnation(addr: impl Into<String>, incarnation: u64) -> Self {
        Self {
            addr: addr.into(),
            incarnation,
        }
    }

    /// The incarnation, if recorded.
    pub fn recorded_incarnation(&self) -> Option<u64> {
        (self.incarnation != 0).then_some(self.incarnation)
    }

    fn compact(&self) -> String {
        match self.recorded_incarnation() {
            None => self.addr.clone(),
            Some(i) => format!("{}#{i:016x}", self.addr),
        }
    }

    fn from_compact(text: &str) -> Result<Self, String> {
        match text.rsplit_once('#') {
            None => Ok(Self::new(text)),
            Some((addr, hex)) => {
                let incarnation = u64::from_str_radix(hex, 16)
                    .map_err(|e| format!("member {text:?}: bad incarnation: {e}"))?;
                Ok(Self::with_incarnation(addr, incarnation))
            }
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.recorded_incarnation() {
            None => write!(f, "{}", self.addr),
            Some(i) => write!(f, "{} (incarnation {i:016x})", self.addr),
        }
    }
}

/// The human-readable form.
#[derive(Serialize, Deserialize)]
struct NodeFields {
    addr: String,
    #[serde(default)]
    incarnation: u64,
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            NodeFields {
                addr: self.addr.clone(),
                incarnation: self.incarnation,
            }
            .serialize(serializer)
        } else {
            self.compact().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let f = NodeFields::deserialize(deserializer)?;
            Ok(Self::with_incarnation(f.addr, f.incarnation))
        } else {
            let text = String::deserialize(deserializer)?;
            Self::from_compact(&text).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn reads_the_bytes_of_openraft_basic_node_as_an_unrecorded_incarnation() {
        let old: BTreeMap<u64, openraft::BasicNode> =
            BTreeMap::from([(1, openraft::BasicNode::new("127.0.0.1:7001"))]);
        let bytes = common::codec::encode(&old).unwrap();
        let new: BTreeMap<u64, Node> = common::codec::decode(&bytes).unwrap();
        assert_eq!(new, BTreeMap::from([(1, Node::new("127.0.0.1:7001"))]));
        // And an unrecorded incarnation writes exactly the old bytes.
        assert_eq!(common::codec::encode(&new).unwrap(), bytes);
    }

    #[test]
    fn an_incarnation_survives_the_binary_and_the_json_form() {
        let node = Node::with_incarnation("10.0.0.3:7003", 0xdead_beef_0000_0001);
        let bytes = common::codec::encode(&node).unwrap();
        assert_eq!(common::codec::decode::<Node>(&bytes).unwrap(), node);
        let json = serde_json::to_value(&node).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"addr": "10.0.0.3:7003", "incarnation": 0xdead_beef_0000_0001u64})
        );
        assert_eq!(serde_json::from_value::<Node>(json).unwrap(), node);
        // The old JSON form has no incarnation.
        let old: Node = serde_json::from_str(r#"{"addr":"10.0.0.3:7003"}"#).unwrap();
        assert_eq!(old, Node::new("10.0.0.3:7003"));
    }

    #[test]
    fn a_malformed_incarnation_is_an_error_not_a_panic() {
        let bytes = common::codec::encode(&"10.0.0.3:7003#zz".to_string()).unwrap();
        assert!(common::codec::decode::<Node>(&bytes).is_err());
    }
}
