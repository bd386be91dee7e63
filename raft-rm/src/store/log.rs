//! The Raft log, vote and committed id in sled.
//!
//! Ordering rules (each is what makes a Raft promise true):
//! - `append`: write the batch, then hand the callback to the syncer, which
//!   calls it only after an fsync that covers the batch; openraft
//!   acknowledges the entries to the leader only from that callback.
//! - `save_vote`: fsync before returning; openraft sends the vote after.
//! - `purge`: record the new last-purged id before deleting entries, so a
//!   crash in between never leaves a log that looks shorter than it is;
//!   and never purge past what the synced snapshot covers. openraft asks
//!   for the purge right after it asks for a snapshot install, without
//!   waiting for the install: a crash between the purge and the install's
//!   save would leave a gap no replay can fill. So a purge past the synced
//!   snapshot waits for it (the install saves it on another task). It
//!   must not purge less instead: openraft reads the log as one run from
//!   the last purged id, and entries left below an installed snapshot
//!   with a hole above them stop the node at its next start (the crash-at
//!   nemesis found that).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::network::EarlyReplication;
use crate::store::durable::{sled_to_io, DurableDb};
use crate::store::snapshot::SnapshotStore;
use crate::store::wal::Wal;
use crate::{NodeId, TypeConfig};

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const LAST_PURGED_KEY: &str = "last_purged";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Clone)]
pub struct LogStore {
    db: DurableDb,
    /// The entries (see [`crate::store::wal`]).
    log: Wal,
    meta: sled::Tree,
    /// Purges stop at what this store's synced snapshot covers (`None`
    /// only for openraft's storage suite, which purges without snapshots).
    purge_bound: Option<SnapshotStore>,
    /// Sends a leader's new entries to the followers while they sync
    /// (`None` in tests of the store alone).
    early: Option<EarlyReplication>,
}

/// Entries moved per batch from a sled log into the segment files.
const MIGRATE_BATCH: usize = 1000;

impl LogStore {
    /// Opens the log in `wal_dir`, with the vote and ids in `meta`. A data
    /// dir whose entries are still in sled's `log` tree (written before
    /// the segment files) has them moved: the segment files are rebuilt
    /// from the tree and synced, and only then is the tree emptied, so a
    /// crash in between repeats the move.
    pub fn open(
        db: DurableDb,
        meta: sled::Tree,
        purge_bound: Option<SnapshotStore>,
        wal_dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        let purged: Option<LogId<NodeId>> = Self::meta_value(&meta, LAST_PURGED_KEY)?;
        let legacy = db.tree("log")?;
        let log = if legacy.is_empty() {
            Wal::open(wal_dir, purged.map(|p| p.index))?
        } else {
            // Segments of an earlier, unfinished move are dropped unread:
            // the tree is still the whole log.
            match std::fs::remove_dir_all(wal_dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let log = Wal::open(wal_dir, None)?;
            let mut files = Vec::new();
            let mut dirs = Vec::new();
            let mut batch = Vec::with_capacity(MIGRATE_BATCH);
            for item in legacy.iter() {
                let (_, v) = item.map_err(sled_to_io)?;
                let entry = Self::decode_entry(&v)?;
                if purged.is_some_and(|p| entry.log_id.index <= p.index) {
                    continue;
                }
                batch.push(entry);
                if batch.len() == MIGRATE_BATCH {
                    let (written, changed) = log.append(&batch)?;
                    files.extend(written);
                    dirs.extend(changed);
                    batch.clear();
                }
            }
            let (written, changed) = log.append(&batch)?;
            files.extend(written);
            dirs.extend(changed);
            // The syncer syncs each file once however often it is named.
            db.sync_files_blocking(files, dirs)?;
            tracing::info!(
                entries = legacy.len(),
                "moved the log from sled into segment files"
            );
            legacy.clear().map_err(sled_to_io)?;
            db.sync()?;
            log
        };
        Ok(Self {
            db,
            log,
            meta,
            purge_bound,
            early: None,
        })
    }

    fn meta_value<T: DeserializeOwned>(
        meta: &sled::Tree,
        key: &str,
    ) -> Result<Option<T>, std::io::Error> {
        match meta.get(key).map_err(sled_to_io)? {
            None => Ok(None),
            Some(v) => common::codec::decode(&v)
                .map(Some)
                .map_err(std::io::Error::other),
        }
    }

    /// Sends what this store appends as leader to the followers at once
    /// (see [`crate::network::early`]).
    pub fn set_early_replication(&mut self, early: EarlyReplication) {
        self.early = Some(early);
    }

    /// The `prev_log_id` of a batch starting at `first`: `Some(None)` for
    /// a batch at the log's very start, `None` when the entry before is not
    /// held (purged: no early replication for this batch).
    fn prev_of(&self, first: u64) -> Option<Option<LogId<NodeId>>> {
        match first {
            0 => Some(None),
            _ => self.log.log_id_at(first - 1).map(Some),
        }
    }

    /// See [`crate::store::Stores::with_unbounded_purges`].
    pub fn with_unbounded_purges(mut self) -> LogStore {
        self.purge_bound = None;
        self
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, std::io::Error> {
        Self::meta_value(&self.meta, key)
    }

    fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), std::io::Error> {
        let bytes = common::codec::encode(value).map_err(std::io::Error::other)?;
        self.meta.insert(key, bytes).map_err(sled_to_io)?;
        Ok(())
    }

    fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, std::io::Error> {
        common::codec::decode(bytes).map_err(std::io::Error::other)
    }

    /// True when this node has never voted nor logged anything: the only
    /// state in which it may initialize a cluster.
    pub fn is_pristine(&self) -> std::io::Result<bool> {
        let vote: Option<Vote<NodeId>> = self.get_meta(VOTE_KEY)?;
        let purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED_KEY)?;
        Ok(vote.is_none() && purged.is_none() && self.log.is_empty())
    }
}

