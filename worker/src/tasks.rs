//! Tasks. A simulated task reserves its memory (waiting while the pool is
//! full), holds it for its duration, then finishes. A query task waits
//! while the pool is full, then runs its statement in a process of its own
//! ([`crate::query`]), whose measured memory counts against the pool until
//! it ends; its result stays in a spool until the coordinator has read it.
//! A task stops early when cancelled (the coordinator), killed (the
//! low-memory killer) or revoked (the RMs revoked its query's admission:
//! fencing).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::api::{ErrorLocation, ResultPage, SqlWork};
pub use common::api::{TaskInfo, TaskSpec, TaskState, TaskWork};
use common::clock::SharedClock;
use common::wire::QueryResources;
use tokio::sync::oneshot;

use crate::pool::Pool;
use crate::query::{QueryProcess, QuerySettings, SAMPLE_EVERY};
use crate::revoked::RevokedFile;

/// Error names of the tasks fencing stops (the task's `error_name`).
pub mod fenced {
    /// The watch reported the admission revoked (its session lapsed).
    pub const REVOKED: &str = "ADMISSION_REVOKED";
    /// After a gap in the watch, the ledger no longer holds the admission
    /// under this token.
    pub const NOT_IN_LEDGER: &str = "ADMISSION_NOT_IN_LEDGER";
    /// No fresh word from any RM within the fencing bound: the worker
    /// cannot tell whether the admission still holds.
    pub const UNVERIFIED: &str = "FENCING_UNVERIFIED";
}

/// Finished tasks remembered for `GET`, oldest forgotten first.
pub const FINISHED_KEPT: usize = 10_000;

/// Why a task stopped early.
#[derive(Debug)]
pub struct TaskStop {
    pub state: TaskState,
    pub reason: String,
    pub error_name: Option<String>,
    pub location: Option<ErrorLocation>,
}

impl TaskStop {
    pub fn new(state: TaskState, reason: impl Into<String>) -> TaskStop {
        TaskStop {
            state,
            reason: reason.into(),
            error_name: None,
            location: None,
        }
    }

    fn named(state: TaskState, reason: impl Into<String>, error_name: &str) -> TaskStop {
        TaskStop {
            error_name: Some(error_name.to_string()),
            ..TaskStop::new(state, reason)
        }
    }

