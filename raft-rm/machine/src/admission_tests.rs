//! Admission: scenario tests for each rule, and property tests over random
//! command sequences for the invariants.

use std::collections::BTreeMap;

use proptest::prelude::*;
use resource_groups::{self, Consistency};

use super::admission::{AcquireRequest, GroupsConfig, QueryStatus};
use super::*;

const CONFIG: &str = r#"{"rootGroups":[
  {"name":"r","hardConcurrencyLimit":3,"maxQueued":5,"subGroups":[
    {"name":"a","hardConcurrencyLimit":2,"maxQueued":3},
    {"name":"b","hardConcurrencyLimit":2,"maxQueued":3},
    {"name":"${USER}","hardConcurrencyLimit":1,"maxQueued":2},
    {"name":"ev","hardConcurrencyLimit":1,"maxQueued":1,"consistency":{"mode":"eventual","maxStalenessMs":500}}]},
  {"name":"w","hardConcurrencyLimit":1,"maxQueued":100,"schedulingPolicy":"weighted","subGroups":[
    {"name":"light","hardConcurrencyLimit":100,"maxQueued":100,"schedulingWeight":1},
    {"name":"heavy","hardConcurrencyLimit":100,"maxQueued":100,"schedulingWeight":3}]},
  {"name":"p","hardConcurrencyLimit":1,"maxQueued":100,"schedulingPolicy":"query_priority"}]}"#;

fn config(version: u64, text: &str) -> GroupsConfig {
    let rg = resource_groups::parse(text, &Consistency::Linearizable).unwrap();
    GroupsConfig {
        version,
        roots: rg.roots,
        source: text.to_string(),
        settings: Default::default(),
    }
}

/// A state machine fed entries with increasing indices and a test clock.
#[derive(Clone)]
struct Machine {
    state: State,
    index: u64,
    now: u64,
}

impl Machine {
    fn new() -> Machine {
        let mut m = Machine {
            state: State::default(),
            index: 0,
            now: 1_000,
        };
        m.run(Command::SetConfig(config(1, CONFIG)));
        m
    }

    fn run(&mut self, command: Command) -> Response {
        self.index += 1;
        self.state.apply(
            self.index,
            &Request {
                leader_time_ms: self.now,
                command,
            },
        )
    }

    fn session(&mut self, coordinator: &str) -> u64 {
        match self.run(Command::RegisterSession {
            coordinator: coordinator.into(),
        }) {
            Response::Session { session, .. } => session,
            other => panic!("{other:?}"),
        }
    }

    fn acquire(&mut self, q: &str, group: &str, session: u64) -> Decision {
        self.acquire_p(q, group, session, 0)
    }

    fn acquire_p(&mut self, q: &str, group: &str, session: u64, priority: i32) -> Decision {
        match self.run(Command::Acquire(AcquireRequest {
            query_id: q.into(),
            group: group.into(),
            coordinator: "c1".into(),
            session,
            priority,
            payload: format!("payload of {q}"),
            max_queued_ms: None,
            template: Vec::new(),
        })) {
            Response::Admission(d) => d,
            other => panic!("{other:?}"),
        }
    }

