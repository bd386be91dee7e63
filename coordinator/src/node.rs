//! A running coordinator: session keeper, event follower, reaper, HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::HttpClient;
use common::rm::RmClient;
use common::session::{KeeperSpec, SessionKeeper};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::CoordinatorConfig;
use crate::events::Events;
use crate::http::{router, AppState};
use crate::query::Coordinator;

pub struct RunningCoordinator {
    pub addr: std::net::SocketAddr,
    pub coordinator: Arc<Coordinator>,
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    /// Renews the session until the coordinator stops (dropping it stops it).
    _session: SessionKeeper,
}

pub async fn start(
    config: CoordinatorConfig,
    listener: tokio::net::TcpListener,
) -> std::io::Result<RunningCoordinator> {
    let addr = listener.local_addr()?;
    let external_url = config
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let rms = Arc::new(RmClient::new(
        config.rms.clone(),
        HttpClient::new(config.secret.clone(), Duration::from_secs(15)),
    ));
    let (stop, stop_rx) = watch::channel(false);
    let session = SessionKeeper::start((*rms).clone(), KeeperSpec::coordinator(&config.id), |_| {});
    let events = Arc::new(Events::default());
    let kills = events.kills();
    let eventual = crate::eventual::Eventual::new(config.freshness_gate);
    let coordinator = Arc::new(Coordinator::new(
        &config,
        rms.clone(),
        HttpClient::new(config.secret.clone(), Duration::from_secs(5)),
        crate::session::SessionLink::of(&session),
        events.clone(),
        eventual.clone(),
    ));
    let mut handles = vec![
        tokio::spawn(crate::events::follow(
            rms.clone(),
            config.id.clone(),
            events,
            stop_rx.clone(),
        )),
        tokio::spawn(coordinator.clone().reap(stop_rx.clone())),
        tokio::spawn(coordinator.clone().apply_kills(kills, stop_rx.clone())),
        tokio::spawn(eventual.refresh(
            rms,
            config.id.clone(),
            config.groups.clone(),
            config.refresh,
            stop_rx.clone(),
        )),
    ];
    let state = AppState {
        coordinator: coordinator.clone(),
        external_url,
        started: Instant::now(),
    };
    let mut server_stop = stop_rx;
    handles.push(tokio::spawn(async move {
        let stopped = async move {
            let _ = server_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router(state))
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));
    tracing::info!(id = %config.id, %addr, "coordinator started");
    Ok(RunningCoordinator {
        addr,
        coordinator,
        stop,
        handles,
        _session: session,
    })
}

impl RunningCoordinator {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.coordinator.abort_all();
        for h in self.handles {
            h.abort();
            let _ = h.await;
        }
    }
}