    fn failed(e: engine::EngineError) -> TaskStop {
        TaskStop {
            state: TaskState::Failed,
            reason: e.message,
            error_name: Some(e.name),
            location: e.location,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    #[error("task {0} exists with a different spec")]
    Conflict(String),
    #[error("memory_bytes {wanted} exceeds this worker's pool of {total} bytes")]
    TooLarge { wanted: u64, total: u64 },
    #[error("the admission of query {query} (fencing token {token}) was revoked")]
    Revoked { query: String, token: u64 },
    #[error("no task {0}")]
    NotFound(String),
    #[error("task {0} has no result to read: {1}")]
    NoResult(String, String),
    #[error("this worker runs no queries (it has no query settings)")]
    NoQueries,
}

struct Task {
    info: TaskInfo,
    stop: Option<oneshot::Sender<TaskStop>>,
    /// A finished query's result, until the coordinator has read it.
    result: Option<(PathBuf, engine::Summary)>,
}

/// How long a finished query's result is kept unread.
pub const RESULT_KEPT_MS: u64 = 15 * 60 * 1000;

/// How long an ended task's CPU is still reported (several RM stamps).
pub const ENDED_REPORTED_MS: u64 = 10_000;

pub struct Tasks {
    pool: Arc<Pool>,
    clock: SharedClock,
    state: Mutex<TasksState>,
    /// Where the revoked set is persisted (none: memory only).
    revoked_file: Option<RevokedFile>,
    /// How queries run; a worker without them runs simulated tasks only.
    queries: OnceLock<QuerySettings>,
    /// Woken whenever a task ends.
    ended: tokio::sync::Notify,
}

#[derive(Default)]
struct TasksState {
    tasks: BTreeMap<String, Task>,
    finished_order: VecDeque<String>,
    /// query id -> highest revoked fencing token (bounded, see
    /// [`crate::revoked`]).
    revoked: BTreeMap<String, u64>,
    /// `revoked` changed since it was last saved.
    revoked_unsaved: bool,
}

impl Tasks {
    pub fn new(pool: Arc<Pool>, clock: SharedClock) -> Arc<Tasks> {
        Arc::new(Tasks {
            pool,
            clock,
            state: Mutex::default(),
            revoked_file: None,
            queries: OnceLock::new(),
            ended: tokio::sync::Notify::new(),
        })
    }

    /// Lets this worker run queries, as `settings` say (once).
    pub fn run_queries(&self, settings: QuerySettings) {
        let _ = self.queries.set(settings);
    }

    /// Tasks whose revoked set starts as `revoked` and is saved to `file`
    /// on every change.
    pub fn persisted(
        pool: Arc<Pool>,
        clock: SharedClock,
        file: RevokedFile,
        revoked: BTreeMap<String, u64>,
    ) -> Arc<Tasks> {
        Arc::new(Tasks {
            pool,
            clock,
            state: Mutex::new(TasksState {
                revoked,
                ..TasksState::default()
            }),
            revoked_file: Some(file),
            queries: OnceLock::new(),
            ended: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TasksState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Whether the task could ever fit this worker's pool.
    pub fn check_fits(&self, spec: &TaskSpec) -> Result<(), TaskError> {
        let wanted = spec.work.declared_memory_bytes();
        if wanted > self.pool.total_bytes() {
            return Err(TaskError::TooLarge {
                wanted,
                total: self.pool.total_bytes(),
            });
        }
        if matches!(spec.work, TaskWork::Sql(_)) && self.queries.get().is_none() {
            return Err(TaskError::NoQueries);
        }
        Ok(())
    }

    /// Starts a task; the same spec again answers its current info.
    pub fn create(self: &Arc<Self>, spec: TaskSpec) -> Result<TaskInfo, TaskError> {
        self.check_fits(&spec)?;
        let mut s = self.lock();
        if let Some(t) = s.tasks.get(&spec.task_id) {
            return if t.info.spec == spec {
                Ok(t.info.clone())
            } else {
                Err(TaskError::Conflict(spec.task_id))
            };
        }
        if let Some(&token) = s.revoked.get(&spec.query_id) {
            if spec.fencing_token <= token {
                return Err(TaskError::Revoked {
                    query: spec.query_id,
                    token,
                });
            }
        }
        let (stop, stopped) = oneshot::channel();
        let info = TaskInfo {
            spec: spec.clone(),
            state: TaskState::Blocked,
            started_ms: None,
            finished_ms: None,
            reason: None,
            error_name: None,
            error_location: None,
            peak_memory_bytes: 0,
            cpu_ms: 0,
            exit_after_stop_ms: None,
        };
        s.tasks.insert(
            spec.task_id.clone(),
            Task {
                info: info.clone(),
                stop: Some(stop),
                result: None,
            },
        );
        drop(s);
        tokio::spawn(self.clone().run(spec, stopped));
        Ok(info)
    }

    async fn run(self: Arc<Self>, spec: TaskSpec, mut stopped: oneshot::Receiver<TaskStop>) {
        let declared = spec.work.declared_memory_bytes();
        let reservation = tokio::select! {
            r = self.pool.reserve(&spec.query_id, declared) => r,
            end = &mut stopped => return self.finish(&spec.task_id, end.ok()),
        };
        self.update(&spec.task_id, |i| {
            i.state = TaskState::Running;
            i.started_ms = Some(self.clock.now_ms());
            i.peak_memory_bytes = declared;
        });
        let end = match &spec.work {
            TaskWork::Simulated { duration_ms, .. } => tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(*duration_ms)) => None,
                end = &mut stopped => end.ok(),
            },
            TaskWork::Sql(work) => self.run_query(&spec, work, &mut stopped).await,
        };
        drop(reservation);
        self.finish(&spec.task_id, end);
    }

    /// Runs a query task's process to its end; `None`: it finished, and
    /// its result is ready to read.
    async fn run_query(
        &self,
        spec: &TaskSpec,
        work: &SqlWork,
        stopped: &mut oneshot::Receiver<TaskStop>,
    ) -> Option<TaskStop> {
        let settings = self.queries.get()?;
        let task = spec.task_id.as_str();
        let mut process = match QueryProcess::start(settings, task, work).await {
            Ok(p) => p,
            Err(e) => return Some(TaskStop::failed(e)),
        };
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        let stop = loop {
            tokio::select! {
                ended = process.wait() => {
                    self.pool.clear_measured(task);
                    self.record_usage(task, crate::query::final_usage(&process.spool));
                    break match ended {
                        Ok(summary) => {
                            if let Some(t) = self.lock().tasks.get_mut(task) {
                                t.result = Some((process.spool.clone(), summary));
                            }
                            return None;
                        }
                        Err(e) => TaskStop::failed(e),
                    };
                }
                why = &mut *stopped => {
                    let why = why.unwrap_or_else(|_| TaskStop::new(TaskState::Cancelled, "worker shutting down"));
                    let took = process.kill().await;
                    self.pool.clear_measured(task);
                    self.update(task, |i| i.exit_after_stop_ms = Some(took.as_millis() as u64));
                    tracing::info!(task, pid = process.pid(), exit_ms = took.as_millis() as u64, state = ?why.state, "query process stopped");
                    break why;
                }
                _ = tick.tick() => {
                    let Some(usage) = process.sample() else { continue };
                    self.pool.set_measured(task, &spec.query_id, usage.resident_bytes);
                    self.record_usage(task, Some(usage));
                    // A query may never hold more than the whole pool: the
                    // RMs' per-node limit is checked on heartbeats, this at
                    // once.
                    if usage.resident_bytes > self.pool.total_bytes() {
                        let took = process.kill().await;
                        self.pool.clear_measured(task);
                        self.update(task, |i| i.exit_after_stop_ms = Some(took.as_millis() as u64));
                        tracing::warn!(task, exit_ms = took.as_millis() as u64, "query process over the whole pool; killed");
                        break TaskStop::named(
                            TaskState::Killed,
                            format!(
                                "Query exceeded per-node memory limit of {} bytes (this worker's pool) [Allocated: {} bytes]",
                                self.pool.total_bytes(),
                                usage.resident_bytes
                            ),
                            "EXCEEDED_LOCAL_MEMORY_LIMIT",
                        );
                    }
                }
            }
        };
        let _ = std::fs::remove_dir_all(&process.spool);
        Some(stop)
    }

    fn record_usage(&self, task_id: &str, usage: Option<crate::query::Usage>) {
        if let Some(u) = usage {
            self.update(task_id, |i| {
                i.peak_memory_bytes = i.peak_memory_bytes.max(u.peak_bytes).max(u.resident_bytes);
                i.cpu_ms = i.cpu_ms.max(u.cpu_ms);
            });
        }
    }

    /// Page `page` of a finished query task's result.
    pub fn result_page(&self, task_id: &str, page: u32) -> Result<ResultPage, TaskError> {
        let (spool, summary) = {
            let s = self.lock();
            let t = s
                .tasks
                .get(task_id)
                .ok_or_else(|| TaskError::NotFound(task_id.to_string()))?;
            match &t.result {
                Some(r) => r.clone(),
                None => {
                    return Err(TaskError::NoResult(
                        task_id.to_string(),
                        format!(
                            "it is {:?}, or its result was already released",
                            t.info.state
                        ),
                    ))
                }
            }
        };
        engine::job::page(&spool, &summary, page)
            .map_err(|e| TaskError::NoResult(task_id.to_string(), e.message))
    }

    fn update(&self, task_id: &str, f: impl FnOnce(&mut TaskInfo)) {
        if let Some(t) = self.lock().tasks.get_mut(task_id) {
            f(&mut t.info);
        }
    }

    /// Records the end: `None` means it ran to completion.
    fn finish(&self, task_id: &str, end: Option<TaskStop>) {
        let now = self.clock.now_ms();
        let mut s = self.lock();
        if let Some(t) = s.tasks.get_mut(task_id) {
            match end {
                None => t.info.state = TaskState::Finished,
                Some(stop) => {
                    t.info.state = stop.state;
                    t.info.reason = Some(stop.reason);
                    t.info.error_name = stop.error_name;
                    t.info.error_location = stop.location;
                }
            }
            t.info.finished_ms = Some(now);
            t.stop = None;
        }
        s.finished_order.push_back(task_id.to_string());
        while s.finished_order.len() > FINISHED_KEPT {
            if let Some(old) = s.finished_order.pop_front() {
                if let Some(t) = s.tasks.remove(&old) {
                    release_result(t.result);
                }
            }
        }
        // Results nobody came for.
        for t in s.tasks.values_mut() {
            if t.info
                .finished_ms
                .is_some_and(|f| now.saturating_sub(f) > RESULT_KEPT_MS)
            {
                release_result(t.result.take());
            }
        }
        drop(s);
        self.ended.notify_waiters();
    }

    /// The task's info once it has ended, or after `wait` (a coordinator
    /// following it learns of the end at once, not at its next poll).
    pub async fn wait_done(&self, task_id: &str, wait: Duration) -> Result<TaskInfo, TaskError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let info = self.get(task_id)?;
            if info.state.is_done() || tokio::time::Instant::now() >= deadline {
                return Ok(info);
            }
            let _ = tokio::time::timeout_at(deadline, ended).await;
        }
    }

    /// Stops a task that is still going, or releases the result of one
    /// that finished; answers its info either way.
    pub fn stop(&self, task_id: &str, why: TaskStop) -> Result<TaskInfo, TaskError> {
        let mut s = self.lock();
        let t = s
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| TaskError::NotFound(task_id.to_string()))?;
        match t.stop.take() {
            Some(stop) => {
                let _ = stop.send(why);
            }
            None => release_result(t.result.take()),
        }
        Ok(t.info.clone())
    }