    fn release(&mut self, q: &str) -> ReleaseOutcome {
        match self.run(Command::Release { query_id: q.into() }) {
            Response::Release(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn counts(&self, group: &str) -> (u32, u32) {
        self.state
            .admission
            .groups
            .get(group)
            .map(|g| (g.running, g.queued))
            .unwrap_or((0, 0))
    }

    fn running(&self, q: &str) -> bool {
        matches!(
            self.state.admission.queries.get(q).map(|r| &r.status),
            Some(QueryStatus::Running { .. })
        )
    }
}

fn admitted(d: &Decision) -> bool {
    matches!(d, Decision::Admitted { .. })
}

#[test]
fn limits_hold_over_the_whole_chain() {
    let mut m = Machine::new();
    let s = m.session("c1");
    assert!(admitted(&m.acquire("a1", "r.a", s)));
    assert!(admitted(&m.acquire("a2", "r.a", s)));
    // r.a is full (2): queue.
    assert_eq!(m.acquire("a3", "r.a", s), Decision::Queued { position: 1 });
    assert!(admitted(&m.acquire("b1", "r.b", s)));
    // r is full (3) although r.b has room: queue.
    assert_eq!(m.acquire("b2", "r.b", s), Decision::Queued { position: 1 });
    assert_eq!(
        (m.counts("r"), m.counts("r.a"), m.counts("r.b")),
        ((3, 2), (2, 1), (1, 1))
    );
    for i in 0..3 {
        m.acquire(&format!("b-more{i}"), "r.b", s);
    }
    // r can queue 5 in all: a3, b2 and three more; the next is refused.
    assert_eq!(
        m.acquire("b-over", "r.b", s),
        Decision::Rejected {
            reason: RejectReason::QueueFull
        }
    );
}

#[test]
fn release_promotes_and_tokens_only_grow() {
    let mut m = Machine::new();
    let s = m.session("c1");
    let Decision::Admitted { fencing_token: t1 } = m.acquire("a1", "r.a", s) else {
        panic!()
    };
    m.acquire("a2", "r.a", s);
    m.acquire("a3", "r.a", s);
    m.acquire("a4", "r.a", s);
    assert_eq!(m.release("a1"), ReleaseOutcome::Released);
    assert!(
        m.running("a3") && !m.running("a4"),
        "first come, first served within a leaf"
    );
    let Some(QueryStatus::Running { fencing_token: t3 }) = m
        .state
        .admission
        .queries
        .get("a3")
        .map(|q| q.status.clone())
    else {
        panic!()
    };
    assert!(t3 > t1);
    let ev = m.state.admission.events.back().unwrap();
    assert_eq!(
        (ev.query_id.as_str(), &ev.kind),
        ("a3", &admission::EventKind::Promoted { fencing_token: t3 })
    );
    assert_eq!(m.release("a4"), ReleaseOutcome::Cancelled);
    assert_eq!(m.counts("r.a"), (2, 0));
}

#[test]
fn retries_are_idempotent_and_ids_are_not_reused() {
    let mut m = Machine::new();
    let s = m.session("c1");
    let first = m.acquire("q", "r.a", s);
    assert_eq!(m.acquire("q", "r.a", s), first);
    assert_eq!(m.counts("r.a"), (1, 0));
    assert_eq!(
        m.acquire("q", "r.b", s),
        Decision::Rejected {
            reason: RejectReason::GroupMismatch
        }
    );
    assert_eq!(m.release("q"), ReleaseOutcome::Released);
    assert_eq!(m.release("q"), ReleaseOutcome::Unknown);
    assert_eq!(m.release("never"), ReleaseOutcome::Unknown);
    assert_eq!(m.counts("r.a"), (0, 0));
    assert_eq!(
        m.acquire("q", "r.a", s),
        Decision::Rejected {
            reason: RejectReason::AlreadyFinished
        }
    );
    // An acquire that arrives after its query's release (one whose answer
    // its client never got) does not take a slot.
    assert_eq!(
        m.acquire("never", "r.a", s),
        Decision::Rejected {
            reason: RejectReason::AlreadyFinished
        }
    );
}

#[test]
fn bad_requests_are_rejected_with_a_reason() {
    let mut m = Machine::new();
    let s = m.session("c1");
    let reason = |d| match d {
        Decision::Rejected { reason } => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(m.acquire("x", "nope", s)), RejectReason::NoSuchGroup);
    assert_eq!(reason(m.acquire("x", "r", s)), RejectReason::NotALeaf);
    assert_eq!(
        reason(m.acquire("x", "r.ev", s)),
        RejectReason::EventualGroup
    );
    assert_eq!(
        reason(m.acquire("x", "r.a", 999)),
        RejectReason::SessionExpired
    );
    assert!(
        !m.state.admission.groups.contains_key("r"),
        "refusals leave no groups behind"
    );
}

#[test]
fn expired_sessions_lose_admissions_but_queued_queries_wait_for_adoption() {
    let mut m = Machine::new();
    let dead = m.session("c1");
    m.acquire("run", "r.a", dead);
    m.acquire("run2", "r.a", dead);
    m.acquire("wait", "r.a", dead);
    // While c1 lives, nobody takes its queries, queued or running.
    let early = m.session("c3");
    for q in ["wait", "run"] {
        assert_eq!(
            m.run(Command::Adopt {
                query_id: q.into(),
                coordinator: "c3".into(),
                session: early,
            }),
            Response::Adopted(Some(Decision::Rejected {
                reason: RejectReason::NotAdoptable
            })),
            "{q}"
        );
    }
    m.now += 11_000; // past the 10 s lease
                     // Expired but not yet ticked: a running query stays fenced to c1.
    let alive = m.session("c2");
    assert_eq!(
        m.run(Command::Adopt {
            query_id: "run".into(),
            coordinator: "c2".into(),
            session: alive,
        }),
        Response::Adopted(Some(Decision::Rejected {
            reason: RejectReason::NotAdoptable
        }))
    );
    m.run(Command::Tick);
    // Revoked, with a record for workers; the queued one is an orphan now.
    assert!(!m.state.admission.queries.contains_key("run"));
    let kinds: Vec<_> = m
        .state
        .admission
        .events
        .iter()
        .map(|e| (e.query_id.as_str(), &e.kind))
        .collect();
    assert!(kinds
        .iter()
        .any(|(q, k)| *q == "run" && matches!(k, admission::EventKind::Revoked { .. })));
    assert!(!m.running("wait"), "an orphan is not promoted");
    // A live query in the same leaf does not wait behind the orphan.
    assert!(admitted(&m.acquire("fresh", "r.a", alive)));
    match m.run(Command::Adopt {
        query_id: "wait".into(),
        coordinator: "c2".into(),
        session: alive,
    }) {
        Response::Adopted(Some(Decision::Queued { .. })) => {}
        other => panic!("{other:?}"),
    }
    m.run(Command::Tick);
    assert!(m.running("wait"), "adopted and promoted");
    assert_eq!(m.state.admission.queries["wait"].coordinator, "c2");
    // Renewing an expired session fails; a live one is extended.
    assert_eq!(
        m.run(Command::RenewSession { session: dead }),
        Response::SessionExpired
    );
    assert!(matches!(
        m.run(Command::RenewSession { session: alive }),
        Response::Session { .. }
    ));
}

#[test]
fn queued_queries_wait_as_upstream_unless_a_limit_says_otherwise() {
    let mut m = Machine::new();
    let s = m.session("c1");
    m.acquire("a1", "r.a", s);
    m.acquire("a2", "r.a", s);
    m.acquire("a3", "r.a", s);
    // With the session's own limit of 20 s.
    let limited = AcquireRequest {
        query_id: "a4".into(),
        group: "r.a".into(),
        coordinator: "c1".into(),
        session: s,
        priority: 0,
        payload: String::new(),
        max_queued_ms: Some(20_000),
        template: Vec::new(),
    };
    assert!(matches!(
        m.run(Command::Acquire(limited)),
        Response::Admission(Decision::Queued { .. })
    ));
    // 5 minutes on (the old fixed timeout): a3 still waits, as upstream's
    // queries do (its default is 100 days); a4 failed at 20 s.
    for _ in 0..35 {
        m.now += 9_000;
        m.run(Command::RenewSession { session: s });
        m.run(Command::Tick);
    }
    assert!(m.state.admission.queries.contains_key("a3"));
    assert!(!m.state.admission.queries.contains_key("a4"));
    let failed: Vec<&str> = m
        .state
        .admission
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            admission::EventKind::Failed { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        ["Query exceeded maximum queued time limit of 20.00s"]
    );
    assert_eq!(m.counts("r.a"), (2, 1));
    check_invariants(&m);
}

#[test]
fn a_groups_queued_time_limit_and_the_cluster_one_fail_queued_queries() {
    let mut m = Machine::new();
    let text = CONFIG.replace(
        r#"{"name":"a","hardConcurrencyLimit":2,"maxQueued":3}"#,
        r#"{"name":"a","hardConcurrencyLimit":2,"maxQueued":3,"queuedTimeLimit":"10s"}"#,
    );
    let mut cfg = config(2, &text);
    cfg.settings.queue_timeout_ms = 30_000;
    m.run(Command::SetConfig(cfg));
    let s = m.session("c1");
    for q in ["a1", "a2", "a3", "b1", "b2", "b3"] {
        let group = if q.starts_with('a') { "r.a" } else { "r.b" };
        m.acquire(q, group, s);
    }
    // r: limit 3, so a1, a2, b1 run; a3 and b2, b3 queue.
    m.now += 10_000;
    m.run(Command::RenewSession { session: s });
    m.run(Command::Tick);
    assert!(!m.state.admission.queries.contains_key("a3"), "group limit");
    assert!(m.state.admission.queries.contains_key("b2"));
    for _ in 0..3 {
        m.now += 7_000;
        m.run(Command::RenewSession { session: s });
        m.run(Command::Tick);
    }
    assert!(
        !m.state.admission.queries.contains_key("b2"),
        "cluster limit"
    );
    check_invariants(&m);
}

#[test]
fn an_orphan_nobody_adopts_fails_after_the_orphan_timeout() {
    let mut m = Machine::new();
    let dead = m.session("c1");
    let alive = m.session("c2");
    m.acquire("a1", "r.a", dead);
    m.acquire("a2", "r.a", dead);
    m.acquire("a3", "r.a", dead);
    m.acquire("a4", "r.a", dead);
    // c1's session expires (10 s lease); c2 stays alive.
    for _ in 0..3 {
        m.now += 5_000;
        m.run(Command::RenewSession { session: alive });
        m.run(Command::Tick);
    }
    let orphaned = |m: &Machine, q: &str| m.state.admission.queries[q].orphaned_ms;
    assert!(orphaned(&m, "a3").is_some() && orphaned(&m, "a4").is_some());
    // c2 adopts a3 in time; a4 is left.
    assert!(matches!(
        m.run(Command::Adopt {
            query_id: "a3".into(),
            coordinator: "c2".into(),
            session: alive,
        }),
        Response::Adopted(Some(Decision::Queued { .. }))
    ));
    assert_eq!(orphaned(&m, "a3"), None);
    for _ in 0..61 {
        m.now += 5_000;
        m.run(Command::RenewSession { session: alive });
        m.run(Command::Tick);
    }
    assert!(!m.state.admission.queries.contains_key("a4"));
    assert!(m.state.admission.queries.contains_key("a3"));
    assert!(m.state.admission.events.iter().any(|e| e.query_id == "a4"
        && matches!(&e.kind, admission::EventKind::Failed { reason } if reason.starts_with("Query abandoned"))));
    check_invariants(&m);
}

#[test]
fn template_groups_come_and_go() {
    let mut m = Machine::new();
    let s = m.session("c1");
    assert!(admitted(&m.acquire("q", "r.alice", s)));
    assert_eq!(m.counts("r.alice"), (1, 0));
    assert_eq!(
        m.acquire("q2", "r.alice", s),
        Decision::Queued { position: 1 }
    );
    m.release("q");
    m.release("q2");
    assert!(!m.state.admission.groups.contains_key("r.alice"));
    assert!(!m.state.admission.groups.contains_key("r"));
}

#[test]
fn removed_groups_drain_and_stale_configs_are_refused() {
    let mut m = Machine::new();
    let s = m.session("c1");
    m.acquire("l1", "w.light", s);
    // (A group beside a ${USER} template would still resolve: use w.light.)
    let light =
        r#"{"name":"light","hardConcurrencyLimit":100,"maxQueued":100,"schedulingWeight":1},"#;
    assert!(CONFIG.contains(light));
    let without = CONFIG.replace(light, "");
    assert!(matches!(
        m.run(Command::SetConfig(config(2, &without))),
        Response::ConfigApplied { version: 2 }
    ));
    assert!(m.state.admission.groups["w.light"].draining);
    assert!(m.running("l1"), "draining keeps running queries");
    assert_eq!(
        m.acquire("l2", "w.light", s),
        Decision::Rejected {
            reason: RejectReason::NoSuchGroup
        }
    );
    m.release("l1");
    assert!(!m.state.admission.groups.contains_key("w.light"));
    assert!(matches!(
        m.run(Command::SetConfig(config(2, CONFIG))),
        Response::ConfigRejected { .. }
    ));
}

#[test]
fn weighted_parents_share_by_weight_and_priority_parents_by_priority() {
    let mut m = Machine::new();
    let s = m.session("c1");
    m.acquire("hold", "w.light", s);
    for i in 0..40 {
        m.acquire(&format!("l{i}"), "w.light", s);
        m.acquire(&format!("h{i}"), "w.heavy", s);
    }
    let mut started = Vec::new();
    let mut current = "hold".to_string();
    for _ in 0..40 {
        m.release(&current);
        current = m
            .state
            .admission
            .queries
            .iter()
            .find(|(_, q)| {
                matches!(q.status, QueryStatus::Running { .. }) && q.group.starts_with("w.")
            })
            .map(|(id, _)| id.clone())
            .unwrap();
        started.push(current.clone());
    }
    let heavy = started.iter().filter(|q| q.starts_with('h')).count();
    assert_eq!(heavy, 30, "weights 1:3 give 30 of 40 to heavy: {started:?}");

    m.acquire_p("p-low", "p", s, 1);
    m.acquire_p("p-mid", "p", s, 5);
    m.acquire_p("p-high", "p", s, 9);
    m.acquire_p("p-high2", "p", s, 9);
    m.release("p-low");
    assert!(m.running("p-high"), "highest priority, then first come");
    m.release("p-high");
    assert!(m.running("p-high2"));
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        q: u8,
        leaf: u8,
        session: u8,
    },
    Release {
        q: u8,
    },
    Register,
    Advance {
        ms: u16,
    },
    Tick,
    Kill {
        q: u8,
        low_memory: bool,
    },
    Settle {
        nth: u8,
    },
    Renew {
        session: u8,
    },
    Adopt {
        q: u8,
        session: u8,
    },
    Report {
        coordinator: u8,
        seq: u8,
        leaf: u8,
        running: u8,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..40u8, 0..6u8, 0..4u8).prop_map(|(q, leaf, session)| Op::Acquire { q, leaf, session }),
        4 => (0..40u8).prop_map(|q| Op::Release { q }),
        1 => Just(Op::Register),
        1 => (0..6000u16).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Tick),
        1 => (0..40u8, any::<bool>()).prop_map(|(q, low_memory)| Op::Kill { q, low_memory }),
        1 => (0..8u8).prop_map(|nth| Op::Settle { nth }),
        2 => (0..4u8).prop_map(|session| Op::Renew { session }),
        2 => (0..40u8, 0..4u8).prop_map(|(q, session)| Op::Adopt { q, session }),
        1 => (0..3u8, 0..6u8, 0..6u8, 0..4u8).prop_map(|(coordinator, seq, leaf, running)| Op::Report { coordinator, seq, leaf, running }),
    ]
}

