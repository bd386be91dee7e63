//! sled with a real fsync, and group commit.
//!
//! sled 0.34's `flush` ends in `sync_file_range(2)` on Linux. That pushes
//! dirty pages to the device queue, but it flushes neither the device's
//! write cache nor the file's metadata (its size, after it grew). An entry
//! "flushed" that way can vanish on power loss. So every durability point
//! here is `flush` followed by `fdatasync` of sled's data file, and only
//! then is the write acknowledged.
//!
//! sled also writes any page (a tree node of up to ~17 entries, or a delta
//! on one) larger than `segment_size / 4` to a separate blob file, with no
//! sync at all. So:
//! - we raise the segment size to 8 MiB (a 2 MiB threshold), and keep what
//!   we store small (snapshots go in 64 KiB chunks, API bodies are capped),
//!   so blobs are rare;
//! - and every durability point also fsyncs every blob file it has not
//!   synced yet, and the `blobs/` directory, before the data file. So
//!   durability does not rest on the sizes.
//!
//! A failed fsync is fatal (PostgreSQL's "fsyncgate" lesson): after one,
//! the kernel may have dropped the dirty pages it could not write, and a
//! later fsync can succeed without them. So the first failure poisons the
//! database: that request and every later one fail, and the store's
//! `on_fatal` hook runs once (a node exits non-zero and restarts from what
//! is on disk).
//!
//! Group commit: one syncer thread serves every durability request. It takes
//! all the requests queued so far, runs one `flush` + `fdatasync`, and then
//! completes them all. The ordering rule is that a request is queued only
//! after its writes are in sled, so the sync that completes it started after
//! those writes and covers them. Under load, many appends share one fsync
//! instead of queueing behind one another.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::metrics::Metrics;

/// sled segment size: values above a quarter of it become unsynced blobs.
pub const SEGMENT_SIZE: usize = 8 * 1024 * 1024;

/// Called once with the outcome of the sync that covered the request.
pub type SyncDone = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Runs once when a sync fails: the database can no longer promise
/// durability.
pub type OnFatal = Arc<dyn Fn(&std::io::Error) + Send + Sync>;

/// What a node does when its disk fails a sync: say so and exit, so a
/// supervisor restarts it from what is on disk.
pub fn exit_on_fatal() -> OnFatal {
    Arc::new(|e| {
        tracing::error!(error = %e, "fsync failed: this node can no longer promise durability; exiting");
        eprintln!(
            "raft-rm: fsync failed ({e}); exiting so that a restart recovers from what is on disk"
        );
        std::process::exit(crate::store::EXIT_DISK);
    })
}

#[derive(Clone)]
pub struct DurableDb {
    db: sled::Db,
    syncer: Arc<Syncer>,
}

/// The queue shared with the syncer thread. Dropping the last `DurableDb`
/// drops the `Syncer`, which stops the thread once the queue is drained.
struct Syncer {
    queue: Arc<SyncQueue>,
    /// Joined on drop: the thread holds a handle on the database, which
    /// must be closed (its file lock released) when the store is dropped.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct SyncQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    waiting: Vec<(Need, SyncDone)>,
    stopping: bool,
}

/// What one durability request needs synced.
#[derive(Default)]
struct Need {
    /// sled (flush, blobs, its data file): every write to a sled tree.
    sled: bool,
    /// Files written outside sled (the Raft log's segments), fdatasynced.
    files: Vec<Arc<File>>,
    /// Directories whose entries changed (a segment created or removed).
    dirs: Vec<Arc<File>>,
}

impl Need {
    fn sled() -> Need {
        Need {
            sled: true,
            ..Need::default()
        }
    }

