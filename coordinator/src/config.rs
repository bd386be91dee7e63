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
    /// Base URL clients follow (`nextUri`): a load balancer in front of all
    /// coordinators, so any of them can answer [default: http://LISTEN].
    #[arg(long)]
    pub external_url: Option<String>,
    /// Every resource manager, HOST:PORT,...
    #[arg(long, value_delimiter = ',')]
    pub rm: Vec<String>,
    /// Trino resource-groups.json (the same file the RMs run with).
    #[arg(long)]
    pub resource_groups: PathBuf,
    /// File holding the internal shared secret.
    #[arg(long)]
    pub shared_secret_file: Option<PathBuf>,
    /// Cancel a query whose client stops polling for this many seconds.
    #[arg(long, default_value_t = 300)]
    pub client_timeout_secs: u64,
    /// Eventual mode: how often to read the aggregated view and report usage (ms).
    #[arg(long, default_value_t = 100)]
    pub refresh_ms: u64,
    /// Eventual mode: above this fraction of a limit, start at most one
    /// query per fresh view (upstream's freshness gate).
    #[arg(long, default_value_t = 0.8)]
    pub freshness_gate: f64,
}

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub id: String,
    pub listen: SocketAddr,
    pub external_url: Option<String>,
    pub rms: Vec<String>,
    pub groups: ResourceGroups,
    pub secret: Option<SharedSecret>,
    pub client_timeout: Duration,
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
        let text = std::fs::read_to_string(&self.resource_groups).map_err(|e| {
            format!(
                "resource-groups: cannot read {}: {e}",
                self.resource_groups.display()
            )
        })?;
        let groups =
            common::resource_groups::parse(&text, &Consistency::Linearizable).map_err(|e| {
                format!(
                    "resource-groups: {}: {}",
                    self.resource_groups.display(),
                    e.0.join("; ")
                )
            })?;
        let secret = common::cli::internal_secret(self.shared_secret_file.as_deref(), listen)?;
        if self.refresh_ms == 0 {
            return Err("refresh-ms: must be positive".into());
        }
        if !(self.freshness_gate > 0.0 && self.freshness_gate <= 1.0) {
            return Err("freshness-gate: must be in (0, 1]".into());
        }
        if self.client_timeout_secs == 0 {
            return Err("client-timeout-secs: must be positive".into());
        }
        Ok(CoordinatorConfig {
            id: self.id,
            listen,
            external_url: self.external_url,
            rms,
            groups,
            secret,
            client_timeout: Duration::from_secs(self.client_timeout_secs),
            refresh: Duration::from_millis(self.refresh_ms),
            freshness_gate: self.freshness_gate,
        })
    }
}