const LEAVES: [&str; 6] = ["r.a", "r.b", "r.alice", "r.bob", "w.light", "w.heavy"];

fn run_ops(ops: &[Op]) -> Machine {
    let mut m = Machine::new();
    let mut sessions = vec![m.session("c0")];
    for op in ops {
        let before = common::codec::encode(&m.state.admission).unwrap();
        match op {
            Op::Acquire { q, leaf, session } => {
                let s = sessions[*session as usize % sessions.len()];
                m.acquire(&format!("q{q}"), LEAVES[*leaf as usize], s);
            }
            Op::Release { q } => {
                let known = m.state.admission.queries.contains_key(&format!("q{q}"));
                m.release(&format!("q{q}"));
                if !known {
                    // Only the tombstone that refuses a late acquire.
                    let mut after = m.state.admission.clone();
                    assert!(after.finished.contains(&format!("q{q}")));
                    let earlier: Admission = common::codec::decode(&before).unwrap();
                    after.finished = earlier.finished;
                    assert_eq!(
                        common::codec::encode(&after).unwrap(),
                        before,
                        "release of an unknown query changed more than its tombstone"
                    );
                }
            }
            Op::Register => sessions.push(m.session("c")),
            Op::Advance { ms } => m.now += u64::from(*ms),
            Op::Tick => {
                m.run(Command::Tick);
            }
            Op::Kill { q, low_memory } => {
                let reason = if *low_memory {
                    super::memory::KillReason::LowMemory {
                        policy: super::memory::KillerPolicy::TotalReservation,
                    }
                } else {
                    super::memory::KillReason::ExceededGlobalLimit { limit_bytes: 1 }
                };
                m.run(Command::Kill(super::memory::KillProposal {
                    query_id: format!("q{q}"),
                    reason,
                    figures: Default::default(),
                    leak_timeout_ms: 3_000,
                }));
            }
            Op::Renew { session } => {
                let s = sessions[*session as usize % sessions.len()];
                m.run(Command::RenewSession { session: s });
            }
            Op::Adopt { q, session } => {
                let s = sessions[*session as usize % sessions.len()];
                let id = format!("q{q}");
                let held = m.state.admission.queries.get(&id).cloned();
                let answer = m.run(Command::Adopt {
                    query_id: id.clone(),
                    coordinator: "adopter".into(),
                    session: s,
                });
                let after = m.state.admission.queries.get(&id).cloned();
                match (&held, &after) {
                    // A running query stays fenced to its session.
                    (Some(h), Some(a)) if matches!(h.status, QueryStatus::Running { .. }) => {
                        assert_eq!(
                            h.session, a.session,
                            "a running query changed hands: {answer:?}"
                        );
                    }
                    // Taken over only from an ended session, or a retry.
                    (Some(h), Some(a)) if h.session != a.session => {
                        let alive = m
                            .state
                            .admission
                            .sessions
                            .get(&h.session)
                            .is_some_and(|x| x.expires_at_ms > m.now);
                        assert!(!alive, "a live session's query was adopted");
                    }
                    _ => {}
                }
            }
            Op::Report {
                coordinator,
                seq,
                leaf,
                running,
            } => {
                let groups = BTreeMap::from([(
                    LEAVES[*leaf as usize].to_string(),
                    (u32::from(*running), 0),
                )]);
                let c = format!("c{coordinator}");
                let last = m.state.admission.reports.get(&c).map(|r| r.seq);
                let answer = m.run(Command::Report {
                    coordinator: c.clone(),
                    seq: u64::from(*seq),
                    groups,
                });
                // An older (or repeated) report never replaces a newer one.
                if let Some(last) = last.filter(|l| *l != 0 && u64::from(*seq) <= *l) {
                    assert_eq!(answer, Response::Reported { applied: false });
                    assert_eq!(m.state.admission.reports[&c].seq, last);
                }
            }
            Op::Settle { nth } => {
                let decisions = &m.state.memory.decisions;
                if !decisions.is_empty() {
                    let index = decisions[*nth as usize % decisions.len()].index;
                    m.run(Command::SettleKill { index });
                }
            }
        }
        check_invariants(&m);
    }
    m
}

