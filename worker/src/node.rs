//! A running worker: HTTP server, reporter and fencing follower.

use std::sync::Arc;
use std::time::Duration;

use common::clock::SharedClock;
use common::http::HttpClient;
use common::rm::RmClient;
use common::service::Supervisor;

use crate::config::WorkerConfig;
use crate::fencing::Fencing;
use crate::http::{router, WorkerMetrics, WorkerState};
use crate::pool::Pool;
use crate::report::Reporter;
use crate::revoked::RevokedFile;
use crate::tasks::Tasks;

pub struct RunningWorker {
    pub addr: std::net::SocketAddr,
    pub tasks: Arc<Tasks>,
    /// Where query results wait; removed at shutdown.
    spool: std::path::PathBuf,
    /// The server, the reporter and the fencing loop.
    tasks_running: Supervisor,
}

/// Starts on an already bound listener (tests bind port 0 first).
pub async fn start(
    config: WorkerConfig,
    listener: tokio::net::TcpListener,
    clock: SharedClock,
) -> std::io::Result<RunningWorker> {
    let addr = listener.local_addr()?;
    // With port 0 the configured address is not where we listen.
    let advertise = if config.listen.port() == 0 {
        addr.to_string()
    } else {
        config.advertise.clone()
    };
    let pool = Pool::new(config.memory_bytes);
    let tasks = match &config.data_dir {
        Some(dir) => {
            let (file, revoked) = RevokedFile::open(dir).map_err(std::io::Error::other)?;
            tracing::info!(revoked = revoked.len(), dir = %dir.display(), "revoked fencing tokens loaded");
            Tasks::persisted(pool, clock, file, revoked)
        }
        None => {
            tracing::warn!("no --data-dir: revoked fencing tokens are kept in memory only (a restart forgets them; the ledger check before each task still refuses them)");
            Tasks::new(pool, clock)
        }
    };
    // Results of a previous run are of no use: no coordinator can ask
    // for them.
    let _ = std::fs::remove_dir_all(&config.queries.spool);
    std::fs::create_dir_all(&config.queries.spool)?;
    tasks.run_queries(config.queries.clone());
    // The fencing watch shortens this to fit its bound.
    let rms = RmClient::new(
        config.rms.clone(),
        HttpClient::new(config.secret.clone(), Duration::from_secs(15))
            .with_tls(config.tls.as_ref().map(|t| t.client.clone())),
    );
    let mut supervisor = Supervisor::default();
    let stop_rx = supervisor.stopping();
    let metrics = Arc::new(WorkerMetrics::default());
    let fencing = Fencing::new(
        rms.clone(),
        tasks.clone(),
        metrics.clone(),
        config.fencing_bound,
    );
    let state = WorkerState {
        node_id: config.id.clone(),
        tasks: tasks.clone(),
        secret: config.secret.clone(),
        mutual_tls: config.tls.as_ref().is_some_and(common::tls::Tls::mutual),
        metrics,
        fencing: fencing.clone(),
    };
    supervisor.serve(listener, config.tls.as_ref(), router(state));
    let reporter = Reporter {
        node_id: config.id.clone(),
        advertise,
        rms: rms.clone(),
        interval: config.heartbeat,
        tasks: tasks.clone(),
    };
    supervisor.spawn("report", reporter.run(stop_rx.clone()));
    supervisor.spawn("fencing", fencing.clone().follow(stop_rx.clone()));
    supervisor.spawn("fencing-guard", fencing.guard(stop_rx));
    tracing::info!(id = %config.id, %addr, "worker started");
    Ok(RunningWorker {
        addr,
        spool: config.queries.spool.clone(),
        tasks,
        tasks_running: supervisor,
    })
}

impl RunningWorker {
    pub async fn shutdown(self) {
        // Up to 5 s for open requests and loops to end.
        self.tasks_running.shutdown(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&self.spool);
    }
}
