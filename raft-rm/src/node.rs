//! A running node: storage, Raft, the node core (with its proposer and
//! ticker), the HTTP server, the election timer, the killer and cluster
//! bootstrap, wired together. [`start`] returns a handle whose
//! [`RunningNode::shutdown`] stops all of it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::clock::SharedClock;
use common::http::HttpClient;
use common::service::Supervisor;
use openraft::error::{InitializeError, RaftError};

use crate::config::NodeConfig;
use crate::core::{Core, CoreParts, StartupLog};
use crate::http::{AppState, AppStateInner};
use crate::metrics::Metrics;
use crate::network::{EarlyReplication, LinkFaults, NetworkFactory};
use crate::store::{self, ClusterIdentity, OpenError};
use crate::{Node, NodeId, Raft};

/// Timeout of one internal HTTP call (forwarding, admin); Raft RPCs use
/// openraft's own per-RPC deadline.
const INTERNAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the founding node waits for every peer to report its
/// incarnation before it initializes the cluster without it.
const BOOTSTRAP_PEER_WAIT: Duration = Duration::from_secs(6);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("invalid Raft configuration: {0}")]
    RaftConfig(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start Raft: {0}")]
    Raft(String),
}

/// Things tests and the harness inject; production uses the defaults.
#[derive(Clone)]
pub struct NodeOptions {
    pub clock: SharedClock,
    pub faults: LinkFaults,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            clock: common::clock::SystemClock::shared(),
            faults: LinkFaults::default(),
        }
    }
}

pub struct RunningNode {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub raft: Raft,
    pub state: AppState,
    pub faults: LinkFaults,
    tasks: Supervisor,
}

/// Binds `config.listen` and starts the node.
pub async fn start(config: NodeConfig, options: NodeOptions) -> Result<RunningNode, StartError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    start_with_listener(config, listener, options).await
}

/// Starts the node on an already bound listener (tests bind port 0 first).
pub async fn start_with_listener(
    config: NodeConfig,
    listener: tokio::net::TcpListener,
    options: NodeOptions,
) -> Result<RunningNode, StartError> {
    let metrics = Arc::new(Metrics::new());
    let stores = store::open(&config.data_dir, config.id, metrics.clone())?;
    let pristine = stores
        .log
        .is_pristine()
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let mut log_store = stores.log;
    let startup_log = StartupLog::read(&mut log_store)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let http = HttpClient::new(config.secret.clone(), INTERNAL_TIMEOUT)
        .with_tls(config.tls.as_ref().map(|t| t.client.clone()));
    let raft_config = config
        .raft_config()
        .validate()
        .map_err(|e| StartError::RaftConfig(e.to_string()))?;
    let elections = Arc::new(crate::election::Signals::default());
    let network = NetworkFactory::new(
        http.clone(),
        stores.identity.clone(),
        options.faults.clone(),
        elections.clone(),
    );
    let early = config.early_replication.then(|| {
        let early = EarlyReplication::new(config.id, network.clone(), metrics.clone());
        log_store.set_early_replication(early.clone());
        early
    });
    let applied = stores.state_machine.reader();
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config),
        network,
        log_store,
        stores.state_machine,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    if let Some(early) = &early {
        early.attach(raft.metrics());
    }

    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let mut tasks = Supervisor::default();
    let shutdown_rx = tasks.stopping();
    let (core, core_tasks) = Core::start(
        CoreParts {
            id: config.id,
            raft: raft.clone(),
            applied,
            clock: options.clock.clone(),
            timings: config.timings.clone(),
            metrics: metrics.clone(),
            http: http.clone(),
            startup_log,
            admission: Arc::new(config.admission.clone()),
        },
        shutdown_rx.clone(),
    );
    for task in core_tasks {
        tasks.adopt("core", task);
    }
    let state = AppState::new(AppStateInner {
        core: core.clone(),
        identity: stores.identity.clone(),
        http: http.clone(),
        elections: elections.clone(),
        secret: config.secret.clone(),
        mutual_tls: config.tls.as_ref().is_some_and(common::tls::Tls::mutual),
        soft: Arc::new(crate::soft::SoftState::new(options.clock.clone())),
        killer: Arc::new(crate::killer::Killer::new(config.killer.clone())),
    });

    tasks.serve(
        listener,
        config.tls.as_ref(),
        crate::http::router(state.clone()),
    );
    tasks.spawn(
        "election",
        crate::election::run(
            config.id,
            raft.clone(),
            config.timings.clone(),
            elections,
            shutdown_rx.clone(),
        ),
    );
    tasks.spawn(
        "metrics",
        crate::metrics::follow_raft(metrics, raft.clone(), shutdown_rx.clone()),
    );
    tasks.spawn(
        "usage",
        crate::usage::run(
            core.clone(),
            state.soft.clone(),
            config.killer.leak_timeout,
            shutdown_rx.clone(),
        ),
    );
    tasks.spawn(
        "killer",
        crate::killer::run(
            core,
            state.killer.clone(),
            state.soft.clone(),
            shutdown_rx.clone(),
        ),
    );

    let lowest = config.peers.keys().next().copied();
    if pristine && lowest == Some(config.id) && !config.join {
        tasks.spawn(
            "bootstrap",
            bootstrap(
                raft.clone(),
                stores.identity,
                http,
                config.id,
                config.peers.clone(),
            ),
        );
    } else if pristine {
        tracing::info!("empty data dir; waiting for the leader to replicate to this node");
    }
    tracing::info!(id = config.id, %addr, "node started");
    Ok(RunningNode {
        id: config.id,
        addr,
        raft,
        state,
        faults: options.faults,
        tasks,
    })
}

