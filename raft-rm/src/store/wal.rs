//! The Raft log's entries, in append-only segment files.
//!
//! The log was a sled tree, and every append paid sled's flush (a write and
//! a `sync_file_range` on sled's IO threads) plus the `fdatasync` of sled's
//! data file: about 0.46 ms per durability point here, where a plain write
//! and `fdatasync` of a file takes about 0.2 ms, and sled's IO threads took
//! about a quarter of a leader's CPU samples. Entries are written once,
//! read back soon by replication, and dropped from the front (purge) or the
//! back (truncate, rare): a log of files fits that exactly. The vote, the
//! committed and purged ids and the snapshots stay in sled.
//!
//! Layout: `wal/<first index, 20 digits>.seg` files, each a run of records
//! `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`, the
//! payload one bincode-encoded entry, indexes increasing within and across
//! segments (consecutive as openraft appends them), each segment named for
//! its first. A new segment starts when the current one passes
//! [`SEGMENT_BYTES`].
//!
//! Durability: an append writes its records with one `pwrite` and hands the
//! written files (and the directory, after a new segment) to the store's
//! syncer, which acknowledges only after `fdatasync`. Recovery reads every
//! segment: a record cut short or failing its checksum ends the log, and
//! the bytes from it on are cut off, since nothing after the first record
//! not yet synced was acknowledged. But a bad record followed by a later
//! segment that starts well is corruption of acknowledged entries, and the
//! store refuses to open rather than drop them. Segments wholly at or
//! below the last purged id are deleted on open (a purge's deletions may
//! not all have reached the disk).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Error, ErrorKind, Result};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::{Entry, LogId};

use crate::{NodeId, TypeConfig};

/// A segment past this size is closed; the next append starts a new one.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Record header: payload length and checksum.
const HEADER: usize = 8;

/// One entry's place.
#[derive(Clone, Copy, Debug)]
struct Pos {
    /// The first index of its segment (the segment's key).
    segment: u64,
    offset: u64,
    len: u32,
    log_id: LogId<NodeId>,
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    len: u64,
}

struct State {
    dir: Arc<File>,
    path: PathBuf,
    segments: BTreeMap<u64, Segment>,
    entries: BTreeMap<u64, Pos>,
}

/// What a sync must cover before a change counts: files written (for
/// `fdatasync`) and directories whose entries changed (for `fsync`).
pub type ToSync = (Vec<Arc<File>>, Vec<Arc<File>>);

/// The log's segment files; clones share them.
#[derive(Clone)]
pub struct Wal {
    state: Arc<Mutex<State>>,
}

