//! Node configuration: command-line flags and an optional TOML file with the
//! same keys (`--data-dir` on the command line is `data-dir` in the file).
//! A flag wins over the file. Everything is validated here, once, into a
//! [`NodeConfig`]; a problem is one message that names the key.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use common::auth::SharedSecret;
use serde::Deserialize;

use crate::NodeId;

/// Every setting, as given by flags or the file (all optional here).
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawConfig {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub id: Option<NodeId>,
    /// Address to listen on, HOST:PORT.
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory for the log, vote and snapshots (created if missing).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Initial voters as ID=HOST:PORT,... including this node. Used to
    /// initialize an empty cluster and to advertise this node's address.
    #[arg(long)]
    pub peers: Option<String>,
    /// File holding the internal shared secret (required unless the node
    /// listens on loopback only).
    #[arg(long)]
    pub shared_secret_file: Option<PathBuf>,
    /// This node's certificate chain (PEM): with it, the node serves
    /// HTTPS (Raft RPCs included) and calls the others over HTTPS.
    /// Reloaded when it changes or on SIGHUP.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The CA certificates (PEM) peers' certificates must chain to.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Whether clients must present a certificate the CA signed (mutual
    /// TLS): off, optional, required [default: off]. With it, Raft RPCs
    /// are taken only from `raft-rm` certificates (their subject's OU).
    #[arg(long, value_enum)]
    pub tls_client_auth: Option<common::tls::ClientAuth>,
    /// Leader heartbeat interval in ms [default: 50].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in ms [default: 150]. A follower that knew a
    /// leader waits election-timeout-max-ms more (openraft's leader lease).
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    /// Maximum election timeout in ms [default: 300].
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many applied entries [default: 5000].
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Entries kept in the log behind a snapshot, for slow followers [default: 1000].
    #[arg(long)]
    pub keep_logs_after_snapshot: Option<u64>,
    /// Send a leader's new entries to the followers while its own fsync of
    /// them runs, so the two fsyncs overlap [default: true]. `false` waits
    /// for the leader's fsync first (openraft 0.9's own order).
    #[arg(long)]
    pub early_replication: Option<bool>,
    /// Interval in ms at which the leader stamps its time into the log [default: 200].
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Trino resource-groups.json (with our `consistency` field). The leader
    /// proposes it when the cluster has no configuration yet; later changes
    /// go through `POST /v1/admin/config`.
    #[arg(long)]
    pub resource_groups: Option<PathBuf>,
    /// Consistency of groups that do not set one: `linearizable` or
    /// `eventual:MS` (the staleness bound) [default: linearizable].
    #[arg(long)]
    pub default_consistency: Option<String>,
    /// A coordinator session not renewed within this many ms expires and
    /// loses its admissions [default: 10000].
    #[arg(long)]
    pub session_lease_ms: Option<u64>,
    /// A query queued longer than this many ms fails [default: 8640000000,
    /// 100 days: upstream has no queue timeout of its own].
    #[arg(long)]
    pub queue_timeout_ms: Option<u64>,
    /// A queued query whose coordinator died, and that no coordinator
    /// adopted within this many ms, fails [default: 300000].
    #[arg(long)]
    pub orphan_timeout_ms: Option<u64>,
    /// Upstream's `query.low-memory-killer.policy`: `none`,
    /// `total-reservation` or `total-reservation-on-blocked-nodes`
    /// [default: total-reservation-on-blocked-nodes].
    #[arg(long)]
    pub low_memory_killer_policy: Option<String>,
    /// Upstream's `query.low-memory-killer.delay`: how long the cluster must
    /// stay out of memory before a kill, e.g. `1s`, `5m` [default: 5m].
    #[arg(long)]
    pub low_memory_killer_delay: Option<String>,
    /// A killed query's memory still held after this long counts as leaked,
    /// and the next episode may kill again [default: 1m].
    #[arg(long)]
    pub low_memory_killer_leak_timeout: Option<String>,
    /// Upstream's `query.max-memory`: most a query may reserve over the
    /// cluster, e.g. `20GB`, or `none` [default: 20GB].
    #[arg(long)]
    pub query_max_memory: Option<String>,
    /// Upstream's `query.max-memory-per-node`: most a query may reserve on
    /// one worker, or `none` [default: none].
    #[arg(long)]
    pub query_max_memory_per_node: Option<String>,
    /// Never initialize a cluster, even with an empty data dir and the
    /// lowest id in `--peers`: wait to be added with `raft-rm admin
    /// add-learner` (a new node, or a removed one coming back wiped).
    #[arg(long)]
    #[serde(default)]
    pub join: bool,
}

