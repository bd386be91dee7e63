//! A real process crashing at each failpoint of the store (feature
//! `failpoints`): node 3 aborts there while writers run, restarts, starts
//! cleanly, catches up, and no acknowledged write is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rm_testkit::{client, Writer};

use crate::processes::{
    assert_nothing_lost_and_converged, free_port, wait_leader, LogsOnPanic, Proc,
};

/// How node 3 meets the failpoint.
#[derive(Clone, Copy)]
enum Start {
    /// With the others: it votes, appends, builds snapshots, purges.
    Together,
    /// After the others purged their logs: it must install a snapshot.
    Late,
}

async fn crash_at(failpoint: &str, start: Start) {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let targets: Vec<String> = peers.values().cloned().collect();
    let crash = [("RAFT_RM_CRASH_AT", failpoint)];
    let mut procs: BTreeMap<u64, Proc> = BTreeMap::new();
    for id in [1, 2] {
        procs.insert(id, Proc::start(dir.path(), id, &peers));
    }
    if let Start::Together = start {
        procs.insert(3, Proc::start_env(dir.path(), 3, &peers, &[], &crash));
    }
    let first_two: Vec<&String> = [&peers[&1], &peers[&2]].into();
    wait_leader(&first_two, Duration::from_secs(15)).await;
    let writers: Vec<Writer> = (0..4)
        .map(|k| Writer::start(&format!("crash-{k}"), client(), targets.clone()))
        .collect();
    if let Start::Late = start {
        // Snapshots every 50 entries, 20 kept: well past the first purge.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        procs.insert(3, Proc::start_env(dir.path(), 3, &peers, &[], &crash));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = procs.get_mut(&3).unwrap().child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never reached failpoint {failpoint}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        !status.success(),
        "node 3 ended with {status:?}, not a crash"
    );
    // The others go on; then node 3 comes back on what it left on disk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    procs.insert(3, Proc::start(dir.path(), 3, &peers));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut outcomes = Vec::new();
    for w in writers {
        let name = w.name.clone();
        outcomes.push((name, w.finish().await));
    }
    assert_nothing_lost_and_converged(&peers, &outcomes).await;
    let restarted: raft_rm::http::health::Health = client()
        .get_json(&format!("http://{}/v1/health", peers[&3]), 3)
        .await
        .expect("node 3 serves after its restart");
    assert!(restarted.initialized);
    // What the recovery left on disk must start too: a plain SIGKILL and
    // restart (a node that had installed a snapshot once could not: its
    // log had a hole below the snapshot; found by the crash-at nemesis).
    procs.get_mut(&3).unwrap().sigkill();
    procs.insert(3, Proc::start(dir.path(), 3, &peers));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let node3 = procs.get_mut(&3).unwrap();
        assert!(
            node3.child.try_wait().unwrap().is_none(),
            "node 3 could not start again on what it left on disk"
        );
        let h: Option<raft_rm::http::health::Health> = client()
            .get_json(&format!("http://{}/v1/health", peers[&3]), 1)
            .await
            .ok();
        if h.is_some_and(|h| h.initialized && h.leader_id.is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 did not rejoin after a plain restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_append_before_fsync() {
    crash_at("log::after-append-before-fsync@20", Start::Together).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_vote_save_before_reply() {
    crash_at("log::after-vote-save-before-reply", Start::Together).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_snapshot_save() {
    crash_at("snapshot::mid-save", Start::Together).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_purge() {
    crash_at("log::after-purge", Start::Together).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_snapshot_install() {
    crash_at("state-machine::mid-install", Start::Late).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_purge_of_an_installed_snapshot() {
    crash_at("log::after-purge", Start::Late).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_fdatasync() {
    crash_at("durable::before-fdatasync@30", Start::Together).await;
}
