//! Which node and which cluster a data dir belongs to.
//!
//! The node id is written on first open and checked on every later one: a
//! data dir copied to, or mounted on, the wrong node is refused at start-up.
//! The cluster id is a random token made by the node that initializes the
//! cluster; the others learn it from the first Raft RPC they accept, and
//! from then on every Raft RPC carries it. A node from another cluster (or
//! one whose data dir was wiped and re-initialized) is rejected with 409, so
//! it cannot vote in, or replicate into, a cluster it does not belong to.

use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::store::durable::{sled_to_io, DurableDb};
use crate::NodeId;

const NODE_ID_KEY: &str = "node_id";
const CLUSTER_ID_KEY: &str = "cluster_id";

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
    #[error("cannot persist identity: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
pub struct ClusterIdentity {
    db: DurableDb,
    meta: sled::Tree,
    cluster_id: Arc<RwLock<Option<String>>>,
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
        let cluster_id = match meta.get(CLUSTER_ID_KEY).map_err(sled_to_io)? {
            Some(v) => Some(String::from_utf8(v.to_vec()).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        };
        Ok(Self {
            db,
            meta,
            cluster_id: Arc::new(RwLock::new(cluster_id)),
            adopt: Arc::default(),
        })
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
