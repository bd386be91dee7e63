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
    /// Replaying the same log yields the same state, and so the same bytes.
    #[test]
    fn replay_is_deterministic(log in proptest::collection::vec(arb_request(), 0..200)) {
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

/// Every command must survive the codec inside a real log entry: bincode
/// cannot decode serde's internally tagged enums, so this guards the types.
#[test]
fn commands_round_trip_through_the_codec_in_log_entries() {
    use openraft::{Entry, EntryPayload, LogId};
    let commands = [
        Command::Canary {
            client: "c".into(),
            seq: 3,
        },
        Command::Tick,
    ];
    for command in commands {
        let entry: Entry<crate::TypeConfig> = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(2, 1), 7),
            payload: EntryPayload::Normal(Request {
                leader_time_ms: 5,
                command,
            }),
        };
        let back: Entry<crate::TypeConfig> =
            common::codec::decode(&common::codec::encode(&entry).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{entry:?}"));
    }
    let responses = [
        Response::None,
        Response::Canary(CanaryOutcome {
            applied: true,
            count: 1,
            last_seq: 1,
            last_index: 1,
        }),
    ];
    for r in responses {
        assert_eq!(
            common::codec::decode::<Response>(&common::codec::encode(&r).unwrap()).unwrap(),
            r
        );
    }
}
