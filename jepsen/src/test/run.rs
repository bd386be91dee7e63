//! The run phase: the clients (each executing its seeded plan) and the
//! nemesis (its seeded schedule) against the cluster for the time limit,
//! then every client stopped and its open op closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::session::{KeeperSpec, SessionEvent, SessionKeeper};
use serde_json::json;
use tokio::sync::watch;

use super::start::Started;
use super::TestSpec;
use crate::history::{OpType, Recorder};
use crate::nemesis::{self, Schedule, Window};
use crate::progress::{Phase, Progress};
use crate::trino::TrinoClient;
use crate::workload::plan::QueryMix;
use crate::workload::{self, Ctx, QueryClient, SemaphoreClient, Workload};

/// Client processes a run runs: the queue workload needs more clients than
/// the groups hold.
pub(super) fn concurrency(spec: &TestSpec) -> u64 {
    let concurrency = match spec.workload {
        Workload::Queue => spec.concurrency.max(workload::QUEUE_CLIENTS),
        Workload::Limits => spec.concurrency.max(workload::LIMITS_CLIENTS),
        _ => spec.concurrency,
    };
    if concurrency != spec.concurrency {
        tracing::info!(
            "{:?} workload: {concurrency} clients, so the limits bind",
            spec.workload
        );
    }
    concurrency
}

/// What the run phase recorded.
pub(super) struct Ran {
    pub history: Arc<Recorder>,
    /// The nemesis's fault windows.
    pub windows: Vec<Window>,
    /// Wall clock at the history's start, in ms (the workers' task times
    /// are wall clock).
    pub start_wall_ms: u64,
    /// The history's end, in ns since its start.
    pub end_ns: u64,
}

/// Runs `concurrency` clients and the nemesis on `schedule` for the spec's
/// time limit; the history goes to `history.jsonl` in `dir`.
pub(super) async fn run(
    spec: &TestSpec,
    dir: &std::path::Path,
    started: &Started,
    schedule: &Schedule,
    concurrency: u64,
    progress: &Progress,
) -> Result<Ran> {
    use common::clock::Clock;
    let Started {
        cluster,
        rm,
        rms,
        coordinators,
        ..
    } = started;
    let start_wall_ms = common::clock::SystemClock::default().now_ms();
    let history = Arc::new(Recorder::new(Some(&dir.join("history.jsonl")))?);
    let (stop_tx, stop) = watch::channel(false);
    let ctx = Ctx {
        history: history.clone(),
        stop: stop.clone(),
        concurrency,
        open: Default::default(),
    };
    let mut clients = Vec::new();
    let mut keeper = None;
    match spec.workload {
        Workload::Semaphore => {
            let session = Arc::new(keep_session(rm, rms, history.clone()));
            session
                .registered(Duration::from_secs(10))
                .await
                .map_err(anyhow::Error::new)?;
            keeper = Some(session.clone());
            for p in 0..concurrency {
                let c = SemaphoreClient {
                    ctx: ctx.clone(),
                    rm: rm.clone(),
                    rms: rms.clone(),
                    session: session.clone(),
                    seed: spec.schedule.seed,
                };
                clients.push(tokio::spawn(c.run(p)));
            }
        }
        Workload::Queries | Workload::Queue | Workload::Oom | Workload::Limits | Workload::Sql => {
            let queue = spec.workload == Workload::Queue;
            let mix = QueryMix::of(spec.workload);
            for p in 0..concurrency {
                let c = QueryClient {
                    ctx: ctx.clone(),
                    trino: if queue {
                        TrinoClient::with_failover(coordinators.clone())
                    } else {
                        TrinoClient::default()
                    },
                    coordinators: coordinators.clone(),
                    seed: spec.schedule.seed,
                    mix: mix.clone(),
                };
                clients.push(tokio::spawn(c.run(p)));
            }
        }
    }
    let nemesis = tokio::spawn(nemesis::run(
        cluster.clone(),
        schedule.clone(),
        history.clone(),
        stop.clone(),
    ));
    let run_start = Instant::now();
    while run_start.elapsed() < spec.time_limit {
        let t = history.tally();
        progress.bar(run_start.elapsed(), spec.time_limit, t.faults, t.client_ops);
        let left = spec.time_limit.saturating_sub(run_start.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
    }
    let _ = stop_tx.send(true);
    let windows = nemesis.await.context("nemesis task")??;
    let t = history.tally();
    progress.phase(
        Phase::Run,
        &format!(
            "{}/{} s, {}",
            spec.time_limit.as_secs(),
            spec.time_limit.as_secs(),
            crate::progress::counts(t.faults, t.client_ops)
        ),
    );
    for c in clients {
        let abort = c.abort_handle();
        if tokio::time::timeout(Duration::from_secs(40), c)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    ctx.close_open();
    drop(keeper);
    let end_ns = history.now_ns();
    Ok(Ran {
        history,
        windows,
        start_wall_ms,
        end_ns,
    })
}

/// Keeps the semaphore clients' session alive: every 300 ms, a renewal to
/// every RM at once (a paused or cut-off RM delays none of the others). If
/// it expires anyway, its permits are revoked under the clients, outside
/// the semaphore model: that is recorded (`session-expired`, which makes
/// the linearizability verdict unknown) and a new session is registered.
fn keep_session(
    rm: &crate::rm_client::RmClient,
    rms: &[String],
    history: Arc<Recorder>,
) -> SessionKeeper {
    let spec = KeeperSpec {
        coordinator: "jepsen".into(),
        renew_every: Some(Duration::from_millis(300)),
        fan_out: true,
        // The clients go on with a session the keeper could not renew, and
        // the history records what the RMs answer them.
        give_up_after_lease: false,
    };
    SessionKeeper::start(rm.over(rms), spec, move |e| {
        if let SessionEvent::Expired(session) = e {
            tracing::error!(
                session,
                "the harness's session expired: permits were revoked under the clients"
            );
            history.record(
                crate::history::NEMESIS,
                OpType::Info,
                "session-expired",
                json!({"session": session}),
                None,
            );
        }
    })
}
