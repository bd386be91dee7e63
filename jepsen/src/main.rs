//! `jepsen`: run a local cluster, measure it, break it. Parses the command
//! line and runs the command ([`jepsen::cli`]).

use clap::Parser;
use jepsen::cli::Cli;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => common::cli::usage_error("jepsen", e),
        Err(e) => e.exit(),
    };
    jepsen::log::init(cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let handles_ctrl_c = cli.command.handles_ctrl_c();
    let result = runtime.block_on(async move {
        if handles_ctrl_c {
            return jepsen::cli::run(cli.command).await;
        }
        tokio::select! {
            r = jepsen::cli::run(cli.command) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Dropping the runtime drops every task, and with them the clusters,
    // which kill their processes: nothing outlives an error or Ctrl-C.
    drop(runtime);
    if let Err(e) = result {
        eprintln!("jepsen: {e:#}");
        std::process::exit(1);
    }
}
