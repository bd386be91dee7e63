//! The asymmetric nemesis: partial connectivity, where some links are cut
//! and the rest of the cluster still sees everyone. The shape comes from
//! the draw (`pick`); the grudges are applied by the partition machinery
//! ([`crate::netns::Network::partition`]) and healed with its heal.
//!
//! The shapes:
//! - `worker-from-leader`: one worker cannot reach the RM leader (nor it
//!   the worker); the followers and coordinators still reach both.
//! - `worker-from-rms`: one worker cannot reach any RM; coordinators still
//!   reach it, so they may send it tasks while the RMs expire it.
//! - `follower-from-leader`: one RM follower cannot reach the leader, but
//!   still reaches the other follower, the workers and the coordinators.
//!
//! A grudge is applied as a blackhole route at the side that holds it, so
//! even a one-sided grudge cuts TCP both ways (the answers cannot get
//! back). The grudges here are written both ways, to say so.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// The shapes an asymmetric fault takes.
pub const SHAPES: [&str; 3] = [
    "worker-from-leader",
    "worker-from-rms",
    "follower-from-leader",
];

/// One asymmetric fault: its shape and who cannot reach whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cut {
    pub shape: &'static str,
    /// The RM the plan took for the leader (`None`: no agreed leader; then
    /// the first RM stands in).
    pub leader: Option<String>,
    /// The worker or follower cut off.
    pub cut_off: String,
    pub grudges: BTreeMap<String, BTreeSet<String>>,
}

impl Cut {
    /// What the fault windows call it: the shape and its cut-off node.
    pub fn label(&self) -> String {
        format!("{} {}", self.shape, self.cut_off)
    }
}

/// The cut for draw `pick`, given the RMs, the workers and the leader as
/// they stand (names as the cluster gives them: `n1`, `w2`). A shape that
/// needs a worker becomes `follower-from-leader` when there is none; with
/// fewer than two RMs there is nothing to cut and the answer is `None`.
pub fn plan(pick: usize, rms: &[String], workers: &[String], leader: Option<&str>) -> Option<Cut> {
    let mut shape = SHAPES[pick % SHAPES.len()];
    if workers.is_empty() && shape != "follower-from-leader" {
        shape = "follower-from-leader";
    }
    let leader_name = leader
        .filter(|l| rms.iter().any(|r| r == l))
        .map(str::to_string);
    let stand_in = leader_name.clone().or_else(|| rms.first().cloned())?;
    let which = pick / SHAPES.len();
    let mut grudges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut cut = |a: &str, b: &str| {
        grudges
            .entry(a.to_string())
            .or_default()
            .insert(b.to_string());
        grudges
            .entry(b.to_string())
            .or_default()
            .insert(a.to_string());
    };
    let cut_off = match shape {
        "worker-from-leader" => {
            let w = &workers[which % workers.len()];
            cut(w, &stand_in);
            w.clone()
        }
        "worker-from-rms" => {
            let w = &workers[which % workers.len()];
            for r in rms {
                cut(w, r);
            }
            w.clone()
        }
        _ => {
            let followers: Vec<&String> = rms.iter().filter(|r| **r != stand_in).collect();
            if followers.is_empty() {
                return None;
            }
            let f = followers[which % followers.len()];
            cut(f, &stand_in);
            f.clone()
        }
    };
    Some(Cut {
        shape,
        leader: leader_name,
        cut_off,
        grudges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn reaches(c: &Cut, a: &str, b: &str) -> bool {
        !c.grudges.get(a).is_some_and(|s| s.contains(b))
            && !c.grudges.get(b).is_some_and(|s| s.contains(a))
    }

    #[test]
    fn each_shape_cuts_only_its_links() {
        let rms = names(&["n1", "n2", "n3"]);
        let workers = names(&["w1", "w2"]);
        let all: Vec<String> = rms
            .iter()
            .chain(&workers)
            .cloned()
            .chain(names(&["c1", "c2"]))
            .collect();
        for pick in 0..12 {
            let c = plan(pick, &rms, &workers, Some("n2")).expect("a cut");
            assert_eq!(c.shape, SHAPES[pick % 3]);
            let cut: Vec<(&String, &String)> = all
                .iter()
                .flat_map(|a| all.iter().map(move |b| (a, b)))
                .filter(|(a, b)| a < b && !reaches(&c, a, b))
                .collect();
            match c.shape {
                "worker-from-leader" => {
                    assert_eq!(cut.len(), 1, "{c:?}");
                    assert!(cut[0].0 == "n2" || cut[0].1 == "n2");
                }
                "worker-from-rms" => {
                    assert_eq!(cut.len(), 3, "{c:?}");
                    // The coordinators still reach the cut worker.
                    let w = c.grudges.keys().find(|k| k.starts_with('w')).unwrap();
                    assert!(reaches(&c, "c1", w) && reaches(&c, "c2", w));
                }
                _ => {
                    assert_eq!(cut.len(), 1, "{c:?}");
                    let f = c.grudges.keys().find(|k| *k != "n2").unwrap();
                    assert!(f.starts_with('n'));
                    // The cut follower still reaches the other RM, workers
                    // and coordinators.
                    for other in all.iter().filter(|o| *o != f && *o != "n2") {
                        assert!(reaches(&c, f, other), "{f} to {other}: {c:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn odd_clusters_get_a_cut_or_none_never_a_panic() {
        let rms = names(&["n1", "n2", "n3"]);
        // No workers: always the follower shape.
        for pick in 0..6 {
            assert_eq!(
                plan(pick, &rms, &[], None).unwrap().shape,
                "follower-from-leader"
            );
        }
        // A leader that is not an RM of the list, or none: n1 stands in.
        let c = plan(2, &rms, &[], Some("n9")).unwrap();
        assert!(c.leader.is_none() && c.grudges.contains_key("n1"));
        assert!(plan(2, &names(&["n1"]), &[], Some("n1")).is_none());
        assert!(plan(0, &[], &names(&["w1"]), None).is_none());
    }

    #[test]
    fn one_draw_one_cut() {
        let rms = names(&["n1", "n2", "n3"]);
        let workers = names(&["w1", "w2"]);
        for pick in [0, 1, 2, 999] {
            assert_eq!(
                plan(pick, &rms, &workers, Some("n1")),
                plan(pick, &rms, &workers, Some("n1"))
            );
        }
    }
}
