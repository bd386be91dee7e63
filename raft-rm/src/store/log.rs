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
use crate::{NodeId, TypeConfig};

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const LAST_PURGED_KEY: &str = "last_purged";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Clone)]
pub struct LogStore {
    db: DurableDb,
    log: sled::Tree,
    meta: sled::Tree,
    /// Purges stop at what this store's synced snapshot covers (`None`
    /// only for openraft's storage suite, which purges without snapshots).
    purge_bound: Option<SnapshotStore>,
    /// Sends a leader's new entries to the followers while they sync
    /// (`None` in tests of the store alone).
    early: Option<EarlyReplication>,
    /// The last entry this store appended, if nothing truncated since:
    /// the `prev_log_id` of the next batch, without a read.
    last_appended: Option<LogId<NodeId>>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub fn open(
        db: DurableDb,
        meta: sled::Tree,
        purge_bound: Option<SnapshotStore>,
    ) -> std::io::Result<Self> {
        let log = db.tree("log")?;
        Ok(Self {
            db,
            log,
            meta,
            purge_bound,
            early: None,
            last_appended: None,
        })
    }

    /// Sends what this store appends as leader to the followers at once
    /// (see [`crate::network::early`]).
    pub fn set_early_replication(&mut self, early: EarlyReplication) {
        self.early = Some(early);
    }

    /// The id of the entry at `index`, if the log holds it.
    fn log_id_at(&self, index: u64) -> Result<Option<LogId<NodeId>>, std::io::Error> {
        match self.log.get(index_key(index)).map_err(sled_to_io)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(Self::decode_entry(&bytes)?.log_id)),
        }
    }

    /// The `prev_log_id` of a batch starting at `first`: `None` is a batch
    /// at the log's very start; an error or an entry not held (purged) is
    /// no early replication for this batch.
    fn prev_of(&self, first: u64) -> Option<Option<LogId<NodeId>>> {
        if first == 0 {
            return Some(None);
        }
        match self.last_appended {
            Some(last) if last.index + 1 == first => Some(Some(last)),
            _ => self.log_id_at(first - 1).ok().flatten().map(Some),
        }
    }

    /// See [`crate::store::Stores::with_unbounded_purges`].
    pub fn with_unbounded_purges(mut self) -> LogStore {
        self.purge_bound = None;
        self
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, std::io::Error> {
        match self.meta.get(key).map_err(sled_to_io)? {
            None => Ok(None),
            Some(v) => common::codec::decode(&v)
                .map(Some)
                .map_err(std::io::Error::other),
        }
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
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.log.range((Bound::Included(index_key(start)), end)) {
            let (_, v) = item.map_err(|e| StorageIOError::read_logs(&sled_to_io(e)))?;
            entries.push(Self::decode_entry(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self
            .get_meta(LAST_PURGED_KEY)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let last = self
            .log
            .last()
            .map_err(|e| StorageIOError::read_logs(&sled_to_io(e)))?;
        let last_log_id = match last {
            Some((_, v)) => Some(
                Self::decode_entry(&v)
                    .map_err(|e| StorageIOError::read_logs(&e))?
                    .log_id,
            ),
            None => last_purged_log_id,
        };
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
        // again from the leader; the next append's sync persists it anyway.
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
        let mut batch = sled::Batch::default();
        for entry in &entries {
            let bytes = common::codec::encode(entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&sled_to_io(e)))?;
        fail::fail_point!("log::after-append-before-fsync");
        // The callback is the acknowledgement: the syncer calls it only
        // after an fsync that covers this batch. `append` itself returns
        // now, so the next batch can be written while this one syncs.
        self.db
            .sync_then(Box::new(move |result| callback.log_io_completed(result)));
        // With the sync under way, a leader sends the batch to its
        // followers, so their fsyncs overlap its own.
        if let (Some(early), Some(first)) = (&self.early, entries.first()) {
            if early.leads(&entries) {
                if let Some(prev) = self.prev_of(first.log_id.index) {
                    early.offer(prev, &entries);
                }
            }
        }
        self.last_appended = entries.last().map(|e| e.log_id);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let write = |e: std::io::Error| StorageIOError::write_logs(&e);
        self.last_appended = None;
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (k, _) = item.map_err(|e| write(sled_to_io(e)))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| write(sled_to_io(e)))?;
        self.db.sync_async().await.map_err(write)?;
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
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (k, _) = item.map_err(|e| write(sled_to_io(e)))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| write(sled_to_io(e)))?;
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
        )
        .unwrap();
        for i in 1..=10 {
            let entry: Entry<TypeConfig> = Entry {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            };
            log.log
                .insert(index_key(i), common::codec::encode(&entry).unwrap())
                .unwrap();
        }
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
}
