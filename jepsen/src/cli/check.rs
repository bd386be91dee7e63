//! `jepsen check`: the checkers again on a saved test run.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The run's directory [default: store/latest].
    #[arg(default_value = "store/latest")]
    dir: PathBuf,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let checked = crate::test::check_saved(&args.dir)?;
    println!("{}", serde_json::to_string_pretty(&checked)?);
    if checked["valid"] == false {
        anyhow::bail!("the history is not valid");
    }
    Ok(())
}
