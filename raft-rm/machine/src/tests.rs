use super::*;
use proptest::prelude::*;

fn canary(client: &str, seq: u64, t: u64) -> Request {
    Request {
        leader_time_ms: t,
        command: Command::Canary {
            client: client.to_string(),
            seq,
        },
    }
}

#[test]
fn canary_retry_is_not_applied_twice() {
    let mut s = State::default();
    let first = s.apply(1, &canary("c", 1, 10));
    let retry = s.apply(2, &canary("c", 1, 11));
    assert_eq!(
        first,
        Response::Canary(CanaryOutcome {
            applied: true,
            count: 1,
            last_seq: 1,
            last_index: 1
        })
    );
    assert_eq!(
        retry,
        Response::Canary(CanaryOutcome {
            applied: false,
            count: 1,
            last_seq: 1,
            last_index: 1
        })
    );
}

#[test]
fn log_time_never_goes_backwards() {
    let mut s = State::default();
    s.apply(1, &canary("c", 1, 100));
    s.apply(2, &canary("c", 2, 40));
    assert_eq!(s.log_time_ms, 100);
}

fn arb_request() -> impl Strategy<Value = Request> {
    (0..4u8, 0..20u64, 0..1000u64).prop_map(|(c, seq, t)| canary(&format!("client-{c}"), seq, t))
}

proptest! {
    /// Replaying the same log, every kind of command in it, yields the same
    /// answers and the same state, and so the same bytes.
    #[test]
    fn replay_is_deterministic(log in crate::arbitrary::log(120)) {
        let run = || {
            let mut s = State::default();
            let out: Vec<Response> = log.iter().enumerate().map(|(i, r)| s.apply(i as u64 + 1, r)).collect();
            (s, out)
        };
        let (a, out_a) = run();
        let (b, out_b) = run();
        prop_assert_eq!(&out_a, &out_b);
        prop_assert_eq!(common::codec::encode(&a).unwrap(), common::codec::encode(&b).unwrap());
    }

    /// Every command (all variants, generated) and every answer the
    /// machine gives survives the codec: bincode cannot decode serde's
    /// internally tagged enums, so this guards every type in the log.
    #[test]
    fn every_command_and_answer_round_trips_through_the_codec(log in crate::arbitrary::log(60)) {
        let mut s = State::default();
        for (i, r) in log.iter().enumerate() {
            let back: Request = common::codec::decode(&common::codec::encode(r).unwrap()).unwrap();
            prop_assert_eq!(&back, r);
            let answer = s.apply(i as u64 + 1, r);
            let back: Response = common::codec::decode(&common::codec::encode(&answer).unwrap()).unwrap();
            prop_assert_eq!(back, answer);
        }
    }

    /// Hostile logs (extreme counts, leases, timeouts, memory figures,
    /// sequence numbers and leader times, odd names): every command is
    /// answered without a panic, log time never goes back, and the admission and memory invariants hold after each.
    #[test]
    fn hostile_commands_never_panic_and_keep_the_invariants(
        (first, log) in crate::arbitrary::hostile::log(80)
    ) {
        let mut s = State::default();
        for (i, r) in log.iter().enumerate() {
            let before = s.log_time_ms;
            s.apply(first + i as u64, r);
            prop_assert!(s.log_time_ms >= before, "log time went back");
            crate::admission_tests::check_state_invariants(&s);
        }
    }

    /// Per client, the count equals the number of distinct increasing seqs
    /// seen: no retry or reordering applies anything twice.
    #[test]
    fn each_seq_applies_at_most_once(log in proptest::collection::vec(arb_request(), 0..200)) {
        let mut s = State::default();
        let mut model: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (i, r) in log.iter().enumerate() {
            s.apply(i as u64 + 1, r);
            let Command::Canary { client, seq } = &r.command else { continue };
            let e = model.entry(client.clone()).or_default();
            if *seq > e.1 { e.0 += 1; e.1 = *seq; }
        }
        for (client, (count, last)) in model {
            let got = s.canaries.get(&client).cloned().unwrap_or_default();
            prop_assert_eq!(got.count, count);
            prop_assert_eq!(got.last_seq, last);
            prop_assert!(got.count <= got.last_seq);
        }
    }
}

/// The crate boundary is what keeps the machine pure: this fails if a
/// dependency that could bring I/O, a clock, randomness or Raft into it is
/// ever added to its manifest (tests may use more).
#[test]
fn the_machine_depends_on_nothing_impure() {
    let names = dependency_names(include_str!("../Cargo.toml"));
    for name in &names {
        assert!(
            ["resource-groups", "serde", "proptest"].contains(name),
            "rm-machine must stay pure: `{name}` is not an allowed dependency"
        );
    }
    assert!(names.contains(&"serde"), "parsed {names:?}");
    let rg = dependency_names(include_str!("../../../common/resource-groups/Cargo.toml"));
    for name in &rg {
        assert!(
            [
                "serde",
                "serde_json",
                "serde_path_to_error",
                "regex",
                "thiserror"
            ]
            .contains(name),
            "resource-groups feeds the pure machine: `{name}` is not an allowed dependency"
        );
    }
}

/// The names in a manifest's `[dependencies]` table.
fn dependency_names(manifest: &str) -> Vec<&str> {
    manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .split("\n[")
        .next()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['=', '.', ' ']).next())
        .collect()
}

/// The generated logs are worth their time only if they reach the
/// machine's interesting answers: admissions, queueing, rejections,
/// releases, sessions, kills and batches, in a fixed sample of logs.
#[test]
fn generated_logs_reach_every_kind_of_answer() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let log = crate::arbitrary::log(120)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut s = State::default();
        let mut answers = Vec::new();
        for (i, r) in log.iter().enumerate() {
            answers.push(s.apply(i as u64 + 1, r));
        }
        while let Some(a) = answers.pop() {
            let kind = match &a {
                Response::Batch(inner) => {
                    answers.extend(inner.iter().cloned());
                    "batch"
                }
                Response::Admission(Decision::Admitted { .. }) => "admitted",
                Response::Admission(Decision::Queued { .. }) => "queued",
                Response::Admission(Decision::Rejected { .. }) => "rejected",
                Response::Release(_) => "release",
                Response::Session { .. } => "session",
                Response::ConfigApplied { .. } => "config",
                Response::Kill(memory::KillAnswer::Decided { .. }) => "kill",
                Response::KillSettled { settled: true } => "settled",
                Response::NotBatchable => "not-batchable",
                _ => "other",
            };
            seen.insert(kind);
        }
    }
    for kind in [
        "batch",
        "admitted",
        "queued",
        "rejected",
        "release",
        "session",
        "config",
        "kill",
        "not-batchable",
    ] {
        assert!(
            seen.contains(kind),
            "no {kind} answer in 200 logs: {seen:?}"
        );
    }
}
