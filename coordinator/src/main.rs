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
    for w in config.groups.iter().flat_map(|g| &g.warnings) {
        tracing::warn!("resource groups: {w}");
    }
    common::service::run_process("coordinator", || async move {
        let listener = common::service::bind(config.listen).await?;
        let c = coordinator::node::start(config, listener)
            .await
            .map_err(common::service::Exit::failure)?;
        common::service::until_signalled().await;
        c.shutdown().await;
        Ok(())
    })
}