/// Counters match a recount from the ledger, every group is within its
/// limits, each query is in exactly one place, and tokens are unique.
fn check_invariants(m: &Machine) {
    check_state_invariants(&m.state);
}

/// [`check_invariants`] on a bare state (also for the hostile logs of
/// `tests.rs`, whose every configuration shares one tree, so limits hold).
pub(crate) fn check_state_invariants(state: &State) {
    let adm = &state.admission;
    let mut recount: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut tokens = std::collections::BTreeSet::new();
    for (id, q) in &adm.queries {
        let mut prefix = String::new();
        for seg in q.group.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(seg);
            let e = recount.entry(prefix.clone()).or_default();
            match q.status {
                QueryStatus::Running { .. } => e.0 += 1,
                QueryStatus::Queued { .. } => e.1 += 1,
            }
        }
        let in_queue = adm.groups[&q.group]
            .queue
            .iter()
            .filter(|x| *x == id)
            .count();
        match q.status {
            QueryStatus::Running { fencing_token } => {
                assert_eq!(in_queue, 0, "{id} is running and queued");
                assert!(
                    tokens.insert(fencing_token),
                    "token {fencing_token} given twice"
                );
            }
            QueryStatus::Queued { .. } => assert_eq!(in_queue, 1, "{id} queued {in_queue} times"),
        }
    }
    for (id, g) in &adm.groups {
        let (running, queued) = recount.get(id).copied().unwrap_or_default();
        assert_eq!((g.running, g.queued), (running, queued), "counters of {id}");
        assert!(
            g.running <= g.limits.hard_concurrency_limit,
            "{id} runs {} > {}",
            g.running,
            g.limits.hard_concurrency_limit
        );
        assert!(
            g.queued <= g.limits.max_queued,
            "{id} queues {} > {}",
            g.queued,
            g.limits.max_queued
        );
    }
    for id in recount.keys() {
        assert!(adm.groups.contains_key(id), "query in missing group {id}");
    }
    // Group memory is the sum of the stamped memory of its queries.
    let mut memory: BTreeMap<String, u64> = BTreeMap::new();
    for q in adm.usage.queries.values() {
        for g in resource_groups::chain_ids(&q.group) {
            let m = memory.entry(g).or_default();
            *m = m.saturating_add(q.memory_bytes);
        }
    }
    for (id, u) in &adm.usage.groups {
        assert_eq!(
            u.memory_bytes,
            memory.get(id).copied().unwrap_or(0),
            "memory of {id}"
        );
    }
    // The watch seeks by index: kept events must stay in index order.
    assert!(
        adm.events
            .iter()
            .zip(adm.events.iter().skip(1))
            .all(|(a, b)| a.index <= b.index),
        "events out of index order"
    );
    // Memory kills: one unsettled low-memory kill at most, a query killed
    // at most once, an episode number per low-memory kill.
    let decisions = &state.memory.decisions;
    let unsettled_low = decisions
        .iter()
        .filter(|d| d.is_low_memory() && d.outcome.is_none())
        .count();
    assert!(
        unsettled_low <= 1,
        "{unsettled_low} unsettled low-memory kills"
    );
    let killed: std::collections::BTreeSet<&str> =
        decisions.iter().map(|d| d.query_id.as_str()).collect();
    assert_eq!(killed.len(), decisions.len(), "a query killed twice");
    let episodes: Vec<u64> = decisions
        .iter()
        .filter(|d| d.is_low_memory())
        .map(|d| d.episode)
        .collect();
    assert!(
        episodes.windows(2).all(|w| w[0] < w[1]),
        "episodes out of order: {episodes:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn invariants_hold_after_every_command(ops in proptest::collection::vec(arb_op(), 1..150)) {
        run_ops(&ops);
    }

    #[test]
    fn replay_gives_byte_identical_state(ops in proptest::collection::vec(arb_op(), 1..150)) {
        let a = run_ops(&ops);
        let b = run_ops(&ops);
        prop_assert_eq!(common::codec::encode(&a.state).unwrap(), common::codec::encode(&b.state).unwrap());
    }

    #[test]
    fn a_batch_decides_as_its_commands_would_one_entry_each(
        before in proptest::collection::vec(arb_op(), 0..80),
        batch in proptest::collection::vec(arb_op(), 1..40),
    ) {
        let m = run_ops(&before);
        let sessions: Vec<u64> = m.state.admission.sessions.keys().copied().collect();
        let commands: Vec<Command> = batch.iter().filter_map(|op| batchable(op, &sessions)).collect();
        let mut alone = m.clone();
        let one_by_one: Vec<Response> = commands.iter().map(|c| untokened(alone.run(c.clone()))).collect();
        let mut batched = m;
        let Response::Batch(answers) = batched.run(Command::Batch(commands)) else {
            panic!("a batch must be answered with a batch");
        };
        check_invariants(&batched);
        prop_assert_eq!(answers.into_iter().map(untokened).collect::<Vec<_>>(), one_by_one);
        prop_assert_eq!(shape(&batched.state.admission), shape(&alone.state.admission));
    }
}