/// How long a purge waits for the snapshot that covers it to be synced.
const PURGE_WAITS_FOR_SNAPSHOT: std::time::Duration = std::time::Duration::from_secs(60);

impl LogStore {
    /// Waits until the synced snapshot covers `upto` (no wait without a
    /// bound); an error if it does not within [`PURGE_WAITS_FOR_SNAPSHOT`].
    async fn wait_purgeable(&self, upto: LogId<NodeId>) -> Result<(), std::io::Error> {
        let Some(snapshots) = &self.purge_bound else {
            return Ok(());
        };
        if snapshots
            .durable_upto()
            .is_some_and(|d| d.index >= upto.index)
        {
            return Ok(());
        }
        tracing::info!(asked = %upto, covered = ?snapshots.durable_upto(), "purge waits for the snapshot that covers it");
        tokio::time::timeout(
            PURGE_WAITS_FOR_SNAPSHOT,
            snapshots.durable_covers(upto.index),
        )
        .await
        .map_err(|_| {
            std::io::Error::other(format!(
                "no synced snapshot covers {upto} after {PURGE_WAITS_FOR_SNAPSHOT:?}; not purging"
            ))
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => i - 1,
            Bound::Unbounded => u64::MAX,
        };
        if start > end {
            return Ok(Vec::new());
        }
        self.log
            .read(start, end)
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self
            .get_meta(LAST_PURGED_KEY)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let last_log_id = self.log.last_log_id().or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let write = |e: std::io::Error| StorageIOError::write_vote(&e);
        self.put_meta(VOTE_KEY, vote).map_err(write)?;
        self.db.sync_async().await.map_err(write)?;
        fail::fail_point!("log::after-vote-save-before-reply");
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self
            .get_meta(VOTE_KEY)
            .map_err(|e| StorageIOError::read_vote(&e))?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // Not synced on its own: a committed id lost in a crash is learned
        // again from the leader (and sled's next sync, of a vote, a purge
        // or a snapshot, or its own background flush, persists it).
        self.put_meta(COMMITTED_KEY, &committed)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> = self
            .get_meta(COMMITTED_KEY)
            .map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let (files, dirs) = self
            .log
            .append(&entries)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        fail::fail_point!("log::after-append-before-fsync");
        // The callback is the acknowledgement: the syncer calls it only
        // after an fsync that covers this batch. `append` itself returns
        // now, so the next batch can be written while this one syncs.
        self.db.sync_files_then(
            files,
            dirs,
            Box::new(move |result| callback.log_io_completed(result)),
        );
        // With the sync under way, a leader sends the batch to its
        // followers, so their fsyncs overlap its own.
        if let (Some(early), Some(first)) = (&self.early, entries.first()) {
            if let Some(prev) = self.prev_of(first.log_id.index) {
                early.offer(prev, &entries);
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let write = |e: std::io::Error| StorageIOError::write_logs(&e);
        let (files, dirs) = self.log.truncate(log_id.index).map_err(write)?;
        self.db.sync_files(files, dirs).await.map_err(write)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let write = |e: std::io::Error| StorageIOError::write_logs(&e);
        self.wait_purgeable(log_id).await.map_err(write)?;
        let purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED_KEY).map_err(write)?;
        if purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        self.put_meta(LAST_PURGED_KEY, &log_id).map_err(write)?;
        self.db.sync_async().await.map_err(write)?;
        self.log.purge(log_id.index).map_err(write)?;
        fail::fail_point!("log::after-purge");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, SnapshotMeta, StoredMembership};

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// Hole: openraft purges up to an installed snapshot before the install
    /// is saved; a crash then leaves the old snapshot and a log that starts
    /// after the new one. The purge waits for the synced snapshot, and then
    /// purges all it was asked (purging less would leave a hole in the log).
    #[tokio::test]
    async fn a_purge_waits_for_the_synced_snapshot_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let db = DurableDb::open(
            &dir.path().join("sled"),
            metrics,
            std::sync::Arc::new(|_| {}),
        )
        .unwrap();
        let snapshots = SnapshotStore::open(&db).unwrap();
        let log = LogStore::open(
            db.clone(),
            db.tree("meta").unwrap(),
            Some(snapshots.clone()),
            &dir.path().join("wal"),
        )
        .unwrap();
        let entries: Vec<Entry<TypeConfig>> = (1..=10)
            .map(|i| Entry {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            })
            .collect();
        log.log.append(&entries).unwrap();
        let meta = |i| SnapshotMeta {
            last_log_id: Some(log_id(i)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s{i}"),
        };
        // A snapshot at 4 is synced; the install at 8 is not saved yet.
        snapshots.save(&meta(4), b"at 4").await.unwrap();
        let mut purging = log.clone();
        let purge = tokio::spawn(async move { purging.purge(log_id(8)).await });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!purge.is_finished(), "the purge went ahead of the snapshot");
        let mut reader = log.clone();
        let kept = reader.try_get_log_entries(0..=10).await.unwrap();
        assert_eq!(kept.first().map(|e| e.log_id.index), Some(1));
        // The install's save lands: the purge goes all the way.
        snapshots.save(&meta(8), b"at 8").await.unwrap();
        purge.await.unwrap().unwrap();
        let kept = reader.try_get_log_entries(0..=10).await.unwrap();
        assert_eq!(kept.first().map(|e| e.log_id.index), Some(9));
        assert_eq!(
            reader.get_log_state().await.unwrap().last_purged_log_id,
            Some(log_id(8))
        );
    }

    /// A data dir written when the log was a sled tree: opening it moves
    /// the entries above the purged id into segment files and empties the
    /// tree; the log reads the same.
    #[tokio::test]
    async fn a_log_in_sled_moves_into_segment_files() {
        let dir = tempfile::tempdir().unwrap();
        let open_db = || {
            DurableDb::open(
                &dir.path().join("sled"),
                std::sync::Arc::new(crate::metrics::Metrics::new()),
                std::sync::Arc::new(|_| {}),
            )
            .unwrap()
        };
        {
            let db = open_db();
            let legacy = db.tree("log").unwrap();
            for i in 1..=20u64 {
                let entry: Entry<TypeConfig> = Entry {
                    log_id: log_id(i),
                    payload: EntryPayload::Blank,
                };
                legacy
                    .insert(i.to_be_bytes(), common::codec::encode(&entry).unwrap())
                    .unwrap();
            }
            let meta = db.tree("meta").unwrap();
            meta.insert(LAST_PURGED_KEY, common::codec::encode(&log_id(5)).unwrap())
                .unwrap();
            db.sync().unwrap();
        }
        for _ in 0..2 {
            let db = open_db();
            let mut log = LogStore::open(
                db.clone(),
                db.tree("meta").unwrap(),
                None,
                &dir.path().join("wal"),
            )
            .unwrap();
            assert!(
                db.tree("log").unwrap().is_empty(),
                "the sled tree is emptied"
            );
            let kept = log.try_get_log_entries(0..=100).await.unwrap();
            let indexes: Vec<u64> = kept.iter().map(|e| e.log_id.index).collect();
            assert_eq!(indexes, (6..=20).collect::<Vec<_>>());
            let state = log.get_log_state().await.unwrap();
            assert_eq!(state.last_log_id, Some(log_id(20)));
            assert_eq!(state.last_purged_log_id, Some(log_id(5)));
        }
    }
}
