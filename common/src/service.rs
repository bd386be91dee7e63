//! The one start and stop scaffolding of the three services (`raft-rm`,
//! `coordinator`, `worker`):
//!
//! - [`run_process`]: the async runtime, the service's body, and its exit
//!   status (0, 1 for a failure, 2 for bad configuration), with the error
//!   printed once as `NAME: message`;
//! - [`bind`]: the listener, with the address in the error;
//! - [`until_signalled`]: SIGINT or SIGTERM, both a graceful stop (a
//!   service manager sends SIGTERM);
//! - [`Supervisor`]: a running service's tasks and the one stop signal
//!   they watch; it serves HTTP with a graceful shutdown and stops every
//!   task, waiting up to a grace period before aborting what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a service's process ends when it does not end well.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    /// Printed as `NAME: message`; `None` when it was already said.
    pub message: Option<String>,
}

impl Exit {
    /// A failure at run time (exit status 1).
    pub fn failure(message: impl std::fmt::Display) -> Exit {
        Exit {
            code: 1,
            message: Some(message.to_string()),
        }
    }

    /// Bad flags or configuration (exit status 2).
    pub fn usage(message: impl std::fmt::Display) -> Exit {
        Exit {
            code: crate::cli::EXIT_USAGE,
            message: Some(message.to_string()),
        }
    }

    /// An exit status whose reason the service printed itself.
    pub fn status(code: i32) -> Result<(), Exit> {
        if code == 0 {
            Ok(())
        } else {
            Err(Exit {
                code,
                message: None,
            })
        }
    }
}

/// Runs a service's body on a fresh multi-threaded runtime and exits the
/// process with its status.
pub fn run_process<Fut>(name: &str, body: impl FnOnce() -> Fut) -> !
where
    Fut: Future<Output = Result<(), Exit>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(body()) {
        Ok(()) => std::process::exit(0),
        Err(exit) => {
            if let Some(message) = exit.message {
                eprintln!("{name}: {message}");
            }
            std::process::exit(exit.code)
        }
    }
}

/// Binds `addr` for a service's HTTP server.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Exit> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Exit::failure(format!("cannot listen on {addr}: {e}")))
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
pub async fn until_signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("signalled; shutting down");
}

/// A running service's tasks and the stop signal they watch.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }
}

impl Supervisor {
    /// What a task watches to learn it should stop (it turns `true`).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.adopt(name, tokio::spawn(task));
    }

    /// Supervises a task spawned elsewhere (it must watch [`Supervisor::stopping`]).
    pub fn adopt(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.tasks.push((name, task));
    }

    /// Serves `app` on `listener`, over TLS with `tls`, until the stop
    /// signal, then lets open requests finish (within the grace period
    /// [`Supervisor::shutdown`] gives). Handlers may extract the peer
    /// (`ConnectInfo<Peer>`). With TLS, the certificate is reloaded when
    /// its files change or on SIGHUP.
    pub fn serve(
        &mut self,
        listener: tokio::net::TcpListener,
        tls: Option<&crate::tls::Tls>,
        app: axum::Router,
    ) {
        if let Some(tls) = tls {
            self.spawn(
                "tls-reload",
                tls.identity.clone().keep_fresh(self.stopping()),
            );
        }
        if let (None, Ok(addr)) = (tls, listener.local_addr()) {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "serving plain HTTP on a non-loopback address: the shared secret and all traffic travel in clear (give --tls-cert, --tls-key and --tls-ca)");
            }
        }
        let server = tls.map(|t| t.server.clone());
        let mut stop = self.stopping();
        self.spawn("http", async move {
            let listener = match crate::listener::ServiceListener::new(listener, server) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "HTTP server failed");
                    return;
                }
            };
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let app = app.into_make_service_with_connect_info::<crate::listener::Peer>();
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }

    /// Tells every task to stop (they end on their own; see `shutdown`).
    pub fn signal_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Signals the stop, waits up to `grace` in all for the tasks to end,
    /// and aborts those still running.
    pub async fn shutdown(self, grace: Duration) {
        self.signal_stop();
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut task) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::debug!(task = name, "still running after the grace period; aborted");
                task.abort();
                let _ = task.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn shutdown_lets_stopping_tasks_finish_and_aborts_the_stuck_ones() {
        let mut s = Supervisor::default();
        let finished = Arc::new(AtomicBool::new(false));
        let (mut stop, done) = (s.stopping(), finished.clone());
        s.spawn("polite", async move {
            let _ = stop.wait_for(|s| *s).await;
            done.store(true, Ordering::Relaxed);
        });
        s.spawn("stuck", std::future::pending());
        let started = tokio::time::Instant::now();
        s.shutdown(Duration::from_millis(200)).await;
        assert!(
            finished.load(Ordering::Relaxed),
            "the polite task saw the stop"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the stuck task was aborted"
        );
    }

    #[tokio::test]
    async fn a_served_router_answers_until_the_stop() {
        let mut s = Supervisor::default();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        s.serve(
            listener,
            None,
            axum::Router::new().route("/", axum::routing::get(|| async { "up" })),
        );
        let http = crate::http::HttpClient::new(None, Duration::from_secs(2));
        let body = http
            .get_bytes(&format!("http://{addr}/"), &[])
            .await
            .unwrap();
        assert_eq!(body, b"up");
        s.shutdown(Duration::from_secs(2)).await;
        let e = http
            .get_bytes(&format!("http://{addr}/"), &[])
            .await
            .unwrap_err();
        assert!(e.never_sent(), "{e}");
    }
}