/// The command `op` stands for, if it may travel in a batch.
fn batchable(op: &Op, sessions: &[u64]) -> Option<Command> {
    let session = |n: u8| {
        sessions
            .get(n as usize % sessions.len().max(1))
            .copied()
            .unwrap_or(0)
    };
    let command = match op {
        Op::Acquire {
            q,
            leaf,
            session: s,
        } => Command::Acquire(AcquireRequest {
            query_id: format!("q{q}"),
            group: LEAVES[*leaf as usize].into(),
            coordinator: "c1".into(),
            session: session(*s),
            priority: 0,
            payload: String::new(),
            max_queued_ms: None,
            template: Vec::new(),
        }),
        Op::Release { q } => Command::Release {
            query_id: format!("q{q}"),
        },
        Op::Renew { session: s } => Command::RenewSession {
            session: session(*s),
        },
        Op::Adopt { q, session: s } => Command::Adopt {
            query_id: format!("q{q}"),
            coordinator: "adopter".into(),
            session: session(*s),
        },
        Op::Report {
            coordinator,
            seq,
            leaf,
            running,
        } => Command::Report {
            coordinator: format!("c{coordinator}"),
            seq: u64::from(*seq),
            groups: BTreeMap::from([(
                LEAVES[*leaf as usize].to_string(),
                (u32::from(*running), 0),
            )]),
        },
        _ => return None,
    };
    assert!(command.batchable());
    Some(command)
}

