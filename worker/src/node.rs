//! A running worker: HTTP server, reporter and fencing follower.

use std::sync::Arc;
use std::time::Duration;

use common::clock::SharedClock;
use common::http::HttpClient;
use common::rm::RmClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::WorkerConfig;
use crate::http::{router, WorkerMetrics, WorkerState};
use crate::pool::Pool;
use crate::report::Reporter;
use crate::tasks::Tasks;

pub struct RunningWorker {
    pub addr: std::net::SocketAddr,
    pub tasks: Arc<Tasks>,
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
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
    let tasks = Tasks::new(Pool::new(config.memory_bytes), clock);
    // Watch polls wait up to 10 s for an event: 15 s bounds one.
    let rms = RmClient::new(
        config.rms.clone(),
        HttpClient::new(config.secret.clone(), Duration::from_secs(15)),
    );
    let (stop, stop_rx) = watch::channel(false);
    let state = WorkerState {
        node_id: config.id.clone(),
        tasks: tasks.clone(),
        secret: config.secret.clone(),
        metrics: Arc::new(WorkerMetrics::default()),
    };
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let stopped = async move {
            let _ = server_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router(state))
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let reporter = Reporter {
        node_id: config.id.clone(),
        advertise,
        rms: rms.clone(),
        interval: config.heartbeat,
        tasks: tasks.clone(),
    };
    let report = tokio::spawn(reporter.run(stop_rx.clone()));
    let fence = tokio::spawn(crate::fencing::follow_revocations(
        rms,
        tasks.clone(),
        stop_rx,
    ));
    tracing::info!(id = %config.id, %addr, "worker started");
    Ok(RunningWorker {
        addr,
        tasks,
        stop,
        handles: vec![server, report, fence],
    })
}

impl RunningWorker {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for h in self.handles {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
}
