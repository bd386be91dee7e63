//! The Raft log, vote and committed id in sled.
//!
//! Ordering rules (each is what makes a Raft promise true):
//! - `append`: write the batch, then hand the callback to the syncer, which
//!   calls it only after an fsync that covers the batch; openraft
//!   acknowledges the entries to the leader only from that callback.
//! - `save_vote`: fsync before returning; openraft sends the vote after.
//! - `purge`: record the new last-purged id before deleting entries, so a
//!   crash in between never leaves a log that looks shorter than it is.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::durable::{sled_to_io, DurableDb};
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
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub fn open(db: DurableDb, meta: sled::Tree) -> std::io::Result<Self> {
        let log = db.tree("log")?;
        Ok(Self { db, log, meta })
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = common::codec::encode(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&sled_to_io(e)))?;
        // The callback is the acknowledgement: the syncer calls it only
        // after an fsync that covers this batch. `append` itself returns
        // now, so the next batch can be written while this one syncs.
        self.db
            .sync_then(Box::new(move |result| callback.log_io_completed(result)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let write = |e: std::io::Error| StorageIOError::write_logs(&e);
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
        Ok(())
    }
}
