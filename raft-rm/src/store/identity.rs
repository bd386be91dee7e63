//! Which node and which cluster a data dir belongs to.
//!
//! The node id is written on first open and checked on every later one: a
//! data dir copied to, or mounted on, the wrong node is refused at start-up.
//! The cluster id is a random token made by the node that initializes the
//! cluster; the others learn it from the first Raft RPC they accept, and
//! from then on every Raft RPC carries it. A node from another cluster (or
//! one whose data dir was wiped and re-initialized) is rejected with 409, so
//! it cannot vote in, or replicate into, a cluster it does not belong to.
//!
//! The incarnation is a random nonzero u64 made when the data dir is first
//! opened and never changed: it names this copy of the node's state. The
//! membership records each member's ([`crate::Node`]), every Raft RPC
//! carries the incarnation the sender's membership records for the
//! receiver, and a node refuses one that is not its own
//! ([`ClusterIdentity::check_addressed_to`]): a node whose disk was lost
//! restarts with a new incarnation and cannot vote, or take entries, with an
//! empty log in place of the member that acknowledged them. An operator
//! replaces it (`raft-rm admin replace`), which records the new incarnation.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::store::durable::{sled_to_io, DurableDb};
use crate::NodeId;

const NODE_ID_KEY: &str = "node_id";
const CLUSTER_ID_KEY: &str = "cluster_id";
const INCARNATION_KEY: &str = "incarnation";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("data dir {dir} belongs to node {found}, not node {wanted}: refusing to reuse it")]
    WrongNode {
        dir: String,
        found: NodeId,
        wanted: NodeId,
    },
    #[error("data dir {dir}: corrupt identity record: {message}; this node cannot start on it: replace it as after a disk loss (docs/runbook-failover.md, \"Disk loss\")")]
    Corrupt { dir: String, message: String },
    #[error("this node belongs to cluster {ours}; request from cluster {theirs} refused")]
    WrongCluster { ours: String, theirs: String },
    #[error(
        "this data dir is incarnation {ours:016x}, but the cluster knows node {node} as \
         incarnation {recorded:016x}: its disk was lost or replaced, so it may not vote or \
         take entries under the old identity. On any member run \
         `raft-rm admin --rm MEMBER replace --node-id {node} --addr THIS_NODE_ADDR` \
         (docs/runbook-failover.md, \"Disk loss\")"
    )]
    NotThisIncarnation {
        node: NodeId,
        ours: u64,
        recorded: u64,
    },
    #[error(
        "node {node} sent incarnation {theirs:016x}, but this node's membership records \
         incarnation {recorded:016x} for it: refused"
    )]
    SenderNotMember {
        node: NodeId,
        theirs: u64,
        recorded: u64,
    },
    #[error("cannot persist identity: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
pub struct ClusterIdentity {
    db: DurableDb,
    meta: sled::Tree,
    node_id: NodeId,
    incarnation: u64,
    cluster_id: Arc<RwLock<Option<String>>>,
    /// Whether the refusal of [`Self::check_addressed_to`] was logged: once
    /// is enough to tell the operator, the leader retries all the time.
    refusal_logged: Arc<AtomicBool>,
    /// Serialises adoption so two first RPCs cannot persist different ids.
    adopt: Arc<tokio::sync::Mutex<()>>,
}

/// The node id recorded in `meta`, if any.
pub fn recorded_node_id(meta: &sled::Tree, dir: &Path) -> Result<Option<NodeId>, IdentityError> {
    let Some(v) = meta.get(NODE_ID_KEY).map_err(sled_to_io)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| IdentityError::Corrupt {
        dir: dir.display().to_string(),
        message: "node id is not 8 bytes".into(),
    })?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

impl ClusterIdentity {
    pub fn open(
        db: DurableDb,
        meta: sled::Tree,
        node_id: NodeId,
        dir: &Path,
    ) -> Result<Self, IdentityError> {
        let shown = dir.display().to_string();
        let corrupt = |message: String| IdentityError::Corrupt {
            dir: shown.clone(),
            message,
        };
        match recorded_node_id(&meta, dir)? {
            Some(found) => {
                if found != node_id {
                    return Err(IdentityError::WrongNode {
                        dir: shown,
                        found,
                        wanted: node_id,
                    });
                }
            }
            None => {
                meta.insert(NODE_ID_KEY, &node_id.to_be_bytes())
                    .map_err(sled_to_io)?;
                db.sync()?;
            }
        }
        let incarnation = match meta.get(INCARNATION_KEY).map_err(sled_to_io)? {
            Some(v) => {
                let bytes: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt("incarnation is not 8 bytes".into()))?;
                match u64::from_be_bytes(bytes) {
                    0 => return Err(corrupt("incarnation is 0".into())),
                    i => i,
                }
            }
            None => {
                // First open (or the first by a version with incarnations).
                let incarnation = new_incarnation();
                meta.insert(INCARNATION_KEY, &incarnation.to_be_bytes())
                    .map_err(sled_to_io)?;
                db.sync()?;
                tracing::info!(incarnation = %format!("{incarnation:016x}"), "new data dir incarnation");
                incarnation
            }
        };
        let cluster_id = match meta.get(CLUSTER_ID_KEY).map_err(sled_to_io)? {
            Some(v) => Some(String::from_utf8(v.to_vec()).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        };
        Ok(Self {
            db,
            meta,
            node_id,
            incarnation,
            cluster_id: Arc::new(RwLock::new(cluster_id)),
            refusal_logged: Arc::default(),
            adopt: Arc::default(),
        })
    }