/// An answer with its fencing token blanked: a batch numbers its
/// admissions by rank within one index, separate entries by index.
fn untokened(r: Response) -> Response {
    let blank = |d: Decision| match d {
        Decision::Admitted { .. } => Decision::Admitted { fencing_token: 0 },
        other => other,
    };
    match r {
        Response::Admission(d) => Response::Admission(blank(d)),
        Response::Adopted(d) => Response::Adopted(d.map(blank)),
        other => other,
    }
}

/// What admission decided, without the indices it was decided at: per
/// group its counters and queue, per query its group, owner and standing.
#[allow(clippy::type_complexity)]
fn shape(
    adm: &Admission,
) -> (
    BTreeMap<String, (u32, u32, Vec<String>)>,
    BTreeMap<String, (String, String, u64, bool)>,
    Vec<bool>,
) {
    let groups = adm
        .groups
        .iter()
        .map(|(id, g)| {
            (
                id.clone(),
                (g.running, g.queued, g.queue.iter().cloned().collect()),
            )
        })
        .collect();
    let queries = adm
        .queries
        .iter()
        .map(|(id, q)| {
            let running = matches!(q.status, QueryStatus::Running { .. });
            (
                id.clone(),
                (q.group.clone(), q.coordinator.clone(), q.session, running),
            )
        })
        .collect();
    let finished = (0..40)
        .map(|q| adm.finished.contains(&format!("q{q}")))
        .collect();
    (groups, queries, finished)
}

