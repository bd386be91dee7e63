//! Where the harness's own log lines (nemesis, cluster, clients) go.
//!
//! A `test` or `compare` run writes them to its run directory's
//! `jepsen.log`, so the terminal shows only progress lines, the table and
//! where the report is; `-v` copies them to stderr as well. Commands that
//! set no log file (benches, drills, `cluster`) log to stderr as before.
//! Colours only on a terminal, never in the file.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The current log file, if a run set one.
static FILE: Mutex<Option<Arc<Mutex<File>>>> = Mutex::new(None);
/// `-v`: log lines go to stderr even while a log file is set.
static VERBOSE: OnceLock<bool> = OnceLock::new();

fn current() -> Option<Arc<Mutex<File>>> {
    FILE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Installs the harness's subscriber: one layer for the file, one for stderr.
pub fn init(verbose: bool) {
    let _ = VERBOSE.set(verbose);
    let file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(ToFile);
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(ToStderr);
    let _ = tracing_subscriber::registry()
        .with(common::telemetry::filter())
        .with(file)
        .with(stderr)
        .try_init();
}

/// Sends log lines to `path` (appended) until the guard drops; then they
/// go where they went before.
pub fn to_file(path: &Path) -> Result<FileGuard> {
    let f = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut slot = FILE.lock().unwrap_or_else(|p| p.into_inner());
    let previous = slot.replace(Arc::new(Mutex::new(f)));
    Ok(FileGuard { previous })
}

/// Restores the previous log file when dropped.
#[must_use]
pub struct FileGuard {
    previous: Option<Arc<Mutex<File>>>,
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        *FILE.lock().unwrap_or_else(|p| p.into_inner()) = self.previous.take();
    }
}

struct ToFile;
struct ToStderr;

/// One log line's destination: the file, stderr, or nowhere.
enum Writer {
    File(Arc<Mutex<File>>),
    Stderr(std::io::Stderr),
    Nowhere,
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Writer::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write(buf),
            Writer::Stderr(e) => e.write(buf),
            Writer::Nowhere => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Writer::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).flush(),
            Writer::Stderr(e) => e.flush(),
            Writer::Nowhere => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for ToFile {
    type Writer = Writer;
    fn make_writer(&'a self) -> Writer {
        current().map_or(Writer::Nowhere, Writer::File)
    }
}

impl<'a> MakeWriter<'a> for ToStderr {
    type Writer = Writer;
    fn make_writer(&'a self) -> Writer {
        if current().is_none() || VERBOSE.get().copied().unwrap_or(false) {
            Writer::Stderr(std::io::stderr())
        } else {
            Writer::Nowhere
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_the_run_file_while_it_is_set_and_without_escape_codes() {
        init(false);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jepsen.log");
        {
            let _guard = to_file(&path).unwrap();
            tracing::info!(fault = "kill", "nemesis: fault");
        }
        tracing::info!("after the run: not in its file");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("nemesis: fault"), "{text}");
        assert!(text.contains("fault=\"kill\""), "{text}");
        assert!(!text.contains('\u{1b}'), "escape codes in {text:?}");
        assert!(!text.contains("after the run"), "{text}");
    }
}