    /// The RMs killed `query_id` for memory: stop its tasks that still run
    /// or wait here. Answers how many were stopped (0 on a repeat).
    pub fn kill_query(&self, query_id: &str, error_name: &str, message: &str) -> usize {
        let mut s = self.lock();
        let mut stopped = 0;
        for t in s.tasks.values_mut() {
            if t.info.spec.query_id != query_id {
                continue;
            }
            if let Some(stop) = t.stop.take() {
                let _ = stop.send(TaskStop::named(TaskState::Killed, message, error_name));
                stopped += 1;
            }
        }
        stopped
    }

    /// The RMs revoked `query_id`'s admission with `token`: stop its tasks
    /// holding that token or an older one, and refuse such tasks from now on.
    pub fn revoke(&self, query_id: &str, token: u64) -> usize {
        self.revoke_because(
            query_id,
            token,
            fenced::REVOKED,
            format!("admission revoked (fencing token {token})"),
        )
    }

    /// [`Tasks::revoke`], with the error name and reason the stopped tasks
    /// report. [`Tasks::save_revoked`] persists the change.
    pub fn revoke_because(
        &self,
        query_id: &str,
        token: u64,
        error_name: &str,
        reason: String,
    ) -> usize {
        if common::failpoints::planted("bug::worker-ignores-fencing") {
            return 0;
        }
        let mut s = self.lock();
        let highest = s.revoked.entry(query_id.to_string()).or_default();
        if *highest < token {
            *highest = token;
            s.revoked_unsaved = true;
        }
        crate::revoked::bound(&mut s.revoked);
        let mut stopped = 0;
        for t in s.tasks.values_mut() {
            if t.info.spec.query_id == query_id && t.info.spec.fencing_token <= token {
                if let Some(stop) = t.stop.take() {
                    let _ = stop.send(TaskStop::named(
                        TaskState::Revoked,
                        reason.clone(),
                        error_name,
                    ));
                    stopped += 1;
                }
            }
        }
        stopped
    }