#[test]
fn a_batch_refuses_commands_that_take_the_entry_index_as_an_identity() {
    let mut m = Machine::new();
    let before = m.state.clone();
    let answer = m.run(Command::Batch(vec![
        Command::RegisterSession {
            coordinator: "c".into(),
        },
        Command::Tick,
        Command::Batch(vec![]),
        Command::SetConfig(config(2, CONFIG)),
    ]));
    assert_eq!(answer, Response::Batch(vec![Response::NotBatchable; 4]));
    assert_eq!(m.state, before);
}

const LIMITED: &str = r#"{"rootGroups":[
  {"name":"m","hardConcurrencyLimit":5,"maxQueued":5,"softMemoryLimit":"100B"},
  {"name":"pct","hardConcurrencyLimit":5,"maxQueued":5,"softMemoryLimit":"10%"},
  {"name":"c","hardConcurrencyLimit":4,"maxQueued":5,"hardCpuLimit":"10s","softCpuLimit":"5s"},
  {"name":"k","hardConcurrencyLimit":5,"maxQueued":5,
   "perQueryLimits":{"cpuTimeLimit":"1s","totalMemoryLimit":"1kB"}}],
  "cpuQuotaPeriod":"10s"}"#;

impl Machine {
    fn limited() -> Machine {
        let mut m = Machine::new();
        m.run(Command::SetConfig(config(2, LIMITED)));
        m
    }