    fn files(files: Vec<Arc<File>>, dirs: Vec<Arc<File>>) -> Need {
        Need {
            sled: false,
            files,
            dirs,
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        {
            let mut state = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
            state.stopping = true;
            self.queue.wake.notify_one();
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl DurableDb {
    pub fn open(dir: &Path, metrics: Arc<Metrics>, on_fatal: OnFatal) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .segment_size(SEGMENT_SIZE)
            .open()
            .map_err(sled_to_io)?;
        // sled's data file, opened separately so we can fdatasync it.
        let data_file = File::open(dir.join("db"))?;
        // The data file and the directory entries leading to it must
        // themselves be durable.
        data_file.sync_all()?;
        File::open(dir)?.sync_all()?;
        if let Some(parent) = dir.parent() {
            File::open(parent)?.sync_all()?;
        }
        let queue = Arc::new(SyncQueue::default());
        let worker = SyncWorker {
            db: db.clone(),
            data_file,
            blob_dir: dir.join("blobs"),
            synced_blobs: HashSet::new(),
            metrics,
            queue: queue.clone(),
            poisoned: None,
            fatal_reported: false,
            on_fatal,
        };
        let thread = std::thread::Builder::new()
            .name("sled-sync".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            db,
            syncer: Arc::new(Syncer {
                queue,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn tree(&self, name: &str) -> std::io::Result<sled::Tree> {
        self.db.open_tree(name).map_err(sled_to_io)
    }

    /// Calls `done` after a sync that covers every write issued before this
    /// call. Returns at once.
    pub fn sync_then(&self, done: SyncDone) {
        self.request(Need::sled(), done);
    }

    /// Calls `done` after an fdatasync of each of `files` and an fsync of
    /// each of `dirs`, begun after this call, without syncing sled: for
    /// files written outside sled (the log's segments). Shares the syncer,
    /// its group commit and its poisoning with sled's syncs.
    pub fn sync_files_then(&self, files: Vec<Arc<File>>, dirs: Vec<Arc<File>>, done: SyncDone) {
        self.request(Need::files(files, dirs), done);
    }

    /// Async form of [`Self::sync_files_then`].
    pub async fn sync_files(
        &self,
        files: Vec<Arc<File>>,
        dirs: Vec<Arc<File>>,
    ) -> std::io::Result<()> {
        self.wait(Need::files(files, dirs)).await
    }

    /// Blocking form of [`Self::sync_files`], for code outside the runtime.
    pub fn sync_files_blocking(
        &self,
        files: Vec<Arc<File>>,
        dirs: Vec<Arc<File>>,
    ) -> std::io::Result<()> {
        self.wait_blocking(Need::files(files, dirs))
    }

    fn request(&self, need: Need, done: SyncDone) {
        let queue = &self.syncer.queue;
        let mut state = queue.state.lock().unwrap_or_else(|p| p.into_inner());
        state.waiting.push((need, done));
        queue.wake.notify_one();
    }

    /// Waits for a sync that covers every write issued before this call.
    pub async fn sync_async(&self) -> std::io::Result<()> {
        self.wait(Need::sled()).await
    }

    /// Blocking form of [`Self::sync_async`], for code outside the runtime.
    pub fn sync(&self) -> std::io::Result<()> {
        self.wait_blocking(Need::sled())
    }

    async fn wait(&self, need: Need) -> std::io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.request(
            need,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await
            .map_err(|_| std::io::Error::other("sync thread stopped"))?
    }

    fn wait_blocking(&self, need: Need) -> std::io::Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.request(
            need,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv()
            .map_err(|_| std::io::Error::other("sync thread stopped"))?
    }
}

struct SyncWorker {
    db: sled::Db,
    data_file: File,
    blob_dir: PathBuf,
    /// Blob files already fsynced (sled never rewrites a blob in place).
    synced_blobs: HashSet<OsString>,
    metrics: Arc<Metrics>,
    queue: Arc<SyncQueue>,
    /// The first sync failure; every later request fails with it.
    poisoned: Option<String>,
    fatal_reported: bool,
    on_fatal: OnFatal,
}

impl SyncWorker {
    /// sled flush, then blobs and their directory, then the data file:
    /// the data file may only point at blobs that are already durable.
    /// Files before directories: a directory entry may only name a file
    /// whose contents are already durable.
    fn sync_once(&mut self, batch: &[(Need, SyncDone)]) -> std::io::Result<()> {
        fail::fail_point!("durable::before-fdatasync", |_| Err(std::io::Error::other(
            "injected fsync failure (failpoint durable::before-fdatasync)"
        )));
        let mut synced: Vec<*const File> = Vec::new();
        let mut once = |f: &Arc<File>, all: bool| -> std::io::Result<()> {
            let p = Arc::as_ptr(f);
            if synced.contains(&p) {
                return Ok(());
            }
            synced.push(p);
            if all {
                f.sync_all()
            } else {
                f.sync_data()
            }
        };
        for (need, _) in batch {
            for f in &need.files {
                once(f, false)?;
            }
        }
        for (need, _) in batch {
            for d in &need.dirs {
                once(d, true)?;
            }
        }
        if batch.iter().any(|(need, _)| need.sled) {
            self.db.flush().map_err(sled_to_io)?;
            self.sync_new_blobs()?;
            self.data_file.sync_data()?;
        }
        Ok(())
    }

    /// True the first time it is asked after a failure.
    fn fatal_once(&mut self) -> bool {
        let first = self.poisoned.is_some() && !self.fatal_reported;
        self.fatal_reported |= first;
        first
    }

    fn sync_new_blobs(&mut self) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(&self.blob_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut present = HashSet::new();
        let mut synced_any = false;
        for entry in entries {
            let name = entry?.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(self.blob_dir.join(&name)) {
                    Ok(f) => f.sync_data()?,
                    // sled garbage-collected it meanwhile: nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                synced_any = true;
            }
            present.insert(name);
        }
        if synced_any {
            File::open(&self.blob_dir)?.sync_all()?;
        }
        self.synced_blobs = present;
        Ok(())
    }

    fn run(mut self) {
        loop {
            let batch = {
                let mut state = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
                while state.waiting.is_empty() && !state.stopping {
                    state = self
                        .queue
                        .wake
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                if state.waiting.is_empty() {
                    return; // stopping, and nothing left to serve
                }
                std::mem::take(&mut state.waiting)
            };
            let result = match &self.poisoned {
                Some(first) => Err(std::io::Error::other(format!(
                    "an earlier fsync failed ({first}); nothing written since is durable"
                ))),
                None => {
                    let start = Instant::now();
                    let result = self.sync_once(&batch);
                    self.metrics.observe_fsync(start.elapsed(), batch.len());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, waiting = batch.len(), "fsync failed");
                        self.poisoned = Some(e.to_string());
                    }
                    result
                }
            };
            for (_, done) in batch {
                done(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                });
            }
            if let (Err(e), true) = (&result, self.fatal_once()) {
                (self.on_fatal)(e);
            }
        }
    }
}

pub fn sled_to_io(e: sled::Error) -> std::io::Error {
    match e {
        sled::Error::Io(io) => io,
        other => std::io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hole: after a failed fsync the syncer carried on, and a later
    /// successful one reported success for writes the failed one lost.
    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_fsync_poisons_every_later_sync_and_is_fatal_once() {
        let scenario = fail::FailScenario::setup();
        let dir = tempfile::tempdir().unwrap();
        let fatal = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = fatal.clone();
        let on_fatal: OnFatal = Arc::new(move |_| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let db = DurableDb::open(dir.path(), Arc::new(Metrics::new()), on_fatal).unwrap();
        let tree = db.tree("t").unwrap();
        tree.insert("a", "1").unwrap();
        db.sync().unwrap();
        fail::cfg("durable::before-fdatasync", "1*return").unwrap();
        tree.insert("b", "2").unwrap();
        assert!(db.sync().is_err(), "the injected failure is reported");
        tree.insert("c", "3").unwrap();
        let later = db.sync();
        assert!(
            later.is_err(),
            "a later sync must not vouch for lost writes"
        );
        assert_eq!(fatal.load(std::sync::atomic::Ordering::Relaxed), 1);
        scenario.teardown();
    }

    #[test]
    fn every_request_is_answered_and_concurrent_ones_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let db = DurableDb::open(dir.path(), metrics.clone(), Arc::new(|_| {})).unwrap();
        let tree = db.tree("t").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0u32..200 {
            tree.insert(i.to_be_bytes(), vec![1u8; 100]).unwrap();
            let tx = tx.clone();
            db.sync_then(Box::new(move |r| tx.send(r.is_ok()).unwrap()));
        }
        let answers: Vec<bool> = (0..200).map(|_| rx.recv().unwrap()).collect();
        assert!(answers.iter().all(|ok| *ok));
        let text = metrics.render_registry();
        let syncs = metric(&text, "raft_rm_fsync_latency_seconds_count");
        let waiters = metric(&text, "raft_rm_fsync_batch_size_sum");
        assert_eq!(waiters, 200.0, "{text}");
        assert!((1.0..=200.0).contains(&syncs), "{text}");
        db.sync().unwrap();
    }

    /// A value far over the blob threshold goes to a blob file; the sync
    /// covers it, and it reads back after reopening.
    #[test]
    fn large_values_become_blobs_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 3 * 1024 * 1024];
        {
            let db =
                DurableDb::open(dir.path(), Arc::new(Metrics::new()), Arc::new(|_| {})).unwrap();
            db.tree("t").unwrap().insert("big", big.clone()).unwrap();
            db.sync().unwrap();
            let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
            assert!(blobs >= 1, "expected sled to write a blob file");
        }
        let db = DurableDb::open(dir.path(), Arc::new(Metrics::new()), Arc::new(|_| {})).unwrap();
        assert_eq!(
            db.tree("t").unwrap().get("big").unwrap().unwrap().as_ref(),
            &big[..]
        );
    }

    fn metric(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
    }
}
