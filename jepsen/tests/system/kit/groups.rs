//! Resource-group files for the system tests.

use std::path::{Path, PathBuf};

/// The stack's groups: `g` (alice, bob; limit 2, 2 queue slots), `ev`
/// (eve; eventual mode, limit 1) and `mem` (mallory; limit 10).
pub const STACK: &str = r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":2,"maxQueued":2},
  {"name":"ev","hardConcurrencyLimit":1,"maxQueued":10,"consistency":{"mode":"eventual","maxStalenessMs":10000}},
  {"name":"mem","hardConcurrencyLimit":10,"maxQueued":10}],
  "selectors":[{"user":"alice|bob","group":"g"},{"user":"eve","group":"ev"},{"user":"mallory","group":"mem"}]}"#;

/// Writes `json` as `groups.json` in `dir`; answers its path.
pub fn write(dir: &Path, json: &str) -> PathBuf {
    let path = dir.join("groups.json");
    std::fs::write(&path, json).unwrap();
    path
}
