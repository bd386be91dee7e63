//! A running coordinator: session keeper, event follower, reaper, HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::HttpClient;
use common::rm::RmClient;
use common::service::Supervisor;
use common::session::{KeeperSpec, SessionKeeper};
use common::wire::Announcement;

use crate::config::CoordinatorConfig;
use crate::events::Events;
use crate::http::{router, AppState};
use crate::query::Coordinator;

/// How often a coordinator announces itself to each RM.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

pub struct RunningCoordinator {
    pub addr: std::net::SocketAddr,
    pub coordinator: Arc<Coordinator>,
    tasks: Supervisor,
    /// Renews the session until the coordinator stops (dropping it stops it).
    _session: SessionKeeper,
}

pub async fn start(
    config: CoordinatorConfig,
    listener: tokio::net::TcpListener,
) -> std::io::Result<RunningCoordinator> {
    let addr = listener.local_addr()?;
    let client_tls = config.tls.as_ref().map(|t| t.client.clone());
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let external_url = config
        .external_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    // Acquires and releases of concurrent queries go out in batches.
    let rms = Arc::new(
        RmClient::new(
            config.rms.clone(),
            HttpClient::new(config.secret.clone(), Duration::from_secs(15))
                .with_tls(client_tls.clone()),
        )
        .batching(),
    );
    let mut tasks = Supervisor::default();
    let stop_rx = tasks.stopping();
    let session = SessionKeeper::start((*rms).clone(), KeeperSpec::coordinator(&config.id), |_| {});
    let events = Arc::new(Events::default());
    let kills = events.kills();
    let eventual = crate::eventual::Eventual::new(config.freshness_gate, config.refresh);
    let groups = crate::groups::GroupsInForce::new(config.groups.clone());
    let coordinator = Arc::new(Coordinator::new(
        &config,
        rms.clone(),
        HttpClient::new(config.secret.clone(), Duration::from_secs(5)).with_tls(client_tls),
        crate::session::SessionLink::of(&session),
        events.clone(),
        eventual.clone(),
        groups.clone(),
    ));
    tasks.spawn(
        "groups",
        groups.clone().follow(rms.clone(), stop_rx.clone()),
    );
    tasks.spawn(
        "events",
        crate::events::follow(rms.clone(), config.id.clone(), events, stop_rx.clone()),
    );
    tasks.spawn("reaper", coordinator.clone().reap(stop_rx.clone()));
    tasks.spawn(
        "kills",
        coordinator.clone().apply_kills(kills, stop_rx.clone()),
    );
    tasks.spawn(
        "eventual",
        eventual.refresh(
            rms.clone(),
            config.id.clone(),
            groups,
            config.refresh,
            session.subscribe(),
            stop_rx.clone(),
        ),
    );
    // Announced to the RMs, so they can relay other coordinators' web UI
    // requests for this coordinator's queries.
    let announcement = Announcement {
        node_id: config.id.clone(),
        role: "coordinator".into(),
        addr: config.advertise.clone().unwrap_or_else(|| addr.to_string()),
        ttl_ms: common::rm::report_ttl(ANNOUNCE_EVERY).as_millis() as u64,
    };
    let announcer = (*rms).clone();
    let announcing = stop_rx.clone();
    tasks.spawn("announce", async move {
        common::rm::report_to_every_rm(&announcer, ANNOUNCE_EVERY, announcing, move |to| {
            let a = announcement.clone();
            async move { to.announce(&a).await }
        })
        .await
    });
    let state = AppState {
        auth: Arc::new(crate::authn::Authenticator {
            passwords: config
                .password_file
                .as_deref()
                .map(crate::authn::PasswordFile::load)
                .transpose()
                .map_err(std::io::Error::other)?,
            jwt: config
                .jwt_key_file
                .as_deref()
                .map(crate::authn::JwtKey::load)
                .transpose()
                .map_err(std::io::Error::other)?,
            impersonation: config.impersonation.clone(),
        }),
        coordinator: coordinator.clone(),
        external_url,
        started: Instant::now(),
    };
    let mutual_tls = config.tls.as_ref().is_some_and(common::tls::Tls::mutual);
    let ui = crate::ui::router(
        state.clone(),
        config.web_ui,
        config.secret.clone(),
        mutual_tls,
    );
    tasks.serve(listener, config.tls.as_ref(), router(state).merge(ui));
    tracing::info!(id = %config.id, %addr, "coordinator started");
    Ok(RunningCoordinator {
        addr,
        coordinator,
        tasks,
        _session: session,
    })
}

impl RunningCoordinator {
    pub async fn shutdown(self) {
        self.tasks.signal_stop();
        self.coordinator.abort_all();
        // No grace: the queries were aborted, and a client's long poll
        // must not hold the coordinator up.
        self.tasks.shutdown(Duration::ZERO).await;
    }
}
