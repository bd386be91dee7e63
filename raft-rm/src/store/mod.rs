//! Durable storage of one Raft node, all in one sled database:
//!
//! | tree       | holds                                                       |
//! |------------|-------------------------------------------------------------|
//! | `log`      | log entries, keyed by index (big-endian u64)                 |
//! | `meta`     | vote, committed id, last purged id, node id, incarnation, cluster id |
//! | `snapshot` | the latest state-machine snapshot, chunked                    |
//!
//! The state machine itself lives in memory; its durable form is the latest
//! snapshot plus the committed log after it, which openraft re-applies at
//! start-up (`read_committed`). Every acknowledgement that Raft relies on (an
//! append, a vote) happens only after [`durable::DurableDb::sync`].

pub mod durable;
pub mod identity;
pub mod log;
pub mod snapshot;
pub mod state_machine;
pub mod wal;

use std::path::Path;
use std::sync::Arc;

pub use durable::DurableDb;
pub use identity::{ClusterIdentity, IdentityError};
pub use log::LogStore;
pub use state_machine::{AppliedState, StateMachineStore};

use crate::metrics::Metrics;
use crate::NodeId;

/// The exit status of a node whose disk failed a sync.
pub const EXIT_DISK: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open data dir {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    /// What the data dir holds cannot be trusted: the node must not start
    /// on it (it would serve or vote from a state it cannot vouch for).
    #[error("data dir {dir}: the stored snapshot is corrupt ({source}); this node cannot start on it: replace it as after a disk loss (docs/runbook-failover.md, \"Disk loss\")")]
    CorruptSnapshot { dir: String, source: std::io::Error },
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// The pieces openraft and the HTTP layer need, opened from one data dir.
pub struct Stores {
    pub log: LogStore,
    pub state_machine: StateMachineStore,
    pub identity: ClusterIdentity,
}

impl Stores {
    /// The same stores with purges not bounded by the snapshot, for
    /// openraft's storage suite: it purges logs that no snapshot covers,
    /// which a running node never does (see `store::log`).
    pub fn with_unbounded_purges(mut self) -> Stores {
        self.log = self.log.with_unbounded_purges();
        self
    }
}

/// Opens (or creates) the data dir for node `node_id`. Refuses a data dir
/// that another node id wrote.
pub fn open(dir: &Path, node_id: NodeId, metrics: Arc<Metrics>) -> Result<Stores, OpenError> {
    let io = |source| OpenError::Io {
        dir: dir.display().to_string(),
        source,
    };
    let db = DurableDb::open(&dir.join("sled"), metrics.clone(), durable::exit_on_fatal())
        .map_err(io)?;
    let meta = db.tree("meta").map_err(io)?;
    let identity = ClusterIdentity::open(db.clone(), meta.clone(), node_id, dir)?;
    let state_machine = StateMachineStore::open(&db, metrics).map_err(|source| {
        if source.kind() == std::io::ErrorKind::InvalidData {
            OpenError::CorruptSnapshot {
                dir: dir.display().to_string(),
                source,
            }
        } else {
            io(source)
        }
    })?;
    let log = LogStore::open(
        db.clone(),
        meta,
        Some(state_machine.snapshots().clone()),
        &dir.join("wal"),
    )
    .map_err(io)?;
    Ok(Stores {
        log,
        state_machine,
        identity,
    })
}

/// The node id a data dir was written by, without changing anything.
pub fn recorded_node_id(dir: &Path) -> Result<Option<NodeId>, OpenError> {
    let io = |source| OpenError::Io {
        dir: dir.display().to_string(),
        source,
    };
    let db = DurableDb::open(
        &dir.join("sled"),
        Arc::new(Metrics::new()),
        durable::exit_on_fatal(),
    )
    .map_err(io)?;
    let meta = db.tree("meta").map_err(io)?;
    Ok(identity::recorded_node_id(&meta, dir)?)
}
