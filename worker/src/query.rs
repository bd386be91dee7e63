//! A query's own process. The worker runs each query's execution in a
//! child process (this binary, `worker run-query`), so that what the query
//! holds is measured, not declared: its resident memory is sampled as it
//! runs and reported as the query's reservation, its CPU time is charged
//! to its group, and stopping it (cancel, the low-memory killer,
//! revocation) is a SIGKILL after which the kernel has freed everything.
//! A query that crashes its process fails alone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::api::SqlWork;
use engine::{CatalogConfig, EngineError, Job, Outcome, Summary};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The first argument that makes the worker binary a query process.
pub const RUN_QUERY: &str = "run-query";

/// How often a query process's memory and CPU are read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How a worker starts query processes.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    /// The worker binary (`run-query` makes it a query process).
    pub runner: PathBuf,
    pub catalogs: CatalogConfig,
    /// Each query's result is spooled in `<spool>/<task id>`.
    pub spool: PathBuf,
}

/// What a query process holds and has used, read from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub resident_bytes: u64,
    /// The most it held at once.
    pub peak_bytes: u64,
    pub cpu_ms: u64,
}

pub struct QueryProcess {
    child: Child,
    pid: u32,
    pub spool: PathBuf,
}

impl QueryProcess {
    /// Starts the process for `work`, its spool emptied first.
    pub async fn start(
        settings: &QuerySettings,
        task_id: &str,
        work: &SqlWork,
    ) -> Result<QueryProcess, EngineError> {
        let spool = settings.spool.join(task_id);
        let _ = std::fs::remove_dir_all(&spool);
        std::fs::create_dir_all(&spool).map_err(|e| {
            EngineError::internal(format!("cannot create the spool {}: {e}", spool.display()))
        })?;
        let job = Job {
            work: work.clone(),
            catalogs: settings.catalogs.clone(),
            spool: spool.clone(),
        };
        let input = serde_json::to_vec(&job)
            .map_err(|e| EngineError::internal(format!("cannot encode the job: {e}")))?;
        let mut child = Command::new(&settings.runner)
            .arg(RUN_QUERY)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                EngineError::internal(format!(
                    "cannot start a query process ({}): {e}",
                    settings.runner.display()
                ))
            })?;
        let pid = child.id().unwrap_or(0);
        if let Some(mut stdin) = child.stdin.take() {
            // A process that died at once is found by the wait.
            let _ = stdin.write_all(&input).await;
        }
        Ok(QueryProcess { child, pid, spool })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its memory and CPU now; `None` once it is gone.
    pub fn sample(&self) -> Option<Usage> {
        let (rss, peak) = common::cpu::resident_kb(self.pid)?;
        let ticks = common::cpu::cpu_ticks(Some(self.pid))?;
        Some(Usage {
            resident_bytes: rss * 1024,
            peak_bytes: peak * 1024,
            cpu_ms: (ticks as f64 * 1000.0 / common::cpu::ticks_per_second()) as u64,
        })
    }

    /// Waits for the process to end, and reads what it left.
    pub async fn wait(&mut self) -> Result<Summary, EngineError> {
        let status = self.child.wait().await;
        match engine::job::outcome(&self.spool) {
            Outcome::Finished(summary) => Ok(summary),
            Outcome::Failed(e) => Err(e),
            Outcome::Crashed => Err(EngineError::internal(match status {
                Ok(s) => format!("the query's process ended without a result ({s})"),
                Err(e) => format!("the query's process could not be waited for: {e}"),
            })),
        }
    }

    /// Kills the process and waits until it is gone (its memory is free
    /// then); answers how long that took.
    pub async fn kill(&mut self) -> Duration {
        let started = Instant::now();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        started.elapsed()
    }
}

/// What the query process said it used as it ended, for its final
/// figures.
pub fn final_usage(spool: &Path) -> Option<Usage> {
    let u = engine::job::usage(spool)?;
    Some(Usage {
        resident_bytes: 0,
        peak_bytes: u.peak_resident_bytes,
        cpu_ms: u.cpu_ms,
    })
}

/// The query process: reads its job from stdin, runs it, and leaves the
/// outcome in the spool. Exits 0 when it could say how the query ended.
pub fn main() -> std::process::ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input) {
        eprintln!("worker run-query: cannot read the job: {e}");
        return std::process::ExitCode::from(2);
    }
    let job: Job = match serde_json::from_slice(&input) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("worker run-query: the job is not valid: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match engine::job::run(&job) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        // The failure is in the spool (error.json) unless writing it failed.
        Err(_) if engine::job::outcome(&job.spool) != Outcome::Crashed => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("worker run-query: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