    /// Writes the revoked set to the data dir if it changed (blocking: an
    /// fsync, so off the async threads, which are stopping tasks). The
    /// tasks stop first: a crash before the save forgets the token here,
    /// and the ledger check before each task still refuses it.
    pub fn save_revoked(&self) {
        let Some(file) = &self.revoked_file else {
            return;
        };
        let saved = file.save(|| {
            let mut s = self.lock();
            s.revoked_unsaved = false;
            s.revoked.clone()
        });
        if let Err(e) = saved {
            self.lock().revoked_unsaved = true;
            tracing::error!(error = %e, "cannot persist the revoked tokens; a restart would forget them (the ledger check still refuses them)");
        }
    }

    /// Whether the revoked set changed since it was last saved.
    pub fn revoked_unsaved(&self) -> bool {
        self.lock().revoked_unsaved
    }

    /// Stops every task that carries a fencing token (linearizable
    /// admissions), with `reason`: the worker cannot vouch for them.
    /// Eventual-mode tasks (token 0) go on. Answers how many were stopped.
    pub fn stop_fenced(&self, error_name: &str, reason: &str) -> usize {
        let mut s = self.lock();
        let mut stopped = 0;
        for t in s.tasks.values_mut() {
            if t.info.spec.fencing_token == 0 {
                continue;
            }
            if let Some(stop) = t.stop.take() {
                let _ = stop.send(TaskStop::named(TaskState::Revoked, reason, error_name));
                stopped += 1;
            }
        }
        stopped
    }