impl RawConfig {
    /// `self` (flags) over `file`.
    pub fn or(self, file: RawConfig) -> RawConfig {
        RawConfig {
            id: self.id.or(file.id),
            listen: self.listen.or(file.listen),
            data_dir: self.data_dir.or(file.data_dir),
            peers: self.peers.or(file.peers),
            shared_secret_file: self.shared_secret_file.or(file.shared_secret_file),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_ca: self.tls_ca.or(file.tls_ca),
            tls_client_auth: self.tls_client_auth.or(file.tls_client_auth),
            heartbeat_ms: self.heartbeat_ms.or(file.heartbeat_ms),
            election_timeout_min_ms: self
                .election_timeout_min_ms
                .or(file.election_timeout_min_ms),
            election_timeout_max_ms: self
                .election_timeout_max_ms
                .or(file.election_timeout_max_ms),
            snapshot_every: self.snapshot_every.or(file.snapshot_every),
            keep_logs_after_snapshot: self
                .keep_logs_after_snapshot
                .or(file.keep_logs_after_snapshot),
            tick_ms: self.tick_ms.or(file.tick_ms),
            early_replication: self.early_replication.or(file.early_replication),
            resource_groups: self.resource_groups.or(file.resource_groups),
            default_consistency: self.default_consistency.or(file.default_consistency),
            session_lease_ms: self.session_lease_ms.or(file.session_lease_ms),
            queue_timeout_ms: self.queue_timeout_ms.or(file.queue_timeout_ms),
            orphan_timeout_ms: self.orphan_timeout_ms.or(file.orphan_timeout_ms),
            low_memory_killer_policy: self
                .low_memory_killer_policy
                .or(file.low_memory_killer_policy),
            low_memory_killer_delay: self
                .low_memory_killer_delay
                .or(file.low_memory_killer_delay),
            low_memory_killer_leak_timeout: self
                .low_memory_killer_leak_timeout
                .or(file.low_memory_killer_leak_timeout),
            query_max_memory: self.query_max_memory.or(file.query_max_memory),
            query_max_memory_per_node: self
                .query_max_memory_per_node
                .or(file.query_max_memory_per_node),
            join: self.join || file.join,
        }
    }

    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            message: e.message().to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{key} is required")]
    Missing { key: &'static str },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Raft timings. Defaults give sub-second failover on loopback: a follower
/// campaigns after `election_max` (the leader lease openraft 0.9 honours)
/// plus a random timeout in `election_min..election_max`, drawn afresh for
/// every wait ([`crate::election`]), i.e. 450-600 ms after the last
/// heartbeat.
#[derive(Clone, Debug)]
pub struct Timings {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    pub tick: Duration,
    /// How often the leader stamps running queries' memory and CPU into
    /// the log ([`crate::usage`]).
    pub usage: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            tick: Duration::from_millis(200),
            usage: Duration::from_secs(1),
        }
    }
}

/// A validated node configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// The address other nodes use for this one (its entry in `peers`).
    pub advertise: String,
    pub data_dir: PathBuf,
    pub peers: BTreeMap<NodeId, String>,
    pub secret: Option<SharedSecret>,
    /// HTTPS for everything this node serves and calls (`None`: HTTP).
    pub tls: Option<common::tls::Tls>,
    pub timings: Timings,
    pub snapshot_every: u64,
    /// See [`crate::network::early`].
    pub early_replication: bool,
    pub keep_logs_after_snapshot: u64,
    pub admission: AdmissionConfig,
    pub killer: crate::killer::KillerConfig,
    /// Never initialize a cluster; wait to be added (`--join`).
    pub join: bool,
}

