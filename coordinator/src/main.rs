//! `coordinator`: Trino's client protocol over the replicated resource managers.

use clap::Parser;
use coordinator::config::CoordinatorArgs;

#[derive(Parser, Debug)]
#[command(
    name = "coordinator",
    version,
    about = "A coordinator: Trino's client protocol, resource-group admission through the RMs, dispatch to workers",
    after_help = "Example: coordinator --id c1 --listen 127.0.0.1:8080 --rm 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --resource-groups resource-groups.json"
)]
struct Cli {
    #[command(flatten)]
    args: CoordinatorArgs,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => common::cli::usage_error("coordinator", e),
        Err(e) => e.exit(),
    };
    let config = cli
        .args
        .validate()
        .unwrap_or_else(|e| common::cli::usage_error("coordinator", e));
    common::telemetry::init();
    for w in &config.groups.warnings {
        tracing::warn!("resource groups: {w}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coordinator: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("coordinator: cannot listen on {}: {e}", config.listen);
                return 1;
            }
        };
        let c = match coordinator::node::start(config, listener).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("coordinator: {e}");
                return 1;
            }
        };
        let _ = tokio::signal::ctrl_c().await;
        c.shutdown().await;
        0
    }));
}
