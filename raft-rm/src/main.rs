//! `raft-rm`: run a resource-manager node, or administer a running cluster.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use common::service::Exit;
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
    /// List the store's failpoints (`RAFT_RM_CRASH_AT`); exit status 2 when
    /// this build has none (it was built without the feature `failpoints`).
    Failpoints,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => common::cli::usage_error("raft-rm", e),
        Err(e) => e.exit(),
    };
    common::telemetry::init();
    let config = match cli.command {
        Some(Command::Admin(args)) => common::service::run_process("raft-rm", || async {
            Exit::status(raft_rm::admin_cli::run(args).await)
        }),
        Some(Command::Inspect(args)) => common::service::run_process("raft-rm", || async {
            Exit::status(raft_rm::inspect::run(args).await)
        }),
        Some(Command::Failpoints) => {
            if !raft_rm::failpoints::COMPILED_IN {
                common::cli::usage_error(
                    "raft-rm",
                    "this build has no failpoints (build with --features raft-rm/failpoints)",
                );
            }
            for name in raft_rm::failpoints::ALL {
                println!("{name}");
            }
            std::process::exit(0);
        }
        None => {
            let raw = match &cli.config {
                Some(path) => match RawConfig::from_file(path) {
                    Ok(file) => cli.node.or(file),
                    Err(e) => common::cli::usage_error("raft-rm", e),
                },
                None => cli.node,
            };
            NodeConfig::from_raw(raw).unwrap_or_else(|e| common::cli::usage_error("raft-rm", e))
        }
    };
    common::service::run_process("raft-rm", || run(config))
}

async fn run(config: NodeConfig) -> Result<(), Exit> {
    raft_rm::failpoints::arm_from_env().map_err(Exit::usage)?;
    common::failpoints::setup_from_env().map_err(Exit::usage)?;
    let node = match node::start(config, NodeOptions::default()).await {
        Ok(n) => n,
        Err(e @ StartError::Store(raft_rm::store::OpenError::Identity(_))) => {
            return Err(Exit::usage(e));
        }
        Err(e) => return Err(Exit::failure(e)),
    };
    common::service::until_signalled().await;
    node.shutdown().await;
    Ok(())
}
