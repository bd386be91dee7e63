//! Resource-group files for the system tests.

use std::path::{Path, PathBuf};

/// The stack's groups: `g` (alice, bob; limit 2, 2 queue slots), `ev`
/// (eve; eventual mode, limit 1), `mem` (mallory; limit 10), and for the
/// memory and CPU limits (in each mode): `memlim` (mona; soft memory limit
/// 300 bytes), `evmem` (emma; the same, eventual), `cpulim` (carl; hard CPU
/// limit 2 s, regenerated at 500 ms per second), `evcpu` (cora; the same,
/// eventual) and `pq` (pete; each query at most 1 s of CPU).
pub const STACK: &str = r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":2,"maxQueued":2},
  {"name":"ev","hardConcurrencyLimit":1,"maxQueued":10,"consistency":{"mode":"eventual","maxStalenessMs":10000}},
  {"name":"mem","hardConcurrencyLimit":10,"maxQueued":10},
  {"name":"memlim","hardConcurrencyLimit":5,"maxQueued":10,"softMemoryLimit":"300B"},
  {"name":"evmem","hardConcurrencyLimit":5,"maxQueued":10,"softMemoryLimit":"300B","consistency":{"mode":"eventual","maxStalenessMs":10000}},
  {"name":"cpulim","hardConcurrencyLimit":5,"maxQueued":10,"hardCpuLimit":"2s"},
  {"name":"evcpu","hardConcurrencyLimit":5,"maxQueued":10,"hardCpuLimit":"2s","consistency":{"mode":"eventual","maxStalenessMs":10000}},
  {"name":"pq","hardConcurrencyLimit":5,"maxQueued":10,"perQueryLimits":{"cpuTimeLimit":"1s"}}],
  "selectors":[{"user":"alice|bob","group":"g"},{"user":"eve","group":"ev"},{"user":"mallory","group":"mem"},
    {"user":"mona","group":"memlim"},{"user":"emma","group":"evmem"},{"user":"carl","group":"cpulim"},
    {"user":"cora","group":"evcpu"},{"user":"pete","group":"pq"}],
  "cpuQuotaPeriod":"4s"}"#;

/// Writes `json` as `groups.json` in `dir`; answers its path.
pub fn write(dir: &Path, json: &str) -> PathBuf {
    let path = dir.join("groups.json");
    std::fs::write(&path, json).unwrap();
    path
}
