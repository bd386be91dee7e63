//! `jepsen check`: the checkers again on a saved test run.

use std::path::PathBuf;

use anyhow::Result;

use crate::checker::Validity;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The run's directory [default: store/latest].
    #[arg(default_value = "store/latest")]
    dir: PathBuf,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let checked = crate::test::check_saved(&args.dir)?;
    // Through a `Value`, as the run wrote its results: keys sorted.
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::to_value(&checked)?)?
    );
    if checked.valid == Validity::Invalid {
        anyhow::bail!("the history is not valid");
    }
    Ok(())
}
