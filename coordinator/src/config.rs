//! Coordinator flags, validated into a [`CoordinatorConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use common::auth::SharedSecret;
use common::resource_groups::{Consistency, ResourceGroups};

#[derive(Args, Debug, Clone)]
pub struct CoordinatorArgs {
    /// This coordinator's name, unique in the cluster.
    #[arg(long)]
    pub id: String,
    /// Address to listen on, HOST:PORT.
    #[arg(long)]
    pub listen: String,
    /// Address the RMs and other coordinators use for this coordinator
    /// (its announcement) [default: --listen].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Who may open the web UI at `/ui/`: `loopback` (requests from this
    /// machine only), `all` (read-only, behind the client authentication
    /// of --password-file if given), or `off`.
    #[arg(long, value_enum, default_value_t = WebUi::Loopback)]
    pub web_ui: WebUi,
    /// Base URL clients follow (`nextUri`): a load balancer in front of all
    /// coordinators, so any of them can answer [default: http://LISTEN, or https:// with TLS].
    #[arg(long)]
    pub external_url: Option<String>,
    /// Every resource manager, HOST:PORT,...
    #[arg(long, value_delimiter = ',')]
    pub rm: Vec<String>,
    /// Trino resource-groups.json to start with, until the configuration
    /// in the RMs' log is read (which then wins, and is followed). Without
    /// it, queries wait for the RMs' configuration.
    #[arg(long)]
    pub resource_groups: Option<PathBuf>,
    /// File holding the internal shared secret.
    #[arg(long)]
    pub shared_secret_file: Option<PathBuf>,
    /// Cancel a query whose client stops polling for this many seconds.
    #[arg(long, default_value_t = 300)]
    pub client_timeout_secs: u64,
    /// Users' groups for `userGroup` selectors, in the format of Trino's
    /// file group provider (`group:user1,user2` per line). Without it, no
    /// user is in any group.
    #[arg(long)]
    pub group_provider_file: Option<PathBuf>,
    /// Queries this coordinator keeps at most (running, queued, and ended
    /// ones until their client fetched the end): past it, ended queries
    /// are forgotten oldest first, and with none ended a submission is
    /// answered 503 (retry later), as an overloaded Trino does.
    #[arg(long, default_value_t = 10_000)]
    pub max_queries: usize,
    /// Eventual mode: how often to read the aggregated view and report usage (ms).
    #[arg(long, default_value_t = 100)]
    pub refresh_ms: u64,
    /// Eventual mode: above this fraction of a limit, start at most one
    /// query per fresh view (upstream's freshness gate).
    #[arg(long, default_value_t = 0.8)]
    pub freshness_gate: f64,
    /// HTTPS for clients and for internal calls: this coordinator's
    /// certificate and key, the CA, and whether callers must present
    /// certificates (`optional` lets Trino clients in without one).
    #[command(flatten)]
    pub tls: common::tls::TlsArgs,
    /// Authenticate clients with passwords from this file, in Trino's
    /// format (`user:hash`, bcrypt or PBKDF2), over HTTPS only; re-read
    /// when it changes.
    #[arg(long, requires = "tls_cert")]
    pub password_file: Option<PathBuf>,
    /// Who may act as another user (`X-Trino-User` other than the
    /// authenticated one), in Trino's file-based rules shape:
    /// `{"impersonation": [{"original_user", "new_user", "allow"}]}`.
    /// Without it, no one may.
    #[arg(long)]
    pub impersonation_rules: Option<PathBuf>,
    /// Authenticate clients with JWTs (`Authorization: Bearer`), over
    /// HTTPS only: the file holds a PEM public key (RS256, ES256) or a
    /// shared secret of at least 32 bytes (HS256). The principal is `sub`.
    #[arg(long, requires = "tls_cert")]
    pub jwt_key_file: Option<PathBuf>,
}

