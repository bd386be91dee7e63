//! Worker flags, validated into a [`WorkerConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use common::auth::SharedSecret;

/// The smallest `--fencing-bound-ms`: the watch polls every fifth of the
/// bound, and a healthy RM's staleness alone reaches 200 ms (`tick-ms`).
pub const MIN_FENCING_BOUND_MS: u64 = 250;

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// This worker's name, unique in the cluster.
    #[arg(long)]
    pub id: String,
    /// Address to listen on, HOST:PORT.
    #[arg(long)]
    pub listen: String,
    /// Address the others use for this worker [default: --listen].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Every resource manager, HOST:PORT,...
    #[arg(long, value_delimiter = ',')]
    pub rm: Vec<String>,
    /// Size of the general memory pool in bytes.
    #[arg(long)]
    pub memory_bytes: u64,
    /// File holding the internal shared secret (required unless the worker
    /// listens on loopback only).
    #[arg(long)]
    pub shared_secret_file: Option<PathBuf>,
    /// Heartbeat and announcement interval in ms.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// Directory for the revoked fencing tokens, kept across restarts
    /// (created if missing). Without it they are kept in memory only.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How long a task under a fencing token may run without fresh word
    /// from an RM (contact age plus that RM's staleness), in ms; past it
    /// such tasks stop [default: half the RMs' session lease].
    #[arg(long)]
    pub fencing_bound_ms: Option<u64>,
    /// The `files` catalog: one schema per subdirectory, one table per
    /// `.parquet` or `.csv` file (CSV with a header row). Without it, the
    /// worker has no `files` catalog.
    #[arg(long)]
    pub catalog_dir: Option<PathBuf>,
    /// Where generated `tpch` tables are cached (shared safely by workers
    /// on one machine) [default: $XDG_CACHE_HOME/raft-rm/tpch, else
    /// ~/.cache/raft-rm/tpch].
    #[arg(long)]
    pub tpch_cache_dir: Option<PathBuf>,
    /// HTTPS: this worker's certificate and key, the CA, and whether
    /// callers must present certificates (coordinators and RMs do).
    #[command(flatten)]
    pub tls: common::tls::TlsArgs,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub id: String,
    pub listen: SocketAddr,
    pub advertise: String,
    pub rms: Vec<String>,
    pub memory_bytes: u64,
    pub secret: Option<SharedSecret>,
    /// HTTPS for what it serves and calls (`None`: HTTP).
    pub tls: Option<common::tls::Tls>,
    pub heartbeat: Duration,
    pub data_dir: Option<PathBuf>,
    /// `None`: derived from the RMs' session lease at start.
    pub fencing_bound: Option<Duration>,
    /// How queries run (see [`crate::query`]).
    pub queries: crate::query::QuerySettings,
}

impl WorkerArgs {
    pub fn validate(self) -> Result<WorkerConfig, String> {
        common::auth::check_name("id", &self.id)?;
        let listen = common::cli::listen_addr(&self.listen)?;
        let rms = common::cli::rm_list(self.rm)?;
        if self.memory_bytes == 0 {
            return Err("memory-bytes: must be positive".into());
        }
        if self.heartbeat_ms == 0 {
            return Err("heartbeat-ms: must be positive".into());
        }
        if let Some(ms) = self.fencing_bound_ms {
            if ms < MIN_FENCING_BOUND_MS {
                return Err(format!(
                    "fencing-bound-ms: {ms} ms is below {MIN_FENCING_BOUND_MS} ms (the watch could not keep it)"
                ));
            }
        }
        let secret = common::cli::internal_secret(self.shared_secret_file.as_deref(), listen)?;
        if let Some(dir) = &self.catalog_dir {
            if !dir.is_dir() {
                return Err(format!("catalog-dir: {} is not a directory", dir.display()));
            }
        }
        let tpch_cache = self
            .tpch_cache_dir
            .unwrap_or_else(engine::tpch::default_cache);
        // Each worker's own: emptied at start, removed at shutdown.
        let spool = match &self.data_dir {
            Some(d) => d.join("spool"),
            None => std::env::temp_dir().join(format!(
                "raft-rm-worker-{}-{}-spool",
                self.id,
                std::process::id()
            )),
        };
        let runner = std::env::current_exe().map_err(|e| {
            format!("cannot find this program's path (to start query processes): {e}")
        })?;
        Ok(WorkerConfig {
            id: self.id,
            advertise: self.advertise.unwrap_or_else(|| listen.to_string()),
            listen,
            rms,
            memory_bytes: self.memory_bytes,
            secret,
            tls: self.tls.load().map_err(|e| format!("tls: {e}"))?,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            data_dir: self.data_dir,
            fencing_bound: self.fencing_bound_ms.map(Duration::from_millis),
            queries: crate::query::QuerySettings {
                runner,
                catalogs: engine::CatalogConfig {
                    tpch_cache,
                    files_dir: self.catalog_dir,
                },
                spool,
            },
        })
    }
}
