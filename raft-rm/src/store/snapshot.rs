//! The snapshot format and where snapshots live.
//!
//! On the wire and on disk a snapshot is:
//!
//! ```text
//! magic "RRMSNAP\0" (8) | version u32 LE | payload length u64 LE | crc32 u32 LE | payload
//! ```
//!
//! where the payload is the codec encoding of [`SnapshotPayload`]. A reader
//! checks all four before it trusts a byte, so a truncated transfer or a
//! flipped bit is an error, never a silently different state.
//!
//! In sled, the snapshot tree holds the bytes in 64 KiB chunks under `data/NNNNNNNN`
//! plus a `meta` record; each write replaces the previous snapshot in one
//! atomic batch.
//!
//! Rules (openraft 0.9 builds snapshots in a task of their own, concurrently
//! with installs, and purges the log as soon as it has asked for an
//! install):
//! - saves run one at a time, and an older snapshot never replaces a newer
//!   one: a build that copied the state before an install finishes after
//!   it, and the log the install covers may already be purged;
//! - [`SnapshotStore::durable_upto`] is what a synced save covers: the log
//!   store purges no further (see `store::log`);
//! - chunks no record names are dropped at open.

use std::sync::Arc;

use openraft::{LogId, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::machine::State;
use crate::store::durable::{sled_to_io, DurableDb};
use crate::{Node, NodeId};

const MAGIC: &[u8; 8] = b"RRMSNAP\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 4;
/// Small enough that a sled leaf full of chunks stays under the blob
/// threshold (see `store::durable`).
const CHUNK_BYTES: usize = 64 * 1024;

/// Everything a replica needs to become the state at `last_applied`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPayload {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Node>,
    pub state: State,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFormatError {
    #[error("snapshot is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("not a snapshot (bad magic)")]
    Magic,
    #[error("snapshot version {0} is not supported (this build reads {VERSION})")]
    Version(u32),
    #[error("snapshot payload is {actual} bytes but its header says {expected}")]
    Length { expected: u64, actual: u64 },
    #[error("snapshot checksum mismatch: header {expected:08x}, payload {actual:08x}")]
    Checksum { expected: u32, actual: u32 },
    #[error(transparent)]
    Codec(#[from] common::codec::CodecError),
}

pub fn encode(payload: &SnapshotPayload) -> Result<Vec<u8>, SnapshotFormatError> {
    let body = common::codec::encode(payload)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<SnapshotPayload, SnapshotFormatError> {
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotFormatError::Short(bytes.len()));
    }
    let (header, body) = bytes.split_at(HEADER_LEN);
    if &header[0..8] != MAGIC {
        return Err(SnapshotFormatError::Magic);
    }
    let word = |r: std::ops::Range<usize>| header[r].try_into().expect("fixed header slice");
    let version = u32::from_le_bytes(word(8..12));
    if version != VERSION {
        return Err(SnapshotFormatError::Version(version));
    }
    let expected = u64::from_le_bytes(header[12..20].try_into().expect("fixed header slice"));
    if expected != body.len() as u64 {
        return Err(SnapshotFormatError::Length {
            expected,
            actual: body.len() as u64,
        });
    }
    let crc = u32::from_le_bytes(word(20..24));
    let actual = crc32fast::hash(body);
    if crc != actual {
        return Err(SnapshotFormatError::Checksum {
            expected: crc,
            actual,
        });
    }
    Ok(common::codec::decode(body)?)
}

/// A stored snapshot: its meta and its encoded bytes.
pub type SnapshotBytes = (SnapshotMeta<NodeId, Node>, Vec<u8>);

/// The latest snapshot, kept in its own sled tree.
#[derive(Clone)]
pub struct SnapshotStore {
    db: DurableDb,
    tree: sled::Tree,
    /// Held across a whole save: check, write, sync.
    saving: Arc<tokio::sync::Mutex<()>>,
    /// The log id the synced snapshot covers.
    durable: Arc<tokio::sync::watch::Sender<Option<LogId<NodeId>>>>,
}

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Replaced,
    /// The stored snapshot is as new or newer; it stays.
    KeptNewer,
}

impl SnapshotStore {
    pub fn open(db: &DurableDb) -> std::io::Result<Self> {
        let store = Self {
            db: db.clone(),
            tree: db.tree("snapshot")?,
            saving: Arc::default(),
            durable: Arc::new(tokio::sync::watch::channel(None).0),
        };
        let record = store.record()?;
        store.drop_stray_chunks(record.as_ref().map_or(0, |r| r.chunks))?;
        store
            .durable
            .send_replace(record.and_then(|r| r.meta.last_log_id));
        Ok(store)
    }

    /// The last log id the stored, synced snapshot covers.
    pub fn durable_upto(&self) -> Option<LogId<NodeId>> {
        *self.durable.borrow()
    }

    /// Waits until the synced snapshot covers `index`.
    pub async fn durable_covers(&self, index: u64) {
        let mut rx = self.durable.subscribe();
        let _ = rx.wait_for(|d| d.is_some_and(|d| d.index >= index)).await;
    }

