//! The revoked fencing tokens, kept on disk so that a restarted worker
//! still refuses a zombie coordinator's task under a token it saw revoked.
//!
//! One small file, `revoked.json` in the data dir, replaced as a whole:
//! written to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves the old set or the new one. It
//! carries a magic, a version and a CRC-32 of its entries; a file that fails
//! them is an error at start (the operator decides), not an empty set.
//!
//! Bounded to [`MAX_REVOKED`] queries: past that the lowest tokens (the
//! oldest revocations: tokens grow with the log) are forgotten. Forgetting
//! is safe because a worker also checks a task's token against the RMs'
//! ledger before it starts it; this set only spares that round trip and
//! covers the case where the ledger cannot be asked.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Most queries whose revocation is remembered.
pub const MAX_REVOKED: usize = 10_000;

const MAGIC: &str = "worker-revoked-tokens";
const VERSION: u32 = 1;
const FILE: &str = "revoked.json";

#[derive(Debug, thiserror::Error)]
pub enum RevokedFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a revoked-token file: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    magic: String,
    version: u32,
    /// CRC-32 of `revoked` serialised as JSON.
    crc32: u32,
    /// query id -> highest revoked fencing token.
    revoked: BTreeMap<String, u64>,
}

fn crc(revoked: &BTreeMap<String, u64>) -> u32 {
    // A BTreeMap serialises in key order: the same set, the same bytes.
    crc32fast::hash(&serde_json::to_vec(revoked).unwrap_or_default())
}

/// Drops the lowest tokens until at most [`MAX_REVOKED`] remain.
pub fn bound(revoked: &mut BTreeMap<String, u64>) {
    if revoked.len() <= MAX_REVOKED {
        return;
    }
    let mut by_token: Vec<(u64, String)> = revoked.iter().map(|(q, t)| (*t, q.clone())).collect();
    by_token.sort_unstable();
    let excess = revoked.len() - MAX_REVOKED;
    for (_, q) in by_token.into_iter().take(excess) {
        revoked.remove(&q);
    }
}

/// The file, with a lock that orders writers: the last snapshot taken is
/// the last one written.
pub struct RevokedFile {
    path: PathBuf,
    dir: PathBuf,
    writing: Mutex<()>,
}

impl RevokedFile {
    /// Opens `dir/revoked.json` (creating `dir`), answering the set it
    /// holds (empty if there is no file yet).
    pub fn open(dir: &Path) -> Result<(RevokedFile, BTreeMap<String, u64>), RevokedFileError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RevokedFileError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(FILE);
        let revoked = match std::fs::read(&path) {
            Ok(bytes) => decode(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let file = RevokedFile {
            path,
            dir: dir.to_path_buf(),
            writing: Mutex::new(()),
        };
        Ok((file, revoked))
    }

    /// Replaces the file's set with `snapshot()`, taken under the write
    /// lock (so concurrent savers cannot write an older set last).
    pub fn save(
        &self,
        snapshot: impl FnOnce() -> BTreeMap<String, u64>,
    ) -> Result<(), RevokedFileError> {
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let revoked = snapshot();
        let body = OnDisk {
            magic: MAGIC.into(),
            version: VERSION,
            crc32: crc(&revoked),
            revoked,
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| RevokedFileError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RevokedFileError::Io { path, source }
        };
        // Persist the new file before it replaces the old one, and the
        // rename before anyone relies on it.
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, u64>, RevokedFileError> {
    let corrupt = |detail: String| RevokedFileError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let d: OnDisk = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if d.magic != MAGIC {
        return Err(corrupt(format!("magic {:?}", d.magic)));
    }
    if d.version != VERSION {
        return Err(corrupt(format!("unknown version {}", d.version)));
    }
    if crc(&d.revoked) != d.crc32 {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut revoked = d.revoked;
    bound(&mut revoked);
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_survives_a_reopen_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (file, empty) = RevokedFile::open(dir.path()).unwrap();
        assert!(empty.is_empty());
        let set = BTreeMap::from([("q1".to_string(), 7), ("q2".to_string(), 9)]);
        file.save(|| set.clone()).unwrap();
        let (_, again) = RevokedFile::open(dir.path()).unwrap();
        assert_eq!(again, set);
        assert!(!dir.path().join("revoked.json.tmp").exists());

        let path = dir.path().join(FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"q1\":7", "\"q1\":8")).unwrap();
        let e = RevokedFile::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("checksum"), "{e}");
        std::fs::write(&path, "{}").unwrap();
        assert!(matches!(
            RevokedFile::open(dir.path()),
            Err(RevokedFileError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_set_keeps_the_newest_revocations_within_its_bound() {
        let mut set: BTreeMap<String, u64> = (0..MAX_REVOKED as u64 + 5)
            .map(|t| (format!("q{t}"), t))
            .collect();
        bound(&mut set);
        assert_eq!(set.len(), MAX_REVOKED);
        assert!(!set.contains_key("q4") && set.contains_key("q5"));
    }
}
