//! `raft-rm`: run a resource-manager node, or administer a running cluster.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use raft_rm::config::{NodeConfig, RawConfig};
use raft_rm::node::{self, NodeOptions, StartError};

#[derive(Parser, Debug)]
#[command(
    name = "raft-rm",
    version,
    about = "A Raft-replicated resource manager node",
    args_conflicts_with_subcommands = true,
    after_help = "Example: raft-rm --id 1 --listen 127.0.0.1:7001 --data-dir /var/lib/rm1 \\\n  --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
)]
struct Cli {
    /// TOML file with the same keys as the flags (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    node: RawConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Administer a running cluster (membership, step-down, status).
    Admin(raft_rm::admin_cli::AdminArgs),
    /// Show what a stopped node's data dir holds (vote, log range, snapshot).
    Inspect(raft_rm::inspect::InspectArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => common::cli::usage_error("raft-rm", e),
        Err(e) => e.exit(),
    };
    common::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raft-rm: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match cli.command {
        Some(Command::Admin(args)) => {
            std::process::exit(runtime.block_on(raft_rm::admin_cli::run(args)))
        }
        Some(Command::Inspect(args)) => {
            std::process::exit(runtime.block_on(raft_rm::inspect::run(args)))
        }
        None => {}
    }
    let raw = match &cli.config {
        Some(path) => match RawConfig::from_file(path) {
            Ok(file) => cli.node.or(file),
            Err(e) => common::cli::usage_error("raft-rm", e),
        },
        None => cli.node,
    };
    let config =
        NodeConfig::from_raw(raw).unwrap_or_else(|e| common::cli::usage_error("raft-rm", e));
    std::process::exit(runtime.block_on(run(config)));
}

async fn run(config: NodeConfig) -> i32 {
    let node = match node::start(config, NodeOptions::default()).await {
        Ok(n) => n,
        Err(e @ StartError::Store(raft_rm::store::OpenError::Identity(_))) => {
            eprintln!("raft-rm: {e}");
            return common::cli::EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("raft-rm: {e}");
            return 1;
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    0
}

async fn wait_for_signal() {
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
}
