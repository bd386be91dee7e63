//! In-process 3-node clusters: the Raft claims this project relies on.

use std::time::{Duration, Instant};

use raft_rm::http::canary::CanaryView;
use serde_json::json;

use rm_testkit::{Settings, TestCluster, Writer};

const T: Duration = Duration::from_secs(10);

async fn read_local(c: &TestCluster, id: u64) -> CanaryView {
    c.http
        .get_json(&c.url(id, "/v1/canary?read=local"), 3)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_one_leader_and_replicates_to_all() {
    let c = TestCluster::start(3, Settings::default()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let follower = if leader == 1 { 2 } else { 1 };
    // Through a follower: forwarded to the leader.
    let w = c.canary(follower, "a", 1).await.unwrap();
    assert!(w.applied);
    assert_eq!(w.served_by, leader);
    c.wait_applied(&[1, 2, 3], w.index, T).await;
    for id in [1, 2, 3] {
        let v = read_local(&c, id).await;
        assert_eq!(v.canaries["a"].count, 1, "node {id}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_elects_a_new_leader_that_keeps_every_acknowledged_write() {
    let mut c = TestCluster::start(3, Settings::default()).await;
    let old = c.wait_leader(&[1, 2, 3], T).await;
    for seq in 1..=20 {
        c.canary(old, "a", seq).await.unwrap();
    }
    c.stop(old).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    let new = c.wait_leader(&rest, T).await;
    assert_ne!(new, old);
    let w = c.canary(new, "a", 21).await.unwrap();
    assert_eq!((w.applied, w.count), (true, 21));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_is_caught_up_by_snapshot() {
    let c = TestCluster::start(
        3,
        Settings {
            snapshot_every: 20,
            keep_logs_after_snapshot: 5,
            ..Default::default()
        },
    )
    .await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let lagging = if leader == 3 { 2 } else { 3 };
    c.isolate(lagging);
    let before = c.applied(lagging).unwrap_or(0);
    // Write until the leader has purged entries the lagging node never saw:
    // then only a snapshot can bring it back. (openraft purges lazily, once
    // no replication stream holds the range.)
    let mut seq = 0;
    let deadline = std::time::Instant::now() + T;
    loop {
        seq += 1;
        c.canary(leader, "a", seq).await.unwrap();
        let purged = c.nodes[&leader]
            .raft
            .metrics()
            .borrow()
            .purged
            .map(|p| p.index)
            .unwrap_or(0);
        if seq >= 60 && purged > before + 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leader never purged past {before} (at {purged})"
        );
    }
    c.heal();
    let target = c.applied(leader).unwrap();
    c.wait_applied(&[lagging], target, T).await;
    let snap = c.nodes[&lagging]
        .raft
        .metrics()
        .borrow()
        .snapshot
        .map(|s| s.index)
        .unwrap_or(0);
    assert!(snap > before, "lagging node has no snapshot past {before}");
    let (a, b) = (read_local(&c, leader).await, read_local(&c, lagging).await);
    assert_eq!(b.canaries, a.canaries);
    assert_eq!(b.canaries["a"].count, seq);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_to_five_and_shrinks_to_three_while_writes_flow() {
    let mut c = TestCluster::start(3, Settings::default()).await;
    c.wait_leader(&[1, 2, 3], T).await;
    let targets = |c: &TestCluster| c.addrs.values().cloned().collect::<Vec<_>>();
    let writer = Writer::start("w", c.http.clone(), targets(&c));
    for id in [4, 5] {
        let addr = c.spawn_empty(id).await;
        let r = c
            .admin(
                1,
                "/v1/admin/add-learner",
                json!({"node_id": id, "addr": addr}),
            )
            .await;
        assert_eq!(r["node_id"], id);
        c.admin(2, "/v1/admin/promote", json!({"node_id": id}))
            .await;
    }
    let voters = |c: &TestCluster| {
        let m = c.nodes[&1]
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        m.membership().voter_ids().collect::<Vec<_>>()
    };
    assert_eq!(voters(&c), vec![1, 2, 3, 4, 5]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Remove the leader first (it must hand over before it goes), then
    // another of the original three, both relayed through node 5.
    let first = c.wait_leader(&[1, 2, 3], T).await;
    let second = [1, 2, 3].into_iter().find(|i| *i != first).unwrap_or(1);
    for id in [first, second] {
        c.admin(5, "/v1/admin/remove", json!({"node_id": id})).await;
    }
    let rest: Vec<u64> = (1..=5).filter(|i| *i != first && *i != second).collect();
    let leader = c.wait_leader(&rest, T).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (acked, attempted) = writer.finish().await;
    assert!(acked > 10, "writes stalled: only {acked} acknowledged");
    let v: CanaryView = c
        .http
        .get_json(&c.url(leader, "/v1/canary"), 3)
        .await
        .unwrap();
    let got = &v.canaries["w"];
    assert!(
        got.count == got.last_seq && acked <= got.last_seq && got.last_seq <= attempted,
        "{got:?} acked {acked} attempted {attempted}"
    );
    let m = c.nodes[&leader]
        .raft
        .metrics()
        .borrow()
        .membership_config
        .clone();
    assert_eq!(m.membership().voter_ids().collect::<Vec<_>>(), rest);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_cannot_commit() {
    let c = TestCluster::start(3, Settings::default()).await;
    let old = c.wait_leader(&[1, 2, 3], T).await;
    c.isolate(old);
    // The isolated leader accepts the request but can never commit it.
    let lost = c.canary(old, "minority", 1).await;
    assert_eq!(
        lost.as_ref().err().and_then(|e| e.status()),
        Some(504),
        "{lost:?}"
    );
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    let new = c.wait_leader(&rest, T).await;
    c.canary(new, "majority", 1).await.unwrap();
    c.heal();
    // The old leader rejoins as a follower and drops its uncommitted entry.
    let target = c.applied(new).unwrap();
    c.wait_applied(&[old], target, T).await;
    for id in [1, 2, 3] {
        let v = read_local(&c, id).await;
        assert!(
            !v.canaries.contains_key("minority"),
            "node {id} applied a minority write"
        );
        assert_eq!(v.canaries["majority"].count, 1);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_to_a_cut_off_leader_ends_when_a_new_leader_is_elected() {
    let c = TestCluster::start(3, Settings::default()).await;
    let old = c.wait_leader(&[1, 2, 3], T).await;
    let via = if old == 1 { 2 } else { 1 };
    c.isolate(old);
    // The follower relays the write to the old leader, which accepts it but
    // cannot commit it (its own timeout is COMMIT_TIMEOUT, 5 s). Once the
    // follower learns of the new leader, it stops waiting: outcome unknown.
    let start = std::time::Instant::now();
    let relayed = c.canary(via, "relayed", 1).await;
    let took = start.elapsed();
    assert_eq!(
        relayed.as_ref().err().and_then(|e| e.status()),
        Some(504),
        "{relayed:?}"
    );
    assert!(
        took < raft_rm::core::COMMIT_TIMEOUT - Duration::from_secs(2),
        "the relay waited {took:?} on a cut-off leader"
    );
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    let new = c.wait_leader(&rest, T).await;
    assert_ne!(new, old);
    // The retry a client makes next succeeds through the same follower.
    c.canary(via, "relayed", 2).await.unwrap();
    c.heal();
    c.shutdown().await;
}

/// A client that hangs up during `POST /v1/admin/step-down` (the server
/// drops its request) used to leave the leader with heartbeats off and
/// writes refused until restart. The transfer must finish without it, and
/// the old leader must take writes and keep leading when it leads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_down_whose_client_hangs_up_still_finishes_and_leaves_writes_working() {
    let c = TestCluster::start(3, Settings::default()).await;
    let old = c.wait_leader(&[1, 2, 3], T).await;
    let to = if old == 3 { 1 } else { old + 1 };
    // The transfer first waits out the followers' leader lease, so a
    // 200 ms client gives up in the middle of it.
    let impatient = c.http.with_timeout(Duration::from_millis(200));
    let hung_up = impatient
        .post_json::<_, raft_rm::http::admin::StepDownReport>(
            &c.url(old, "/v1/admin/step-down"),
            &serde_json::json!({"to": to}),
        )
        .await;
    assert!(hung_up.is_err(), "the client gave up: {hung_up:?}");
    let deadline = Instant::now() + T;
    while c.wait_leader(&[1, 2, 3], T).await != to {
        assert!(
            Instant::now() < deadline,
            "the transfer to {to} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Back to the old leader: it must take writes, and keep leading for
    // several election timeouts (it sends heartbeats again).
    let back: raft_rm::http::admin::StepDownReport = c
        .http
        .post_json(
            &c.url(to, "/v1/admin/step-down"),
            &serde_json::json!({"to": old}),
        )
        .await
        .unwrap();
    assert_eq!(back.new_leader, Some(old));
    for seq in 1..=20 {
        let w = c.canary(old, "after-hang-up", seq).await.unwrap();
        assert_eq!(w.served_by, old, "write {seq}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.wait_leader(&[1, 2, 3], T).await, old);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_down_hands_leadership_to_the_chosen_follower() {
    let c = TestCluster::start(3, Settings::default()).await;
    let old = c.wait_leader(&[1, 2, 3], T).await;
    let to = if old == 3 { 1 } else { old + 1 };
    // Asked through another node: relayed to the leader.
    let report: raft_rm::http::admin::StepDownReport = c
        .http
        .post_json(
            &c.url(to, "/v1/admin/step-down"),
            &serde_json::json!({"to": to}),
        )
        .await
        .unwrap();
    assert_eq!(
        (report.from, report.to, report.new_leader),
        (old, to, Some(to))
    );
    assert_eq!(c.wait_leader(&[1, 2, 3], T).await, to);
    let w = c.canary(old, "after", 1).await.unwrap();
    assert_eq!(w.served_by, to);
    c.shutdown().await;
}