/// Who may open the web UI.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebUi {
    Loopback,
    All,
    Off,
}

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub id: String,
    pub listen: SocketAddr,
    /// Where the others reach this coordinator (HOST:PORT); `None`: the
    /// address it is bound to.
    pub advertise: Option<String>,
    pub web_ui: WebUi,
    pub external_url: Option<String>,
    pub rms: Vec<String>,
    /// The bootstrap configuration (`--resource-groups`), if given.
    pub groups: Option<ResourceGroups>,
    pub secret: Option<SharedSecret>,
    /// HTTPS for clients and internal calls (`None`: HTTP).
    pub tls: Option<common::tls::Tls>,
    /// Clients' passwords (checked at start, loaded by the node).
    pub password_file: Option<PathBuf>,
    pub jwt_key_file: Option<PathBuf>,
    pub impersonation: crate::authn::ImpersonationRules,
    pub client_timeout: Duration,
    pub max_queries: usize,
    pub user_groups: crate::user_groups::UserGroups,
    pub refresh: Duration,
    pub freshness_gate: f64,
}

impl CoordinatorArgs {
    pub fn validate(self) -> Result<CoordinatorConfig, String> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err("id: must be 1 to 64 of [A-Za-z0-9_-]".into());
        }
        let listen = common::cli::listen_addr(&self.listen)?;
        let rms = common::cli::rm_list(self.rm)?;
        let groups = match &self.resource_groups {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("resource-groups: cannot read {}: {e}", path.display()))?;
                let groups = common::resource_groups::parse(&text, &Consistency::Linearizable)
                    .map_err(|e| {
                        format!("resource-groups: {}: {}", path.display(), e.0.join("; "))
                    })?;
                Some(groups)
            }
        };
        let user_groups = match &self.group_provider_file {
            None => Default::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("group-provider-file: cannot read {}: {e}", path.display())
                })?;
                crate::user_groups::UserGroups::parse(&text)
                    .map_err(|e| format!("group-provider-file: {}: {e}", path.display()))?
            }
        };
        let secret = common::cli::internal_secret(self.shared_secret_file.as_deref(), listen)?;
        if self.refresh_ms == 0 {
            return Err("refresh-ms: must be positive".into());
        }
        if !(self.freshness_gate > 0.0 && self.freshness_gate <= 1.0) {
            return Err("freshness-gate: must be in (0, 1]".into());
        }
        if self.max_queries == 0 {
            return Err("max-queries: must be positive".into());
        }
        if self.client_timeout_secs == 0 {
            return Err("client-timeout-secs: must be positive".into());
        }
        if let Some(a) = &self.advertise {
            common::auth::check_name("advertise", a)?;
        }
        let advertise = self.advertise;
        Ok(CoordinatorConfig {
            id: self.id,
            listen,
            advertise,
            web_ui: self.web_ui,
            external_url: self.external_url,
            rms,
            groups,
            secret,
            tls: self.tls.load().map_err(|e| format!("tls: {e}"))?,
            password_file: match self.password_file {
                Some(path) => {
                    crate::authn::PasswordFile::load(&path)
                        .map_err(|e| format!("password-file: {e}"))?;
                    Some(path)
                }
                None => None,
            },
            jwt_key_file: match self.jwt_key_file {
                Some(path) => {
                    crate::authn::JwtKey::load(&path).map_err(|e| format!("jwt-key-file: {e}"))?;
                    Some(path)
                }
                None => None,
            },
            impersonation: match &self.impersonation_rules {
                None => Default::default(),
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!("impersonation-rules: cannot read {}: {e}", path.display())
                    })
                    .and_then(|t| {
                        crate::authn::ImpersonationRules::parse(&t)
                            .map_err(|e| format!("impersonation-rules: {}: {e}", path.display()))
                    })?,
            },
            client_timeout: Duration::from_secs(self.client_timeout_secs),
            max_queries: self.max_queries,
            user_groups,
            refresh: Duration::from_millis(self.refresh_ms),
            freshness_gate: self.freshness_gate,
        })
    }
}