    /// Removes chunks at or past `chunks` (the record's count).
    fn drop_stray_chunks(&self, chunks: usize) -> std::io::Result<()> {
        let mut batch = sled::Batch::default();
        let mut strays = 0;
        for item in self.tree.scan_prefix(b"data/") {
            let (k, _) = item.map_err(sled_to_io)?;
            let index = std::str::from_utf8(&k[5..])
                .ok()
                .and_then(|n| n.parse::<usize>().ok());
            if index.is_none_or(|i| i >= chunks) {
                batch.remove(k);
                strays += 1;
            }
        }
        if strays > 0 {
            tracing::warn!(strays, "dropping snapshot chunks no record names");
            self.tree.apply_batch(batch).map_err(sled_to_io)?;
            self.db.sync()?;
        }
        Ok(())
    }

    /// Replaces the stored snapshot atomically and durably, unless the
    /// stored one is at least as new.
    pub async fn save(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        bytes: &[u8],
    ) -> std::io::Result<Saved> {
        let _one_at_a_time = self.saving.lock().await;
        let stored = self.record()?;
        if let Some(stored) = &stored {
            if stored.meta.last_log_id >= meta.last_log_id {
                return Ok(Saved::KeptNewer);
            }
        }
        let old_chunks = stored.map_or(0, |r| r.chunks);
        let mut batch = sled::Batch::default();
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            batch.insert(chunk_key(i), *chunk);
        }
        for i in chunks.len()..old_chunks {
            batch.remove(chunk_key(i));
        }
        let record = StoredSnapshot {
            meta: meta.clone(),
            chunks: chunks.len(),
            len: bytes.len() as u64,
        };
        batch.insert(
            "meta",
            common::codec::encode(&record).map_err(std::io::Error::other)?,
        );
        self.tree.apply_batch(batch).map_err(sled_to_io)?;
        fail::fail_point!("snapshot::mid-save");
        self.db.sync_async().await?;
        self.durable.send_replace(meta.last_log_id);
        Ok(Saved::Replaced)
    }

    pub fn load(&self) -> std::io::Result<Option<SnapshotBytes>> {
        let Some(record) = self.record()? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(record.len as usize);
        for i in 0..record.chunks {
            let chunk = self
                .tree
                .get(chunk_key(i))
                .map_err(sled_to_io)?
                .ok_or_else(|| {
                    corrupt(format!("snapshot chunk {i} of {} missing", record.chunks))
                })?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != record.len {
            return Err(corrupt(format!(
                "stored snapshot is {} bytes, expected {}",
                bytes.len(),
                record.len
            )));
        }
        Ok(Some((record.meta, bytes)))
    }

    fn record(&self) -> std::io::Result<Option<StoredSnapshot>> {
        match self.tree.get("meta").map_err(sled_to_io)? {
            None => Ok(None),
            Some(v) => common::codec::decode(&v)
                .map(Some)
                .map_err(|e| corrupt(format!("snapshot record: {e}"))),
        }
    }

    /// How many chunk keys the tree holds (tests).
    #[cfg(test)]
    fn chunk_keys(&self) -> std::io::Result<usize> {
        Ok(self.tree.scan_prefix(b"data/").count())
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    chunks: usize,
    len: u64,
}

/// Stored data that cannot be what was written (`InvalidData`: the store
/// refuses to start on it).
fn corrupt(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn chunk_key(i: usize) -> Vec<u8> {
    format!("data/{i:08}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, DurableDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = DurableDb::open(
            &dir.path().join("sled"),
            std::sync::Arc::new(crate::metrics::Metrics::new()),
            std::sync::Arc::new(|_| {}),
        )
        .unwrap();
        (dir, db)
    }

    fn meta_at(index: u64) -> SnapshotMeta<NodeId, Node> {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s{index}"),
        }
    }

    /// Hole: a build that copied the state at 5 finishes after an install
    /// at 10; the log up to 10 is already purged, so the older snapshot
    /// must not replace the newer one.
    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let (_dir, db) = db();
        let store = SnapshotStore::open(&db).unwrap();
        let big = vec![7u8; CHUNK_BYTES * 3 + 5];
        assert_eq!(
            store.save(&meta_at(10), &big).await.unwrap(),
            Saved::Replaced
        );
        let kept = store.save(&meta_at(5), b"older").await.unwrap();
        assert_eq!(kept, Saved::KeptNewer);
        let (meta, bytes) = store.load().unwrap().unwrap();
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(10));
        assert_eq!(bytes, big);
        assert_eq!(store.durable_upto().map(|l| l.index), Some(10));
    }

    /// Saves racing each other (a build and an install) leave one whole
    /// snapshot and no chunk of another behind.
    #[tokio::test]
    async fn racing_saves_leave_one_whole_snapshot_and_no_stray_chunks() {
        let (_dir, db) = db();
        let store = SnapshotStore::open(&db).unwrap();
        let saves = (1..=8u64).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let bytes = vec![i as u8; CHUNK_BYTES * (9 - i as usize) + 1];
                store.save(&meta_at(i), &bytes).await.unwrap();
            })
        });
        for s in saves.collect::<Vec<_>>() {
            s.await.unwrap();
        }
        let (meta, bytes) = store.load().unwrap().unwrap();
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(8));
        assert_eq!(bytes, vec![8u8; CHUNK_BYTES + 1]);
        assert_eq!(store.chunk_keys().unwrap(), 2, "chunks beyond the record");
    }

    /// Chunks no record names (left by an older build of this code) are
    /// dropped when the store opens.
    #[tokio::test]
    async fn stray_chunks_are_dropped_at_open() {
        let (_dir, db) = db();
        let store = SnapshotStore::open(&db).unwrap();
        store.save(&meta_at(3), b"abc").await.unwrap();
        store.tree.insert(chunk_key(5), b"stray".to_vec()).unwrap();
        let reopened = SnapshotStore::open(&db).unwrap();
        assert_eq!(reopened.chunk_keys().unwrap(), 1);
        assert_eq!(reopened.load().unwrap().unwrap().1, b"abc");
    }

    fn sample() -> SnapshotPayload {
        let mut p = SnapshotPayload::default();
        p.state.log_time_ms = 42;
        p.state.canaries.insert("c".into(), Default::default());
        p
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_corruption_is_detected() {
        let bytes = encode(&sample()).unwrap();
        assert!(matches!(
            decode(&bytes[..10]),
            Err(SnapshotFormatError::Short(10))
        ));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(SnapshotFormatError::Length { .. })
        ));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(decode(&bad), Err(SnapshotFormatError::Magic)));
        let mut bad = bytes.clone();
        bad[8] = 9;
        assert!(matches!(decode(&bad), Err(SnapshotFormatError::Version(_))));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert!(matches!(
            decode(&bad),
            Err(SnapshotFormatError::Checksum { .. })
        ));
    }

    /// A state reached by any log (every kind of command, generated)
    /// survives the snapshot format.
    #[test]
    fn any_state_round_trips_through_the_snapshot_format() {
        use proptest::prelude::*;
        proptest!(|(log in rm_machine::arbitrary::log(120))| {
            let mut p = SnapshotPayload::default();
            for (i, r) in log.iter().enumerate() {
                p.state.apply(i as u64 + 1, r);
            }
            let back = decode(&encode(&p).unwrap()).unwrap();
            prop_assert_eq!(back, p);
        });
    }

    /// Snapshot at any prefix, restore from its bytes, continue: the same
    /// answers and the same final state as never having snapshotted.
    #[test]
    fn snapshot_at_any_prefix_then_continue_equals_no_snapshot() {
        use proptest::prelude::*;
        proptest!(|(log in rm_machine::arbitrary::log(120), at in 0usize..120)| {
            let at = at.min(log.len());
            let mut straight = State::default();
            let answers: Vec<_> = log
                .iter()
                .enumerate()
                .map(|(i, r)| straight.apply(i as u64 + 1, r))
                .collect();
            let mut p = SnapshotPayload::default();
            for (i, r) in log[..at].iter().enumerate() {
                p.state.apply(i as u64 + 1, r);
            }
            let mut restored = decode(&encode(&p).unwrap()).unwrap().state;
            for (i, r) in log[at..].iter().enumerate() {
                let index = at + i;
                prop_assert_eq!(&restored.apply(index as u64 + 1, r), &answers[index]);
            }
            prop_assert_eq!(restored, straight);
        });
    }

    /// Every command must survive the codec inside a real log entry: bincode
    /// cannot decode serde's internally tagged enums, so this guards the types.
    #[test]
    fn commands_round_trip_through_the_codec_in_log_entries() {
        use openraft::{Entry, EntryPayload, LogId};
        let commands = [
            crate::machine::Command::Canary {
                client: "c".into(),
                seq: 3,
            },
            crate::machine::Command::Tick,
        ];
        for command in commands {
            let entry: Entry<crate::TypeConfig> = Entry {
                log_id: LogId::new(openraft::CommittedLeaderId::new(2, 1), 7),
                payload: EntryPayload::Normal(crate::machine::Request {
                    leader_time_ms: 5,
                    command,
                }),
            };
            let back: Entry<crate::TypeConfig> =
                common::codec::decode(&common::codec::encode(&entry).unwrap()).unwrap();
            assert_eq!(format!("{back:?}"), format!("{entry:?}"));
        }
        let responses = [
            crate::machine::Response::None,
            crate::machine::Response::Canary(crate::machine::CanaryOutcome {
                applied: true,
                count: 1,
                last_seq: 1,
                last_index: 1,
            }),
        ];
        for r in responses {
            assert_eq!(
                common::codec::decode::<crate::machine::Response>(
                    &common::codec::encode(&r).unwrap()
                )
                .unwrap(),
                r
            );
        }
    }
}
