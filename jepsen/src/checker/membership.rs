//! After a run with the membership nemesis, the RM voters are the ones the
//! cluster started with: every shrink and grow was undone.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Validity, Verdict};

/// The voters at the start and, as the leader saw them, at the end (`None`:
/// no leader answered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VotersAtEnd {
    pub original: BTreeSet<u64>,
    pub voters: Option<BTreeSet<u64>>,
}

pub fn check(end: &VotersAtEnd) -> Verdict {
    let valid = match &end.voters {
        None => Validity::Unknown,
        Some(v) if *v == end.original => Validity::Valid,
        Some(_) => Validity::Invalid,
    };
    Verdict::new(
        valid,
        json!({"original_voters": end.original, "voters_at_end": end.voters}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(voters: Option<&[u64]>) -> VotersAtEnd {
        VotersAtEnd {
            original: BTreeSet::from([1, 2, 3]),
            voters: voters.map(|v| v.iter().copied().collect()),
        }
    }

    #[test]
    fn only_the_original_voters_are_valid() {
        assert_eq!(check(&end(Some(&[1, 2, 3]))).valid, Validity::Valid);
        assert_eq!(check(&end(Some(&[1, 2]))).valid, Validity::Invalid);
        assert_eq!(check(&end(Some(&[1, 2, 3, 4]))).valid, Validity::Invalid);
        assert_eq!(check(&end(Some(&[1, 2, 4]))).valid, Validity::Invalid);
        assert_eq!(check(&end(None)).valid, Validity::Unknown);
    }
}
