//! openraft's state-machine interface over the pure [`crate::machine`].
//!
//! This layer does only log ids, membership and snapshots; every application
//! command goes to `State::apply`. The applied state sits behind a lock that
//! the HTTP layer reads (never across an `.await`).
//!
//! Installing a snapshot follows copy -> check -> persist -> adopt: the
//! received bytes are decoded and verified, written durably to the snapshot
//! tree, and only then replace the in-memory state wholesale, so no key of
//! the old state survives.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};

use crate::machine::Response;
use crate::metrics::groups::fresh_acquires;
use crate::metrics::Metrics;
use crate::store::snapshot::{self, Saved, SnapshotPayload, SnapshotStore};
use crate::store::DurableDb;
use crate::{Node, NodeId, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// The applied state: what the log has decided up to `last_applied`.
pub type AppliedState = SnapshotPayload;

#[derive(Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<AppliedState>>,
    snapshots: SnapshotStore,
    /// Where snapshot builds and installs report their time and size.
    metrics: Arc<Metrics>,
}

impl StateMachineStore {
    /// Loads the latest snapshot, if any; openraft re-applies the committed
    /// log after it.
    pub fn open(db: &DurableDb, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let snapshots = SnapshotStore::open(db)?;
        let applied = match snapshots.load()? {
            Some((_, bytes)) => {
                metrics.snapshot.loaded(bytes.len());
                snapshot::decode(&bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            }
            None => AppliedState::default(),
        };
        Ok(Self {
            applied: Arc::new(RwLock::new(applied)),
            snapshots,
            metrics,
        })
    }

    /// The snapshot store, whose synced snapshot bounds log purges.
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// A read view of the applied state, for the HTTP layer.
    pub fn reader(&self) -> AppliedReader {
        AppliedReader(self.applied.clone())
    }

    fn snapshot_of(payload: &AppliedState, bytes: Vec<u8>) -> Snapshot<TypeConfig> {
        let meta = SnapshotMeta {
            last_log_id: payload.last_applied,
            last_membership: payload.membership.clone(),
            snapshot_id: snapshot_id(payload.last_applied),
        };
        Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }
    }
}

/// Snapshot ids name the log position plus a random suffix, as openraft asks
/// ids to be unique even for two snapshots at the same position.
fn snapshot_id(last: Option<LogId<NodeId>>) -> String {
    let pos = last
        .map(|l| format!("{}-{}", l.leader_id.term, l.index))
        .unwrap_or_else(|| "0-0".into());
    format!("{pos}-{:08x}", rand::random::<u32>())
}

/// Shared read access to the applied state.
#[derive(Clone)]
pub struct AppliedReader(Arc<RwLock<AppliedState>>);

impl AppliedReader {
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// CRC32 and length of the encoded state: equal digests at equal
    /// `last_applied` show that replicas converged.
    pub fn digest(&self) -> (Option<u64>, String) {
        let guard = self.read();
        let bytes = common::codec::encode(&guard.state).unwrap_or_default();
        (
            guard.last_applied.map(|l| l.index),
            format!("{:08x}-{}", crc32fast::hash(&bytes), bytes.len()),
        )
    }
}

fn write_lock(lock: &RwLock<AppliedState>) -> std::sync::RwLockWriteGuard<'_, AppliedState> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let a = self.applied.read().unwrap_or_else(|p| p.into_inner());
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut guard = write_lock(&self.applied);
        let mut out = Vec::new();
        for entry in entries {
            guard.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Normal(request) => {
                    let index = entry.log_id.index;
                    let fresh = fresh_acquires(&guard.state.admission, &request.command);
                    let response = guard.state.apply(index, &request);
                    self.metrics.groups.applied(
                        &guard.state.admission,
                        index,
                        &request.command,
                        &fresh,
                        &response,
                    );
                    response
                }
                EntryPayload::Membership(m) => {
                    guard.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::None
                }
            };
            out.push(response);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        // Timed from the complete transfer to adoption: the transfer itself
        // depends on the link, this part on the state's size.
        let start = Instant::now();
        let bytes = snapshot.into_inner();
        let read_err = |message: String| {
            StorageIOError::read_snapshot(Some(meta.signature()), &std::io::Error::other(message))
        };
        let payload = snapshot::decode(&bytes).map_err(|e| read_err(e.to_string()))?;
        if payload.last_applied != meta.last_log_id {
            return Err(read_err(format!(
                "snapshot content is at {:?} but its meta says {:?}",
                payload.last_applied, meta.last_log_id
            ))
            .into());
        }
        fail::fail_point!("state-machine::mid-install");
        let saved = self
            .snapshots
            .save(meta, &bytes)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        if saved == Saved::KeptNewer && self.snapshots.durable_upto() > meta.last_log_id {
            // openraft installs only past its committed index, which no
            // build can have passed: a newer stored snapshot is a bug.
            return Err(read_err(format!(
                "a snapshot newer than {:?} is already stored",
                meta.last_log_id
            ))
            .into());
        }
        *write_lock(&self.applied) = payload;
        self.metrics
            .snapshot
            .installed(start.elapsed(), bytes.len());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored = self
            .snapshots
            .load()
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // Copy under the lock, encode and persist outside it.
        let start = Instant::now();
        let payload = self
            .applied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let bytes =
            snapshot::encode(&payload).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let snap = Self::snapshot_of(&payload, bytes.clone());
        let saved = self
            .snapshots
            .save(&snap.meta, &bytes)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(snap.meta.signature()), &e))?;
        if saved == Saved::KeptNewer {
            // An install overtook this build: the stored snapshot is the
            // newer one, and the one to report.
            tracing::info!(
                built = ?snap.meta.last_log_id,
                stored = ?self.snapshots.durable_upto(),
                "a newer snapshot was installed while this one was built; keeping it"
            );
            return self.get_current_snapshot().await?.ok_or_else(|| {
                StorageIOError::read_snapshot(
                    None,
                    &std::io::Error::other("the newer snapshot vanished"),
                )
                .into()
            });
        }
        self.metrics.snapshot.built(start.elapsed(), bytes.len());
        Ok(snap)
    }
}