    /// The leader's usage stamp: (query, group, memory, cpu).
    fn stamp(&mut self, queries: &[(&str, &str, u64, u64)]) -> Vec<String> {
        let stamp = usage::UsageStamp {
            cluster_memory_bytes: 10_000,
            queries: queries
                .iter()
                .map(|(q, g, memory_bytes, cpu_ms)| {
                    (
                        q.to_string(),
                        usage::QueryUsage {
                            group: g.to_string(),
                            memory_bytes: *memory_bytes,
                            cpu_ms: *cpu_ms,
                        },
                    )
                })
                .collect(),
            leak_timeout_ms: 5_000,
        };
        match self.run(Command::Usage(stamp)) {
            Response::UsageStamped { killed } => killed,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_group_over_its_soft_memory_limit_queues_until_memory_falls() {
    let mut m = Machine::limited();
    let s = m.session("c1");
    assert!(admitted(&m.acquire("q1", "m", s)));
    m.stamp(&[("q1", "m", 101, 0)]);
    assert!(matches!(m.acquire("q2", "m", s), Decision::Queued { .. }));
    // Memory falls to the limit (equal still runs): q2 starts on the stamp.
    m.stamp(&[("q1", "m", 100, 0)]);
    assert!(m.running("q2"));
    // A percentage is of the cluster's memory (10,000 bytes here).
    assert!(admitted(&m.acquire("p1", "pct", s)));
    m.stamp(&[("p1", "pct", 1_001, 0)]);
    assert!(matches!(m.acquire("p2", "pct", s), Decision::Queued { .. }));
    check_invariants(&m);
}

#[test]
fn cpu_limits_penalise_then_stop_until_the_quota_regenerates() {
    let mut m = Machine::limited();
    let s = m.session("c1");
    assert!(admitted(&m.acquire("q1", "c", s)));
    // 7.5 s charged, between soft 5 s and hard 10 s: the limit of 4 becomes
    // floor(4 * 0.5) = 2, so one more runs and the next queues.
    m.stamp(&[("q1", "c", 0, 7_500)]);
    assert!(admitted(&m.acquire("q2", "c", s)));
    assert!(matches!(m.acquire("q3", "c", s), Decision::Queued { .. }));
    // At the hard limit nothing starts, even with a slot free.
    m.stamp(&[("q1", "c", 0, 10_000), ("q2", "c", 0, 0)]);
    m.release("q2");
    assert!(!m.running("q3"));
    // The quota regenerates at 10 s per 10 s, 1 s of CPU per second of log
    // time: 3 s on, 7 s charged, the limit is floor(4 * 0.6) = 2.
    m.run(Command::Tick);
    m.now += 3_000;
    m.run(Command::Tick);
    assert_eq!(m.state.admission.usage.of("c").cpu_ms, 7_000);
    assert!(m.running("q3"));
    check_invariants(&m);
}

#[test]
fn per_query_limits_kill_once_with_trinos_error_names() {
    let mut m = Machine::limited();
    let s = m.session("c1");
    assert!(admitted(&m.acquire("q1", "k", s)));
    assert!(admitted(&m.acquire("q2", "k", s)));
    assert_eq!(m.stamp(&[("q1", "k", 0, 1_000)]), Vec::<String>::new());
    // One kill per stamp: q1 (CPU) first, then q2 (memory).
    assert_eq!(
        m.stamp(&[("q1", "k", 0, 1_001), ("q2", "k", 1_025, 0)]),
        vec!["q1".to_string()]
    );
    assert_eq!(
        m.stamp(&[("q1", "k", 0, 1_500), ("q2", "k", 1_025, 0)]),
        vec!["q2".to_string()]
    );
    assert!(m.stamp(&[("q1", "k", 0, 2_000)]).is_empty(), "killed once");
    let kinds: Vec<(String, String)> = m
        .state
        .admission
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            admission::EventKind::Killed { error_name, .. } => {
                Some((e.query_id.clone(), error_name.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("q1".to_string(), "EXCEEDED_CPU_LIMIT".to_string()),
            ("q2".to_string(), "EXCEEDED_GLOBAL_MEMORY_LIMIT".to_string()),
        ]
    );
    check_invariants(&m);
}

/// As in Trino, a group is configured from the template the selector
/// expanded, and keeps it while it lives; without one, the id alone picks
/// the most literal fitting template.
#[test]
fn a_group_follows_the_template_that_made_it() {
    let mut m = Machine::new();
    let text = r#"{"rootGroups":[{"name":"t","hardConcurrencyLimit":10,"maxQueued":10,"subGroups":[
        {"name":"${USER}","hardConcurrencyLimit":1,"maxQueued":5},
        {"name":"bi-${tool}","hardConcurrencyLimit":3,"maxQueued":5}]}]}"#;
    m.run(Command::SetConfig(config(2, text)));
    let s = m.session("c1");
    let acquire = |m: &mut Machine, q: &str, template: &[&str]| match m.run(Command::Acquire(
        AcquireRequest {
            query_id: q.into(),
            group: "t.bi-x".into(),
            coordinator: "c1".into(),
            session: s,
            priority: 0,
            payload: String::new(),
            max_queued_ms: None,
            template: template.iter().map(|n| n.to_string()).collect(),
        },
    )) {
        Response::Admission(d) => d,
        other => panic!("{other:?}"),
    };
    // User bi-x through a `${USER}` selector: limit 1, and it stays so.
    assert!(admitted(&acquire(&mut m, "q1", &["t", "${USER}"])));
    assert!(matches!(
        acquire(&mut m, "q2", &["t", "bi-${tool}"]),
        Decision::Queued { .. }
    ));
    assert_eq!(
        m.state.admission.groups["t.bi-x"]
            .limits
            .hard_concurrency_limit,
        1
    );
    m.release("q1");
    m.release("q2");
    assert!(!m.state.admission.groups.contains_key("t.bi-x"));
    // Made by the `bi-${tool}` selector, or by id alone: limit 3.
    assert!(admitted(&acquire(&mut m, "q3", &[])));
    assert!(admitted(&acquire(&mut m, "q4", &["t", "bi-${tool}"])));
    assert_eq!(
        m.state.admission.groups["t.bi-x"]
            .limits
            .hard_concurrency_limit,
        3
    );
    check_invariants(&m);
}