/// Admission settings this node proposes (the log holds the ones in force).
#[derive(Clone, Debug)]
pub struct AdmissionConfig {
    /// The file's text and its validated form, if a file was given.
    pub resource_groups: Option<(String, common::resource_groups::ResourceGroups)>,
    pub default_consistency: common::resource_groups::Consistency,
    pub settings: crate::machine::admission::AdmissionSettings,
}

fn killer_config(raw: &RawConfig) -> Result<crate::killer::KillerConfig, ConfigError> {
    let defaults = crate::killer::KillerConfig::default();
    let duration = |key: &'static str, text: &Option<String>, default: Duration| match text {
        None => Ok(default),
        Some(t) => match common::units::parse_duration(t) {
            Ok(d) if !d.is_zero() || key == "low-memory-killer-delay" => Ok(d),
            Ok(_) => Err(invalid(key, "must be positive")),
            Err(e) => Err(invalid(key, e)),
        },
    };
    let size = |key: &'static str, text: &Option<String>, default: Option<u64>| match text {
        None => Ok(default),
        Some(t) if t == "none" => Ok(None),
        Some(t) => match common::units::parse_data_size(t) {
            Ok(0) => Err(invalid(key, "must be positive (or none)")),
            Ok(b) => Ok(Some(b)),
            Err(e) => Err(invalid(key, e)),
        },
    };
    Ok(crate::killer::KillerConfig {
        policy: match &raw.low_memory_killer_policy {
            None => defaults.policy,
            Some(t) => crate::killer::parse_policy(t)
                .map_err(|e| invalid("low-memory-killer-policy", e))?,
        },
        delay: duration(
            "low-memory-killer-delay",
            &raw.low_memory_killer_delay,
            defaults.delay,
        )?,
        leak_timeout: duration(
            "low-memory-killer-leak-timeout",
            &raw.low_memory_killer_leak_timeout,
            defaults.leak_timeout,
        )?,
        max_memory: size(
            "query-max-memory",
            &raw.query_max_memory,
            defaults.max_memory,
        )?,
        max_memory_per_node: size(
            "query-max-memory-per-node",
            &raw.query_max_memory_per_node,
            defaults.max_memory_per_node,
        )?,
        interval: defaults.interval,
    })
}

pub fn parse_consistency(text: &str) -> Result<common::resource_groups::Consistency, ConfigError> {
    use common::resource_groups::Consistency;
    match text.split_once(':') {
        None if text == "linearizable" => Ok(Consistency::Linearizable),
        Some(("eventual", ms)) => match ms.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Consistency::Eventual {
                max_staleness_ms: ms,
            }),
            _ => Err(invalid(
                "default-consistency",
                format!("'{ms}' is not a positive number of ms"),
            )),
        },
        _ => Err(invalid(
            "default-consistency",
            format!("'{text}' is not 'linearizable' or 'eventual:MS'"),
        )),
    }
}

pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    common::cli::peer_map(text).map_err(|m| invalid("peers", m))
}

fn check_host_port(key: &'static str, addr: &str) -> Result<(), ConfigError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, format!("'{addr}' is not HOST:PORT")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid(key, format!("'{addr}' is not HOST:PORT")));
    }
    Ok(())
}