    /// The (query, token) of every task still going that carries a token.
    pub fn fenced_live(&self) -> std::collections::BTreeSet<(String, u64)> {
        self.lock()
            .tasks
            .values()
            .filter(|t| t.stop.is_some() && t.info.spec.fencing_token > 0)
            .map(|t| (t.info.spec.query_id.clone(), t.info.spec.fencing_token))
            .collect()
    }

    /// Whether a task under `token` for `query_id` would be refused as
    /// revoked.
    pub fn is_revoked(&self, query_id: &str, token: u64) -> Option<u64> {
        self.lock()
            .revoked
            .get(query_id)
            .copied()
            .filter(|&highest| token <= highest)
    }

    /// Whether `task_id` is known here (a repeat of a create).
    pub fn contains(&self, task_id: &str) -> bool {
        self.lock().tasks.contains_key(task_id)
    }

    pub fn get(&self, task_id: &str) -> Result<TaskInfo, TaskError> {
        self.lock()
            .tasks
            .get(task_id)
            .map(|t| t.info.clone())
            .ok_or_else(|| TaskError::NotFound(task_id.to_string()))
    }

    pub fn list(&self) -> Vec<TaskInfo> {
        self.lock().tasks.values().map(|t| t.info.clone()).collect()
    }

    /// Per query: its resource group and the CPU time its tasks here have
    /// used (a simulated task uses its `cpu_ms` evenly over its duration; a
    /// query's process is measured).
    /// For the heartbeats: the RMs charge it to the group. A task that
    /// ended is still reported for [`ENDED_REPORTED_MS`], so the RMs see
    /// its final figure even if it ended between two of their stamps.
    pub fn resources(&self) -> BTreeMap<String, QueryResources> {
        let now = self.clock.now_ms();
        let mut out: BTreeMap<String, QueryResources> = BTreeMap::new();
        for t in self.lock().tasks.values() {
            let Some(started) = t.info.started_ms else {
                continue;
            };
            let until = match t.info.finished_ms {
                None => now,
                Some(end) if now.saturating_sub(end) < ENDED_REPORTED_MS => end,
                Some(_) => continue,
            };
            let spec = &t.info.spec;
            let cpu_ms = match spec.work {
                TaskWork::Simulated {
                    duration_ms,
                    cpu_ms,
                    ..
                } => {
                    let ran = until.saturating_sub(started).min(duration_ms);
                    match duration_ms {
                        0 => cpu_ms,
                        d => (u128::from(cpu_ms) * u128::from(ran) / u128::from(d)) as u64,
                    }
                }
                // Measured.
                TaskWork::Sql(_) => t.info.cpu_ms,
            };
            let q = out
                .entry(spec.query_id.clone())
                .or_insert_with(|| QueryResources {
                    group: spec.resource_group.clone(),
                    cpu_ms: 0,
                });
            q.cpu_ms = q.cpu_ms.saturating_add(cpu_ms);
        }
        out
    }

