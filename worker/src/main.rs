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

fn main() -> std::process::ExitCode {
    // A query's own process (see worker::query); not for people to run.
    if std::env::args().nth(1).as_deref() == Some(worker::query::RUN_QUERY) {
        return worker::query::main();
    }
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
    if let Err(e) = common::failpoints::setup_from_env() {
        common::cli::usage_error("worker", e);
    }
    common::service::run_process("worker", || async move {
        let listener = common::service::bind(config.listen).await?;
        let clock = common::clock::SystemClock::shared();
        let w = worker::node::start(config, listener, clock)
            .await
            .map_err(common::service::Exit::failure)?;
        common::service::until_signalled().await;
        w.shutdown().await;
        Ok(())
    })
}
