//! The history of a test run, as Jepsen keeps it: every operation a client
//! (or the nemesis) invokes, then its completion, `ok`, `fail` or `info`.
//! `info` means the outcome is unknown (a timeout, a lost connection): the
//! operation may or may not have taken effect, at any time after it was
//! invoked. A client that gets `info` continues as a new process, so one
//! process never has two operations open.
//!
//! Written as `history.jsonl`, one op per line, as it happens: a run that
//! dies still leaves the history up to that point.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// A client process number, or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Nemesis(NemesisTag),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NemesisTag {
    Nemesis,
}

pub const NEMESIS: Process = Process::Nemesis(NemesisTag::Nemesis);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub index: u64,
    /// Since the start of the run.
    pub time_ns: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Records ops in memory and appends each to `history.jsonl`.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    ops: Vec<Op>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    tally: Tally,
}

/// Counts for the progress line, kept as ops are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Client ops completed (ok, fail or info).
    pub client_ops: u64,
    /// Faults the nemesis put on (heals not counted).
    pub faults: u64,
}

impl Recorder {
    pub fn new(file: Option<&Path>) -> Result<Recorder> {
        let file = match file {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Recorder {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                ops: Vec::new(),
                file,
                tally: Tally::default(),
            }),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn record(
        &self,
        process: Process,
        kind: OpType,
        f: &str,
        value: Value,
        error: Option<String>,
    ) -> Op {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let op = Op {
            index: inner.ops.len() as u64,
            time_ns: self.now_ns(),
            process,
            kind,
            f: f.to_string(),
            value,
            error,
        };
        if let Some(file) = inner.file.as_mut() {
            // A full disk loses the file, not the run: the ops stay in memory.
            if let Ok(line) = serde_json::to_string(&op) {
                let _ = writeln!(file, "{line}");
            }
        }
        match (process, kind) {
            (Process::Client(_), OpType::Ok | OpType::Fail | OpType::Info) => {
                inner.tally.client_ops += 1
            }
            (Process::Nemesis(_), OpType::Info)
                if !f.starts_with("heal") && f != "session-expired" =>
            {
                inner.tally.faults += 1
            }
            _ => {}
        }
        inner.ops.push(op.clone());
        op
    }

    /// Ops completed and faults applied so far.
    pub fn tally(&self) -> Tally {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).tally
    }

    /// Every op so far (and flushes the file).
    pub fn ops(&self) -> Vec<Op> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = inner.file.as_mut() {
            let _ = file.flush();
        }
        inner.ops.clone()
    }
}

/// Reads a `history.jsonl`.
pub fn load(path: &Path) -> Result<Vec<Op>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

/// An invocation with its completion (`None`: never completed, which counts
/// as `info`).
#[derive(Debug, Clone)]
pub struct Pair<'a> {
    pub invoke: &'a Op,
    pub complete: Option<&'a Op>,
}

impl Pair<'_> {
    /// The completion's type; a missing one is `info`.
    pub fn outcome(&self) -> OpType {
        self.complete.map_or(OpType::Info, |c| c.kind)
    }
}

/// Pairs every client invocation with the next completion of its process.
pub fn pairs(ops: &[Op]) -> Vec<Pair<'_>> {
    let mut open: std::collections::HashMap<Process, usize> = Default::default();
    let mut out: Vec<Pair> = Vec::new();
    for op in ops.iter().filter(|o| o.process != NEMESIS) {
        match op.kind {
            OpType::Invoke => {
                open.insert(op.process, out.len());
                out.push(Pair {
                    invoke: op,
                    complete: None,
                });
            }
            _ => {
                if let Some(i) = open.remove(&op.process) {
                    out[i].complete = Some(op);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ops_round_trip_through_jsonl_and_pair_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let h = Recorder::new(Some(&path)).unwrap();
        h.record(
            Process::Client(0),
            OpType::Invoke,
            "acquire",
            json!({"group": "g"}),
            None,
        );
        h.record(NEMESIS, OpType::Info, "kill", json!(["n1"]), None);
        h.record(
            Process::Client(1),
            OpType::Invoke,
            "acquire",
            json!({}),
            None,
        );
        h.record(
            Process::Client(0),
            OpType::Ok,
            "acquire",
            json!({"status": "admitted"}),
            None,
        );
        h.record(NEMESIS, OpType::Info, "heal", json!(["n1"]), None);
        assert_eq!(
            h.tally(),
            Tally {
                client_ops: 1,
                faults: 1
            }
        );
        let ops = h.ops();
        let back = load(&path).unwrap();
        assert_eq!(back, ops);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.contains(r#""process":"nemesis""#), "{line}");
        assert!(line.contains(r#""type":"invoke""#));
        let p = pairs(&ops);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].outcome(), OpType::Ok);
        assert_eq!(p[1].outcome(), OpType::Info, "never completed");
    }
}
