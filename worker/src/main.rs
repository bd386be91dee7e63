//! `worker`: run tasks for the coordinators, report to every RM.

use clap::Parser;
use worker::config::WorkerArgs;

#[derive(Parser, Debug)]
#[command(
    name = "worker",
    version,
    about = "A worker: runs tasks under a memory pool and reports to every resource manager",
    after_help = "Example: worker --id w1 --listen 127.0.0.1:8101 --rm 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --memory-bytes 8589934592"
)]
struct Cli {
    #[command(flatten)]
    args: WorkerArgs,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => common::cli::usage_error("worker", e),
        Err(e) => e.exit(),
    };
    let config = cli
        .args
        .validate()
        .unwrap_or_else(|e| common::cli::usage_error("worker", e));
    common::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("worker: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("worker: cannot listen on {}: {e}", config.listen);
                return 1;
            }
        };
        let w = match worker::node::start(config, listener, common::clock::SystemClock::shared())
            .await
        {
            Ok(w) => w,
            Err(e) => {
                eprintln!("worker: {e}");
                return 1;
            }
        };
        let _ = tokio::signal::ctrl_c().await;
        w.shutdown().await;
        0
    }));
}
