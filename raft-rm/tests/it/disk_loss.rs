//! A voter that lost its disk: restarted as it is, it is refused (it would
//! vote, and could help elect a stale leader, with an empty log); after
//! `raft-rm admin replace` it is a voter again with every acknowledged write.

use std::time::{Duration, Instant};

use common::api::{ClusterView, Health};
use raft_rm::http::canary::CanaryView;

use rm_testkit::{Settings, TestCluster};

const T: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_raft-rm");

async fn health(c: &TestCluster, id: u64) -> Health {
    c.http.get_json(&c.url(id, "/v1/health"), 3).await.unwrap()
}

async fn cluster_view(c: &TestCluster, id: u64) -> ClusterView {
    c.http.get_json(&c.url(id, "/v1/cluster"), 3).await.unwrap()
}

/// Writes canaries `seqs` of `client` through `via`, retrying a write until
/// it is acknowledged (a leader change answers 503 meanwhile).
async fn write_canaries(
    c: &TestCluster,
    via: u64,
    client: &str,
    seqs: std::ops::RangeInclusive<u64>,
) {
    for seq in seqs {
        let deadline = Instant::now() + T;
        loop {
            match c.canary(via, client, seq).await {
                Ok(w) => {
                    assert_eq!(w.last_seq, seq);
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "canary {client}/{seq}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A 3-node cluster with canaries `before/1..=20` acknowledged; node 3 is
/// then stopped, its data dir deleted, and started again with the same id
/// and address.
async fn cluster_with_a_wiped_node_3() -> (TestCluster, u64) {
    let mut c = TestCluster::start(3, Settings::default()).await;
    c.wait_leader(&[1, 2, 3], T).await;
    write_canaries(&c, 1, "before", 1..=20).await;
    let old_incarnation = health(&c, 3).await.incarnation;
    c.stop(3).await;
    c.wipe(3);
    c.restart(3).await;
    (c, old_incarnation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_restarted_as_is_is_refused_and_the_others_keep_committing() {
    let (c, old_incarnation) = cluster_with_a_wiped_node_3().await;
    let leader = c.wait_leader(&[1, 2], T).await;
    // The membership knows node 3 by the incarnation it had; the wiped
    // data dir has a new one.
    let recorded = cluster_view(&c, leader).await.members;
    let recorded = recorded.iter().find(|m| m.id == 3).unwrap().incarnation;
    assert_eq!(recorded, old_incarnation);
    assert_ne!(health(&c, 3).await.incarnation, old_incarnation);
    // Meanwhile the other two keep committing, and the wiped node neither
    // takes entries nor votes: it stays uninitialized, in no cluster.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seq = 0;
    while Instant::now() < deadline {
        seq += 1;
        write_canaries(&c, leader, "during", seq..=seq).await;
        let h = health(&c, 3).await;
        assert!(!h.initialized, "the wiped node 3 was let in: {h:?}");
        assert_eq!(h.last_log_index, None);
        assert_eq!(h.term, 0, "the wiped node 3 voted or was asked to: {h:?}");
        assert_eq!(cluster_view(&c, 3).await.cluster_id, None);
    }
    assert!(
        seq >= 5,
        "the remaining two committed only {seq} writes in 3 s"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_replace_makes_a_wiped_voter_a_voter_again_with_every_acknowledged_write() {
    let (mut c, old_incarnation) = cluster_with_a_wiped_node_3().await;
    c.wait_leader(&[1, 2], T).await;
    write_canaries(&c, 1, "during", 1..=10).await;

    // The operator's one command, as an operator runs it.
    admin_replace(&c, 1, 3).await;

    let new_incarnation = health(&c, 3).await.incarnation;
    assert_ne!(new_incarnation, old_incarnation);
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let view = cluster_view(&c, leader).await;
    let node3 = view.members.iter().find(|m| m.id == 3).unwrap();
    assert!(node3.voter, "node 3 is not a voter after replace: {view:?}");
    assert_eq!(node3.incarnation, new_incarnation);

    // It holds every acknowledged canary, and counts in a quorum: with
    // node 2 stopped, nodes 1 and 3 commit.
    let local = node3_canaries(&c, leader).await;
    assert_eq!(local.canaries["before"].last_seq, 20);
    assert_eq!(local.canaries["during"].last_seq, 10);
    c.stop(2).await;
    let leader = c.wait_leader(&[1, 3], T).await;
    write_canaries(&c, 3, "after", 1..=5).await;
    // Committed with node 3 in the quorum; its local read waits until it
    // has applied them too.
    let local = node3_canaries(&c, leader).await;
    assert_eq!(local.canaries["before"].last_seq, 20);
    assert_eq!(local.canaries["after"].last_seq, 5);
    c.shutdown().await;
}

/// `raft-rm admin --rm VIA replace` of node `id` at its address, as an
/// operator runs it; it must succeed.
async fn admin_replace(c: &TestCluster, via: u64, id: u64) {
    let out = tokio::process::Command::new(BIN)
        .args(["admin", "--rm", &c.addrs[&via], "--shared-secret-file"])
        .arg(c.secret_path())
        .args([
            "replace",
            "--node-id",
            &id.to_string(),
            "--addr",
            &c.addrs[&id],
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "raft-rm admin replace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Node 3's own canaries, once it has applied all `leader` has.
async fn node3_canaries(c: &TestCluster, leader: u64) -> CanaryView {
    let applied = c.applied(leader).unwrap();
    c.wait_applied(&[3], applied, T).await;
    c.http
        .get_json(&c.url(3, "/v1/canary?read=local"), 3)
        .await
        .unwrap()
}

/// The leader itself loses its disk, and the operator runs `replace` at
/// once, while the other two are still electing a new leader: the command
/// waits out the election (every refusal then is "no leader known",
/// nothing done) instead of failing. Found by a 60 s storage-fault run in
/// which the wipe nemesis hit the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_run_during_the_election_after_the_leaders_disk_loss_waits_for_it() {
    let mut c = TestCluster::start(3, Settings::default()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    write_canaries(&c, leader, "before", 1..=5).await;
    let via = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    c.stop(leader).await;
    c.wipe(leader);
    c.restart(leader).await;
    admin_replace(&c, via, leader).await;
    let now = c.wait_leader(&[1, 2, 3], T).await;
    let view = cluster_view(&c, now).await;
    let replaced = view.members.iter().find(|m| m.id == leader).unwrap();
    assert!(replaced.voter, "not a voter again: {view:?}");
    c.shutdown().await;
}