impl NodeConfig {
    pub fn from_raw(raw: RawConfig) -> Result<NodeConfig, ConfigError> {
        let killer = killer_config(&raw)?;
        let id = raw.id.ok_or(ConfigError::Missing { key: "id" })?;
        if id == 0 {
            return Err(invalid("id", "must be a positive integer"));
        }
        let listen_text = raw.listen.ok_or(ConfigError::Missing { key: "listen" })?;
        check_host_port("listen", &listen_text)?;
        let listen = listen_text
            .to_socket_addrs()
            .map_err(|e| invalid("listen", format!("cannot resolve '{listen_text}': {e}")))?
            .next()
            .ok_or_else(|| invalid("listen", format!("'{listen_text}' resolves to no address")))?;
        let data_dir = raw
            .data_dir
            .ok_or(ConfigError::Missing { key: "data-dir" })?;
        let peers = parse_peers(&raw.peers.ok_or(ConfigError::Missing { key: "peers" })?)?;
        let advertise = peers
            .get(&id)
            .cloned()
            .ok_or_else(|| invalid("peers", format!("must include this node (id {id})")))?;
        let secret = match &raw.shared_secret_file {
            Some(path) => Some(
                SharedSecret::from_file(path)
                    .map_err(|e| invalid("shared-secret-file", e.to_string()))?,
            ),
            None => None,
        };
        let tls = common::tls::from_files(
            raw.tls_cert.as_deref(),
            raw.tls_key.as_deref(),
            raw.tls_ca.as_deref(),
            raw.tls_client_auth.unwrap_or_default(),
        )
        .map_err(|e| invalid("tls", e))?;
        if secret.is_none() && !listen.ip().is_loopback() {
            return Err(invalid(
                "shared-secret-file",
                format!("required when listening on a non-loopback address ({listen})"),
            ));
        }
        let d = Timings::default();
        let ms =
            |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
        let timings = Timings {
            heartbeat: ms(raw.heartbeat_ms, d.heartbeat),
            election_min: ms(raw.election_timeout_min_ms, d.election_min),
            election_max: ms(raw.election_timeout_max_ms, d.election_max),
            tick: ms(raw.tick_ms, d.tick),
            usage: d.usage,
        };
        if timings.heartbeat.is_zero() || timings.tick.is_zero() {
            return Err(invalid(
                "heartbeat-ms",
                "heartbeat-ms and tick-ms must be positive",
            ));
        }
        if timings.election_min < timings.heartbeat * 2 {
            return Err(invalid(
                "election-timeout-min-ms",
                format!(
                    "{} ms must be at least twice heartbeat-ms ({} ms)",
                    timings.election_min.as_millis(),
                    timings.heartbeat.as_millis()
                ),
            ));
        }
        if timings.election_max <= timings.election_min {
            return Err(invalid(
                "election-timeout-max-ms",
                "must be greater than election-timeout-min-ms",
            ));
        }
        let snapshot_every = raw.snapshot_every.unwrap_or(5000);
        if snapshot_every == 0 {
            return Err(invalid("snapshot-every", "must be positive"));
        }
        let default_consistency = match &raw.default_consistency {
            Some(text) => parse_consistency(text)?,
            None => common::resource_groups::Consistency::Linearizable,
        };
        let resource_groups = match &raw.resource_groups {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "resource-groups",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let rg =
                    common::resource_groups::parse(&text, &default_consistency).map_err(|e| {
                        invalid(
                            "resource-groups",
                            format!("{}: {}", path.display(), e.0.join("; ")),
                        )
                    })?;
                Some((text, rg))
            }
        };
        let defaults = crate::machine::admission::AdmissionSettings::default();
        let admission = AdmissionConfig {
            resource_groups,
            default_consistency,
            settings: crate::machine::admission::AdmissionSettings {
                session_lease_ms: raw.session_lease_ms.unwrap_or(defaults.session_lease_ms),
                queue_timeout_ms: raw.queue_timeout_ms.unwrap_or(defaults.queue_timeout_ms),
                orphan_timeout_ms: raw.orphan_timeout_ms.unwrap_or(defaults.orphan_timeout_ms),
            },
        };
        let max = crate::machine::admission::MAX_SETTING_MS;
        for (key, value) in [
            ("session-lease-ms", admission.settings.session_lease_ms),
            ("queue-timeout-ms", admission.settings.queue_timeout_ms),
            ("orphan-timeout-ms", admission.settings.orphan_timeout_ms),
        ] {
            if value == 0 || value > max {
                return Err(invalid(
                    key,
                    format!("must be 1 to {max} (100 days), not {value}"),
                ));
            }
        }
        Ok(NodeConfig {
            admission,
            killer,
            id,
            listen,
            advertise,
            data_dir,
            peers,
            secret,
            tls,
            timings,
            snapshot_every,
            early_replication: raw.early_replication.unwrap_or(true),
            keep_logs_after_snapshot: raw.keep_logs_after_snapshot.unwrap_or(1000),
            join: raw.join,
        })
    }

    /// openraft's configuration derived from ours.
    pub fn raft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "raft-rm".into(),
            heartbeat_interval: self.timings.heartbeat.as_millis() as u64,
            election_timeout_min: self.timings.election_min.as_millis() as u64,
            election_timeout_max: self.timings.election_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            // Bounded so one AppendEntries body stays well under the Raft
            // route's body limit even with maximal entries.
            max_payload_entries: 64,
            snapshot_max_chunk_size: 1024 * 1024,
            // openraft draws its election timeout once per process, which
            // splits votes round after round; crate::election runs the
            // timer instead, with a fresh draw per wait.
            enable_elect: false,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawConfig {
        RawConfig {
            id: Some(1),
            listen: Some("127.0.0.1:7001".into()),
            data_dir: Some("/tmp/x".into()),
            peers: Some("1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003".into()),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_loopback_node_without_secret() {
        let c = NodeConfig::from_raw(raw()).unwrap();
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.advertise, "127.0.0.1:7001");
        c.raft_config().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let cases: Vec<(RawConfig, &str)> = vec![
            (RawConfig { id: None, ..raw() }, "id is required"),
            (
                RawConfig {
                    id: Some(0),
                    ..raw()
                },
                "id: must be a positive integer",
            ),
            (
                RawConfig {
                    listen: Some("nope".into()),
                    ..raw()
                },
                "listen: 'nope' is not HOST:PORT",
            ),
            (
                RawConfig {
                    peers: Some("1=a:1,x".into()),
                    ..raw()
                },
                "peers: 'x' is not ID=HOST:PORT",
            ),
            (
                RawConfig {
                    peers: Some("2=a:1".into()),
                    ..raw()
                },
                "peers: must include this node (id 1)",
            ),
            (
                RawConfig {
                    peers: Some("1=a:1,1=b:2".into()),
                    ..raw()
                },
                "peers: node 1 is listed twice",
            ),
            (
                RawConfig {
                    listen: Some("0.0.0.0:7001".into()),
                    ..raw()
                },
                "shared-secret-file: required",
            ),
            (
                RawConfig {
                    heartbeat_ms: Some(100),
                    ..raw()
                },
                "election-timeout-min-ms: 150 ms must be at least twice",
            ),
            (
                RawConfig {
                    election_timeout_max_ms: Some(150),
                    ..raw()
                },
                "election-timeout-max-ms: must be greater",
            ),
            (
                RawConfig {
                    session_lease_ms: Some(u64::MAX),
                    ..raw()
                },
                "session-lease-ms: must be 1 to 8640000000 (100 days)",
            ),
            (
                RawConfig {
                    queue_timeout_ms: Some(0),
                    ..raw()
                },
                "queue-timeout-ms: must be 1 to 8640000000 (100 days)",
            ),
        ];
        for (raw, want) in cases {
            let got = NodeConfig::from_raw(raw).unwrap_err().to_string();
            assert!(got.starts_with(want), "got '{got}', want '{want}...'");
        }
    }

    #[test]
    fn file_keys_match_flags_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rm.toml");
        std::fs::write(
            &path,
            "id = 2\nlisten = \"127.0.0.1:7002\"\ndata-dir = \"/d\"\npeers = \"2=127.0.0.1:7002\"\nheartbeat-ms = 40\n",
        )
        .unwrap();
        let file = RawConfig::from_file(&path).unwrap();
        let merged = RawConfig {
            heartbeat_ms: Some(60),
            ..Default::default()
        }
        .or(file);
        let c = NodeConfig::from_raw(merged).unwrap();
        assert_eq!((c.id, c.timings.heartbeat.as_millis()), (2, 60));
        let file_only = NodeConfig::from_raw(RawConfig::from_file(&path).unwrap()).unwrap();
        assert_eq!(file_only.timings.heartbeat.as_millis(), 40);

        std::fs::write(&path, "id = 2\nbogus = 1\n").unwrap();
        let err = RawConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }
}