fn corrupt(msg: String) -> Error {
    Error::new(ErrorKind::InvalidData, msg)
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// What a segment's bytes hold: its valid records (offset, length, id),
/// and where they end.
struct Scan {
    records: Vec<(u64, u32, LogId<NodeId>)>,
    valid_len: u64,
    /// A record was cut short or failed its checksum at `valid_len`.
    torn: bool,
}

fn scan(bytes: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut at = 0usize;
    let torn = loop {
        if at == bytes.len() {
            break false;
        }
        let Some(header) = bytes.get(at..at + HEADER) else {
            break true;
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break true;
        };
        if len == 0 || crc32fast::hash(payload) != crc {
            break true;
        }
        let Ok(entry) = common::codec::decode::<Entry<TypeConfig>>(payload) else {
            break true;
        };
        records.push(((at + HEADER) as u64, len as u32, entry.log_id));
        at += HEADER + len;
    };
    Scan {
        records,
        valid_len: at as u64,
        torn,
    }
}

impl Wal {
    /// Opens (creating) the log in `path`. Entries at or below
    /// `last_purged` are dropped, and segments holding nothing else are
    /// deleted.
    pub fn open(path: &Path, last_purged: Option<u64>) -> Result<Wal> {
        std::fs::create_dir_all(path)?;
        let dir = Arc::new(File::open(path)?);
        // The directory's own entry must be durable before any segment in
        // it can be (a new data dir, or a log moved out of sled).
        dir.sync_all()?;
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
        let mut firsts = Vec::new();
        for item in std::fs::read_dir(path)? {
            let name = item?.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut state = State {
            dir,
            path: path.to_path_buf(),
            segments: BTreeMap::new(),
            entries: BTreeMap::new(),
        };
        let mut ended_at: Option<(u64, u64)> = None;
        let mut removed_any = false;
        for first in firsts.iter().copied() {
            let seg_path = path.join(segment_name(first));
            let bytes = std::fs::read(&seg_path)?;
            let scan = scan(&bytes);
            if let Some((seg, at)) = ended_at {
                if !scan.records.is_empty() {
                    return Err(corrupt(format!(
                        "log segment {seg} is damaged at byte {at} but segment {first} after it holds entries: acknowledged entries may be lost; refusing to open (restore this node's data dir from a replica)"
                    )));
                }
                // Written after the cut and never acknowledged. The removal
                // is made durable below: back after a crash, it would
                // follow a cut log with a gap.
                std::fs::remove_file(&seg_path)?;
                removed_any = true;
                continue;
            }
            for (i, &(offset, len, log_id)) in scan.records.iter().enumerate() {
                let index = log_id.index;
                if i == 0 && index != first {
                    return Err(corrupt(format!(
                        "log segment {first} starts with entry {index}"
                    )));
                }
                // Purged entries whose segment's deletion did not reach
                // the disk: dropped, not checked.
                if last_purged.is_some_and(|p| index <= p) {
                    continue;
                }
                // Indexes only grow (openraft appends them consecutively;
                // its storage suite also appends with gaps).
                if let Some(last) = state.entries.keys().next_back() {
                    if index <= *last {
                        return Err(corrupt(format!(
                            "log segment {first}: entry {index} after entry {last}"
                        )));
                    }
                }
                state.entries.insert(
                    index,
                    Pos {
                        segment: first,
                        offset,
                        len,
                        log_id,
                    },
                );
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&seg_path)?;
            if scan.torn {
                tracing::warn!(
                    segment = first,
                    at = scan.valid_len,
                    "log segment ends in a torn record; cutting it off"
                );
                file.set_len(scan.valid_len)?;
                file.sync_all()?;
                ended_at = Some((first, scan.valid_len));
            }
            state.segments.insert(
                first,
                Segment {
                    file: Arc::new(file),
                    path: seg_path,
                    len: scan.valid_len,
                },
            );
        }
        if removed_any {
            state.dir.sync_all()?;
        }
        let wal = Wal {
            state: Arc::new(Mutex::new(state)),
        };
        if let Some(purged) = last_purged {
            wal.purge(purged)?;
        }
        Ok(wal)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// The last entry's id.
    pub fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.lock().entries.values().next_back().map(|p| p.log_id)
    }

    /// The id of the entry at `index`, if held.
    pub fn log_id_at(&self, index: u64) -> Option<LogId<NodeId>> {
        self.lock().entries.get(&index).map(|p| p.log_id)
    }

    /// Writes `entries` (indexes increasing, after the last entry held)
    /// and answers what a sync must cover: the segment written and, if a
    /// segment was created or removed, the directory.
    pub fn append(&self, entries: &[Entry<TypeConfig>]) -> Result<ToSync> {
        let Some(first) = entries.first() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut state = self.lock();
        if let Some(last) = state.entries.keys().next_back() {
            if first.log_id.index <= *last {
                return Err(Error::other(format!(
                    "append of entry {} after entry {last} (truncate first)",
                    first.log_id.index
                )));
            }
        }
        // An empty last segment named for another index (left by a
        // truncate) is replaced: a segment's name is its first entry's
        // index.
        let mut dir_changed = false;
        if let Some((&key, s)) = state.segments.iter().next_back() {
            if s.len == 0 && key != first.log_id.index {
                let s = state.segments.remove(&key).expect("the segment");
                std::fs::remove_file(&s.path)?;
                dir_changed = true;
            }
        }
        let needs_new = match state.segments.values().next_back() {
            None => true,
            Some(s) => s.len >= SEGMENT_BYTES,
        };
        if needs_new {
            dir_changed = true;
            let seg_path = state.path.join(segment_name(first.log_id.index));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&seg_path)?;
            state.segments.insert(
                first.log_id.index,
                Segment {
                    file: Arc::new(file),
                    path: seg_path,
                    len: 0,
                },
            );
        }
        let (&key, segment) = state.segments.iter().next_back().expect("a segment");
        let base = segment.len;
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 && entry.log_id.index <= entries[i - 1].log_id.index {
                return Err(Error::other("entries to append are not in index order"));
            }
            let payload = common::codec::encode(entry).map_err(Error::other)?;
            let len =
                u32::try_from(payload.len()).map_err(|_| Error::other("a log entry over 4 GiB"))?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            positions.push((base + (buf.len() as u64), len, entry.log_id));
            buf.extend_from_slice(&payload);
        }
        segment.file.write_all_at(&buf, base)?;
        let file = segment.file.clone();
        let segment = state.segments.get_mut(&key).expect("the segment");
        segment.len = base + buf.len() as u64;
        for (offset, len, log_id) in positions {
            state.entries.insert(
                log_id.index,
                Pos {
                    segment: key,
                    offset,
                    len,
                    log_id,
                },
            );
        }
        let dirs = if dir_changed {
            vec![state.dir.clone()]
        } else {
            Vec::new()
        };
        Ok((vec![file], dirs))
    }

    /// The entries with indexes in `from..=to` (as many as are held).
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<Entry<TypeConfig>>> {
        let places: Vec<(Arc<File>, Pos)> = {
            let state = self.lock();
            let mut places = Vec::new();
            for p in state.entries.range(from..=to).map(|(_, p)| *p) {
                let segment = state.segments.get(&p.segment).ok_or_else(|| {
                    corrupt(format!("log entry {} has no segment", p.log_id.index))
                })?;
                places.push((segment.file.clone(), p));
            }
            places
        };
        let mut out = Vec::with_capacity(places.len());
        let mut buf = Vec::new();
        for (file, pos) in places {
            buf.resize(pos.len as usize, 0);
            file.read_exact_at(&mut buf, pos.offset)?;
            let entry: Entry<TypeConfig> = common::codec::decode(&buf)
                .map_err(|e| corrupt(format!("log entry {}: {e}", pos.log_id.index)))?;
            out.push(entry);
        }
        Ok(out)
    }

    /// Drops the entries from `index` on (they are cut off the files) and
    /// answers what a sync must cover before the cut counts.
    pub fn truncate(&self, index: u64) -> Result<ToSync> {
        let mut state = self.lock();
        let Some(pos) = state.entries.range(index..).next().map(|(_, p)| *p) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let later: Vec<u64> = state
            .segments
            .range(pos.segment + 1..)
            .map(|(k, _)| *k)
            .collect();
        let dirs = if later.is_empty() {
            Vec::new()
        } else {
            vec![state.dir.clone()]
        };
        for key in later {
            if let Some(s) = state.segments.remove(&key) {
                std::fs::remove_file(&s.path)?;
            }
        }
        let cut = pos.offset - HEADER as u64;
        let segment = state
            .segments
            .get_mut(&pos.segment)
            .expect("the entry's segment");
        segment.file.set_len(cut)?;
        segment.len = cut;
        let file = segment.file.clone();
        state.entries.split_off(&index);
        Ok((vec![file], dirs))
    }

    /// Forgets the entries at or below `index` and deletes the segments
    /// that held nothing else. Not synced: a segment that comes back after
    /// a crash is dropped again by [`Wal::open`], below the recorded
    /// purged id.
    pub fn purge(&self, index: u64) -> Result<()> {
        let mut state = self.lock();
        let kept = state.entries.split_off(&(index + 1));
        state.entries = kept;
        let keys: Vec<u64> = state.segments.keys().copied().collect();
        for (i, key) in keys.iter().enumerate() {
            // A segment is wholly purged when the next one starts at or
            // below `index + 1`, or when no entry is left at all in it.
            let whole = match keys.get(i + 1) {
                Some(next) => *next <= index + 1,
                None => state.entries.is_empty() && state.segments[key].len > 0,
            };
            if !whole {
                break;
            }
            if let Some(s) = state.segments.remove(key) {
                std::fs::remove_file(&s.path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(w: &Wal, from: u64, to: u64) -> Vec<u64> {
        w.read(from, to)
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[test]
    fn appends_read_back_after_reopen_and_truncate_cuts_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path(), None).unwrap();
        assert!(w.is_empty());
        let batch: Vec<_> = (1..=10).map(|i| entry(1, i)).collect();
        w.append(&batch).unwrap();
        assert_eq!(indexes(&w, 3, 5), vec![3, 4, 5]);
        assert!(
            w.append(&[entry(1, 10)]).is_err(),
            "a rewrite without truncate is refused"
        );
        w.truncate(8).unwrap();
        w.append(&[entry(2, 8)]).unwrap();
        drop(w);
        let w = Wal::open(dir.path(), None).unwrap();
        assert_eq!(indexes(&w, 0, 100), (1..=8).collect::<Vec<_>>());
        assert_eq!(w.last_log_id().unwrap().leader_id.term, 2);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_later_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path(), None).unwrap();
        w.append(&(1..=5).map(|i| entry(1, i)).collect::<Vec<_>>())
            .unwrap();
        drop(w);
        let seg = dir.path().join(segment_name(1));
        let len = std::fs::metadata(&seg).unwrap().len();
        // A crash in the middle of the last record's write.
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 3).unwrap();
        let w = Wal::open(dir.path(), None).unwrap();
        assert_eq!(indexes(&w, 0, 100), vec![1, 2, 3, 4]);
        w.append(&[entry(1, 5)]).unwrap();
        drop(w);
        let w = Wal::open(dir.path(), None).unwrap();
        assert_eq!(indexes(&w, 0, 100), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn damage_before_a_later_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path(), None).unwrap();
        w.append(&[entry(1, 1), entry(1, 2)]).unwrap();
        // A second segment, as rotation would make it.
        {
            let mut s = w.lock();
            for seg in s.segments.values_mut() {
                seg.len = SEGMENT_BYTES;
            }
        }
        w.append(&[entry(1, 3)]).unwrap();
        drop(w);
        let seg = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff; // bit rot in entry 2
        std::fs::write(&seg, bytes).unwrap();
        let e = Wal::open(dir.path(), None).err().expect("refused");
        assert!(e.to_string().contains("refusing to open"), "{e}");
    }

    #[test]
    fn purge_drops_whole_segments_and_reopen_drops_what_came_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path(), None).unwrap();
        for first in [1u64, 11, 21] {
            {
                let mut s = w.lock();
                for seg in s.segments.values_mut() {
                    seg.len = seg.len.max(SEGMENT_BYTES);
                }
            }
            let batch: Vec<_> = (first..first + 10).map(|i| entry(1, i)).collect();
            w.append(&batch).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        w.purge(15).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "segment 1 gone"
        );
        assert_eq!(indexes(&w, 0, 100), (16..=30).collect::<Vec<_>>());
        drop(w);
        let w = Wal::open(dir.path(), Some(15)).unwrap();
        assert_eq!(indexes(&w, 0, 100), (16..=30).collect::<Vec<_>>());
        assert_eq!(w.log_id_at(15), None);
        w.purge(30).unwrap();
        assert!(w.is_empty());
        w.append(&[entry(1, 31)]).unwrap();
        assert_eq!(indexes(&w, 0, 100), vec![31]);
    }
}