    /// This data dir's incarnation: random, nonzero, fixed at its creation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Checks the incarnation a Raft RPC was addressed to (what the sender's
    /// membership records for this node; `None` when it records none).
    /// Refused, it logs what to do, once.
    pub fn check_addressed_to(&self, recorded: Option<u64>) -> Result<(), IdentityError> {
        if common::failpoints::planted("bug::wiped-voter-votes") {
            return Ok(());
        }
        match recorded {
            Some(recorded) if recorded != self.incarnation => {
                let e = IdentityError::NotThisIncarnation {
                    node: self.node_id,
                    ours: self.incarnation,
                    recorded,
                };
                if !self.refusal_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!("{e}");
                }
                Err(e)
            }
            _ => Ok(()),
        }
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Returns the cluster id, making and persisting a new one if there is none.
    pub async fn get_or_create(&self) -> Result<String, IdentityError> {
        let _guard = self.adopt.lock().await;
        if let Some(id) = self.cluster_id() {
            return Ok(id);
        }
        let id = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        self.persist(&id).await?;
        Ok(id)
    }

    /// Checks the cluster id a peer sent. A node that has none yet adopts the
    /// first one it is offered (durably, before answering the RPC).
    pub async fn check_or_adopt(&self, theirs: Option<&str>) -> Result<(), IdentityError> {
        let Some(theirs) = theirs else {
            // Peers that have not learned the id yet (a fresh learner) send none.
            return Ok(());
        };
        if self.cluster_id().as_deref() == Some(theirs) {
            return Ok(());
        }
        let _guard = self.adopt.lock().await;
        match self.cluster_id() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) => Err(IdentityError::WrongCluster {
                ours,
                theirs: theirs.to_string(),
            }),
            None => {
                tracing::info!(cluster_id = theirs, "joining cluster");
                self.persist(theirs).await
            }
        }
    }

    async fn persist(&self, id: &str) -> Result<(), IdentityError> {
        self.meta
            .insert(CLUSTER_ID_KEY, id.as_bytes())
            .map_err(sled_to_io)?;
        self.db.sync_async().await?;
        *self.cluster_id.write().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
        Ok(())
    }
}

/// A random incarnation; never 0, which means "not recorded".
fn new_incarnation() -> u64 {
    loop {
        let i = rand::random::<u64>();
        if i != 0 {
            return i;
        }
    }
}

/// Checks the incarnation a peer claims (`theirs`, `None` from a version
/// without incarnations) against what a membership records for it
/// (`recorded`, 0 when nothing is).
pub fn check_sender(node: NodeId, theirs: Option<u64>, recorded: u64) -> Result<(), IdentityError> {
    match theirs {
        Some(theirs) if recorded != 0 && theirs != recorded => {
            Err(IdentityError::SenderNotMember {
                node,
                theirs,
                recorded,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn open(dir: &Path, id: NodeId) -> Result<ClusterIdentity, IdentityError> {
        let db = DurableDb::open(
            &dir.join("sled"),
            Arc::new(Metrics::new()),
            Arc::new(|_| {}),
        )?;
        let meta = db.tree("meta")?;
        ClusterIdentity::open(db, meta, id, dir)
    }

    #[test]
    fn the_incarnation_is_made_once_and_kept_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), 3).unwrap().incarnation();
        assert_ne!(first, 0);
        assert_eq!(open(dir.path(), 3).unwrap().incarnation(), first);
    }

    #[test]
    fn a_wiped_data_dir_gets_a_new_incarnation_and_is_refused_under_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = open(dir.path(), 3).unwrap().incarnation();
        std::fs::remove_dir_all(dir.path().join("sled")).unwrap();
        let wiped = open(dir.path(), 3).unwrap();
        assert_ne!(wiped.incarnation(), old);
        assert!(matches!(
            wiped.check_addressed_to(Some(old)),
            Err(IdentityError::NotThisIncarnation { node: 3, .. })
        ));
        wiped.check_addressed_to(Some(wiped.incarnation())).unwrap();
        // Not recorded (a member added before incarnations): accepted.
        wiped.check_addressed_to(None).unwrap();
    }

    #[test]
    fn a_sender_is_checked_only_against_a_recorded_incarnation() {
        assert!(check_sender(2, Some(7), 8).is_err());
        check_sender(2, Some(7), 7).unwrap();
        check_sender(2, Some(7), 0).unwrap();
        check_sender(2, None, 8).unwrap();
    }
}
