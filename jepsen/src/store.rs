//! `store/`: where every command's run directory goes, and its
//! `results.json`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

/// A fresh run directory, `store/NAME/<ms since the epoch>`, with
/// `store/latest` pointing at it.
pub fn run_dir(name: &str) -> Result<PathBuf> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let dir = PathBuf::from("store").join(name).join(stamp.to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let latest = PathBuf::from("store").join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(dir.strip_prefix("store")?, &latest);
    Ok(dir)
}

/// Writes a run's `results.json` and says where.
pub fn save_results(dir: &Path, results: &impl Serialize) -> Result<()> {
    let path = dir.join("results.json");
    // Through a `Value`, whose map keeps its keys sorted: the file's key
    // order does not depend on how the caller's types are declared.
    let value = serde_json::to_value(results).context("results as JSON")?;
    std::fs::write(&path, serde_json::to_vec_pretty(&value)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results: {}", path.display());
    Ok(())
}