impl RunningNode {
    /// Stops Raft, the ticker and the HTTP server, and waits for them.
    pub async fn shutdown(self) {
        self.tasks.signal_stop();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        // No grace: a test restarts nodes in place, and a long poll (the
        // watch) must not hold the port; Raft has stopped already.
        self.tasks.shutdown(Duration::ZERO).await;
    }
}

/// Initializes the cluster once: only on the lowest-id peer, only with a
/// pristine data dir, and only if no peer reports an initialized cluster
/// (so a node whose disk was wiped cannot found a second cluster next to
/// the running one; it must be re-added with the admin API instead).
///
/// The membership records each peer's incarnation as the peer reports it.
/// Peers are started together, but a slow one may answer late: each is
/// asked until it answers, for up to [`BOOTSTRAP_PEER_WAIT`] in all. One
/// that never answers is recorded without an incarnation (0), which the
/// disk-loss check cannot protect until the node is replaced (`raft-rm
/// admin replace`); the storage nemesis found members left at 0 by a wait
/// of a second and a half.
async fn bootstrap(
    raft: Raft,
    identity: ClusterIdentity,
    http: HttpClient,
    id: NodeId,
    peers: BTreeMap<NodeId, String>,
) {
    let mut members: BTreeMap<NodeId, Node> = BTreeMap::new();
    members.insert(
        id,
        Node::with_incarnation(&peers[&id], identity.incarnation()),
    );
    let mut pending: BTreeMap<NodeId, String> = peers
        .iter()
        .filter(|(peer, _)| **peer != id)
        .map(|(p, a)| (*p, a.clone()))
        .collect();
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_PEER_WAIT;
    let mut last_error: BTreeMap<NodeId, String> = BTreeMap::new();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        for (peer, addr) in pending.clone() {
            let url = http.url(&addr, "/v1/health");
            match http.get_json::<crate::http::health::Health>(&url, 1).await {
                Ok(h) if h.initialized => {
                    tracing::warn!(
                        peer,
                        addr = %addr,
                        "peer already belongs to an initialized cluster; not initializing. \
                         Re-add this node with `raft-rm admin add-learner` instead"
                    );
                    return;
                }
                Ok(h) if h.node_id == peer => {
                    members.insert(peer, Node::with_incarnation(&addr, h.incarnation));
                    pending.remove(&peer);
                }
                Ok(h) => {
                    last_error.insert(peer, format!("answers as node {}", h.node_id));
                }
                Err(e) => {
                    last_error.insert(peer, e.to_string());
                }
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for (peer, addr) in pending {
        let why = last_error.remove(&peer).unwrap_or_default();
        tracing::warn!(peer, addr = %addr, error = %why, "peer did not answer in time; its incarnation is not recorded until it is replaced");
        members.insert(peer, Node::with_incarnation(&addr, 0));
    }
    let cluster_id = match identity.get_or_create().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create cluster id; not initializing");
            return;
        }
    };
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(cluster_id, "initialized cluster"),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            tracing::info!("cluster already initialized")
        }
        Err(e) => tracing::error!(error = %e, "cannot initialize cluster"),
    }
}