    pub fn running(&self) -> u32 {
        self.lock()
            .tasks
            .values()
            .filter(|t| t.info.state == TaskState::Running)
            .count() as u32
    }
}

/// Removes a query's spooled result.
fn release_result(result: Option<(PathBuf, engine::Summary)>) {
    if let Some((spool, _)) = result {
        let _ = std::fs::remove_dir_all(spool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::clock::SystemClock;

    fn spec(id: &str, query: &str, token: u64, ms: u64, bytes: u64) -> TaskSpec {
        TaskSpec {
            task_id: id.into(),
            query_id: query.into(),
            fencing_token: token,
            resource_group: "g".into(),
            work: TaskWork::Simulated {
                duration_ms: ms,
                memory_bytes: bytes,
                cpu_ms: ms,
            },
        }
    }

    async fn wait_state(tasks: &Tasks, id: &str, want: TaskState) -> TaskInfo {
        for _ in 0..200 {
            let i = tasks.get(id).unwrap();
            if i.state == want {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{id} never reached {want:?}: {:?}", tasks.get(id));
    }

    #[tokio::test]
    async fn tasks_hold_memory_for_their_duration_and_queue_when_full() {
        let tasks = Tasks::new(Pool::new(100), SystemClock::shared());
        tasks.create(spec("t1", "q1", 1, 150, 80)).unwrap();
        wait_state(&tasks, "t1", TaskState::Running).await;
        tasks.create(spec("t2", "q2", 2, 10, 50)).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(tasks.get("t2").unwrap().state, TaskState::Blocked);
        assert_eq!(tasks.pool().snapshot().blocked_tasks, 1);
        let done = wait_state(&tasks, "t1", TaskState::Finished).await;
        assert!(done.finished_ms.unwrap() - done.started_ms.unwrap() >= 140);
        wait_state(&tasks, "t2", TaskState::Finished).await;
        assert_eq!(tasks.pool().snapshot().reserved_bytes, 0);
    }

    #[tokio::test]
    async fn create_is_idempotent_and_checks_its_input() {
        let tasks = Tasks::new(Pool::new(100), SystemClock::shared());
        let a = tasks.create(spec("t", "q", 1, 1000, 10)).unwrap();
        assert_eq!(
            tasks.create(spec("t", "q", 1, 1000, 10)).unwrap().spec,
            a.spec
        );
        assert_eq!(
            tasks.create(spec("t", "q", 1, 999, 10)),
            Err(TaskError::Conflict("t".into()))
        );
        assert_eq!(
            tasks.create(spec("big", "q", 1, 1, 101)),
            Err(TaskError::TooLarge {
                wanted: 101,
                total: 100
            })
        );
        assert!(matches!(
            tasks.stop("nope", TaskStop::new(TaskState::Cancelled, "x")),
            Err(TaskError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn cancel_kill_and_revoke_stop_tasks_and_free_memory() {
        let tasks = Tasks::new(Pool::new(100), SystemClock::shared());
        tasks.create(spec("a", "q1", 5, 60_000, 40)).unwrap();
        tasks.create(spec("b", "q2", 6, 60_000, 40)).unwrap();
        tasks.create(spec("c", "q3", 7, 60_000, 40)).unwrap(); // blocked
        wait_state(&tasks, "b", TaskState::Running).await;
        tasks
            .stop("a", TaskStop::new(TaskState::Cancelled, "client cancelled"))
            .unwrap();
        assert_eq!(
            wait_state(&tasks, "a", TaskState::Cancelled)
                .await
                .reason
                .as_deref(),
            Some("client cancelled")
        );
        wait_state(&tasks, "c", TaskState::Running).await;
        // Revocation stops tasks at or under the token, and refuses new ones.
        assert_eq!(tasks.revoke("q2", 6), 1);
        wait_state(&tasks, "b", TaskState::Revoked).await;
        assert!(matches!(
            tasks.create(spec("b2", "q2", 6, 1, 1)),
            Err(TaskError::Revoked { .. })
        ));
        assert!(
            tasks.create(spec("b3", "q2", 7, 1, 1)).is_ok(),
            "a newer admission may run"
        );
        assert_eq!(
            tasks.kill_query("q3", "CLUSTER_OUT_OF_MEMORY", "low memory"),
            1
        );
        assert_eq!(tasks.kill_query("q3", "CLUSTER_OUT_OF_MEMORY", "again"), 0);
        let killed = wait_state(&tasks, "c", TaskState::Killed).await;
        assert_eq!(
            (killed.reason.as_deref(), killed.error_name.as_deref()),
            (Some("low memory"), Some("CLUSTER_OUT_OF_MEMORY"))
        );
        wait_state(&tasks, "b3", TaskState::Finished).await;
        assert_eq!(tasks.pool().snapshot().reserved_bytes, 0);
    }

    #[tokio::test]
    async fn a_restarted_worker_still_refuses_a_revoked_token() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let (file, set) = RevokedFile::open(dir.path()).unwrap();
            Tasks::persisted(Pool::new(100), SystemClock::shared(), file, set)
        };
        let tasks = open();
        tasks.create(spec("a", "q1", 5, 60_000, 10)).unwrap();
        assert_eq!(tasks.revoke("q1", 5), 1);
        assert!(tasks.revoked_unsaved());
        tasks.save_revoked();
        assert!(!tasks.revoked_unsaved());
        let stopped = wait_state(&tasks, "a", TaskState::Revoked).await;
        assert_eq!(stopped.error_name.as_deref(), Some(fenced::REVOKED));
        drop(tasks);
        // The zombie coordinator tries again after the worker restarted.
        let restarted = open();
        assert_eq!(
            restarted.create(spec("a2", "q1", 5, 1, 1)),
            Err(TaskError::Revoked {
                query: "q1".into(),
                token: 5
            })
        );
        assert!(restarted.create(spec("b", "q1", 6, 1, 1)).is_ok());
    }

    #[tokio::test]
    async fn unverifiable_tasks_stop_and_eventual_ones_go_on() {
        let tasks = Tasks::new(Pool::new(100), SystemClock::shared());
        tasks.create(spec("lin", "q1", 5, 60_000, 10)).unwrap();
        tasks.create(spec("ev", "q2", 0, 60_000, 10)).unwrap();
        assert_eq!(
            tasks.fenced_live(),
            [("q1".to_string(), 5)].into_iter().collect()
        );
        assert_eq!(tasks.stop_fenced(fenced::UNVERIFIED, "no RM"), 1);
        let t = wait_state(&tasks, "lin", TaskState::Revoked).await;
        assert_eq!(
            (t.reason.as_deref(), t.error_name.as_deref()),
            (Some("no RM"), Some(fenced::UNVERIFIED))
        );
        assert_eq!(tasks.get("ev").unwrap().state, TaskState::Running);
        assert!(tasks.fenced_live().is_empty());
    }
}
