//! The storage nemeses' own evidence (crash-at, snapshot, wipe): each
//! heal records a `<fault>-evidence` op with `ok` and what it saw (a wiped
//! RM refused as it was, then replaced; a crashed or snapshotted RM back as
//! a member with a leader). Invalid when any says `ok: false`; absent when
//! no storage fault ran. Nothing lost is the other checkers' part.

use serde_json::json;

use super::{Validity, Verdict};
use crate::history::{Op, OpType, NEMESIS};

/// `None` when the history has no storage-fault evidence.
pub fn check(history: &[Op]) -> Option<Verdict> {
    let evidence: Vec<&Op> = history
        .iter()
        .filter(|o| o.process == NEMESIS && o.kind == OpType::Info)
        .filter(|o| o.f.ends_with("-evidence"))
        .collect();
    if evidence.is_empty() {
        return None;
    }
    let failed: Vec<_> = evidence
        .iter()
        .filter(|o| o.value["ok"] != true)
        .map(|o| json!({"fault": o.f.trim_end_matches("-evidence"), "evidence": o.value}))
        .collect();
    let count = |f: &str| evidence.iter().filter(|o| o.f == f).count();
    Some(Verdict::new(
        if failed.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        json!({"crash_at": count("crash-at-evidence"), "snapshot": count("snapshot-evidence"),
               "wipe": count("wipe-evidence"), "failed": failed}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;

    #[test]
    fn a_storage_fault_that_did_not_recover_is_invalid() {
        let h = Recorder::new(None).unwrap();
        assert!(check(&h.ops()).is_none(), "no storage fault, no verdict");
        h.record(
            NEMESIS,
            OpType::Info,
            "crash-at-evidence",
            json!({"ok": true}),
            None,
        );
        assert_eq!(check(&h.ops()).unwrap().valid, Validity::Valid);
        h.record(
            NEMESIS,
            OpType::Info,
            "wipe-evidence",
            json!({"ok": false, "refused_as_is": false}),
            None,
        );
        let v = check(&h.ops()).unwrap();
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["failed"][0]["fault"], "wipe");
    }
}
