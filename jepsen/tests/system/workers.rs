//! A worker against a 3-RM cluster: discovery and the memory view on every
//! RM, and fencing: a revoked admission stops the worker's task.

use std::time::{Duration, Instant};

use common::session::{KeeperSpec, SessionKeeper};
use raft_rm::soft::{ClusterMemory, NodeView};
use serde_json::{json, Value};

use crate::kit::stack::start_worker;
use crate::kit::{groups, Settings, TestCluster};

const T: Duration = Duration::from_secs(10);

/// Polls `check` until it holds or `T` passes.
async fn eventually<F: Fn() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, check: F) {
    let deadline = Instant::now() + T;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three RMs with one group `g` (limit 5, 5 queue slots) and a 1.5 s lease.
async fn cluster_of_one_group(dir: &std::path::Path) -> TestCluster {
    let groups = groups::write(
        dir,
        r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":5,"maxQueued":5}]}"#,
    );
    TestCluster::start(
        3,
        Settings {
            resource_groups: Some(groups),
            session_lease_ms: Some(1500),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rm_sees_the_worker_and_revoked_admissions_stop_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster_of_one_group(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    // A worker `w1` reporting to every RM every 100 ms.
    let rms = c.addrs.values().cloned().collect();
    let w = start_worker("w1", rms, 1000, 100, dir.path()).await;
    let http = c.http.clone();

    // Discovery and the memory view, on every RM.
    for id in [1, 2, 3] {
        let url = c.url(id, "/v1/discovery/nodes?role=worker");
        eventually("the worker is discovered", || async {
            let nodes: Vec<NodeView> = http.get_json(&url, 1).await.unwrap_or_default();
            nodes.iter().any(|n| {
                n.announcement.node_id == "w1" && n.announcement.addr == w.addr.to_string()
            })
        })
        .await;
    }
    eventually("the configuration is committed", || async {
        http.get_json::<Value>(&c.url(leader, "/v1/admin/config"), 1)
            .await
            .is_ok()
    })
    .await;
    // Renew like a live coordinator until the memory checks are done.
    let rm = common::rm::RmClient::new(vec![c.addrs[&leader].clone()], http.clone());
    let spec = KeeperSpec {
        coordinator: "co".into(),
        renew_every: Some(Duration::from_millis(300)),
        fan_out: false,
        give_up_after_lease: false,
    };
    let renewer = SessionKeeper::start(rm, spec, |_| {});
    let session = renewer.registered(Duration::from_secs(10)).await.unwrap();
    let admitted: Value = http
        .post_json(
            &c.url(leader, "/v1/admission/acquire"),
            &json!({"query_id": "q1", "group": "g", "coordinator": "co", "session": session}),
        )
        .await
        .unwrap();
    let token = admitted["fencing_token"].as_u64().unwrap();
    let task = json!({"task_id": "t1", "query_id": "q1", "fencing_token": token, "work": {"kind": "simulated", "duration_ms": 60_000, "memory_bytes": 300}});
    let worker_url = |p: &str| format!("http://{}{p}", w.addr);
    let _: Value = http
        .post_json(&worker_url("/v1/tasks"), &task)
        .await
        .unwrap();
    for id in [1, 2, 3] {
        let url = c.url(id, "/v1/memory");
        eventually("every RM sees the reservation", || async {
            let m: Option<ClusterMemory> = http.get_json(&url, 1).await.ok();
            m.is_some_and(|m| {
                m.reserved_bytes == 300 && m.queries.get("q1") == Some(&300) && m.workers == 1
            })
        })
        .await;
    }

    // The coordinator goes silent: its session expires by log time, the RMs
    // revoke the admission, and the worker stops the task on its own.
    drop(renewer);
    let t0 = Instant::now();
    eventually("the task is revoked", || async {
        let t: Value = http.get_json(&worker_url("/v1/tasks/t1"), 1).await.unwrap();
        t["state"] == "revoked"
    })
    .await;
    eprintln!(
        "task revoked {:?} after the last renewal (lease 1.5 s)",
        t0.elapsed()
    );
    // The task may have stopped first because the worker lost fresh word
    // from the RMs for a moment (a loaded machine): the revocation is the
    // RMs' once the ledger says the query ended.
    eventually("the RMs revoked the admission", || async {
        let q: Option<Value> = http
            .get_json(&c.url(leader, "/v1/admission/queries/q1"), 1)
            .await
            .ok();
        q.is_some_and(|q| q["status"] == "finished")
    })
    .await;
    let again = http.post_json::<_, Value>(&worker_url("/v1/tasks"), &json!({"task_id": "t2", "query_id": "q1", "fencing_token": token, "work": {"kind": "simulated", "duration_ms": 1, "memory_bytes": 1}})).await;
    assert_eq!(
        again.err().and_then(|e| e.status()),
        Some(409),
        "a task under a revoked token is refused"
    );
    eventually("the memory is free again", || async {
        let m: Option<ClusterMemory> = http.get_json(&c.url(1, "/v1/memory"), 1).await.ok();
        m.is_some_and(|m| m.reserved_bytes == 0)
    })
    .await;

    // A stopped worker ages out of discovery after its TTL (3 intervals).
    w.shutdown().await;
    eventually("the worker is forgotten", || async {
        let nodes: Vec<NodeView> = http
            .get_json(&c.url(2, "/v1/discovery/nodes"), 1)
            .await
            .unwrap_or_default();
        nodes.is_empty()
    })
    .await;
    c.shutdown().await;
}

/// An RM that accepts connections and never answers (as a paused process
/// does) must not delay the worker's reports to the others: its entry
/// there would expire and coordinators would see no worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_rm_does_not_stall_reports_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let c = TestCluster::start(1, Settings::default()).await;
    c.wait_leader(&[1], T).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    // Accept and hold every connection, answering nothing.
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let rms = vec![silent_addr, c.addrs[&1].clone()];
    let w = start_worker("w1", rms, 1000, 100, dir.path()).await;
    // For 3 s (ten TTLs of 300 ms) the healthy RM always knows the worker.
    eventually("the worker is known", || async {
        let m: ClusterMemory = c.http.get_json(&c.url(1, "/v1/memory"), 1).await.unwrap();
        m.workers == 1
    })
    .await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let m: ClusterMemory = c.http.get_json(&c.url(1, "/v1/memory"), 1).await.unwrap();
        assert_eq!(
            m.workers, 1,
            "the worker dropped out of the healthy RM's view"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.shutdown().await;
    hold.abort();
    c.shutdown().await;
}

/// Fencing without trusting one RM: a follower cut off from the leader
/// keeps answering the watch, ever staler. A worker that can reach only it
/// stops its task under a fencing token within the fencing bound (1 s: half
/// the 1.5 s lease, but at least 1 s); a worker that also knows the other RMs moves its
/// watch to them and keeps its task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_with_a_stale_rm_stops_its_tasks_and_one_that_can_switch_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster_of_one_group(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let others: Vec<String> = c
        .addrs
        .iter()
        .filter(|(id, _)| **id != follower)
        .map(|(_, a)| a.clone())
        .collect();
    let http = c.http.clone();
    eventually("the configuration is committed", || async {
        http.get_json::<Value>(&c.url(leader, "/v1/admin/config"), 1)
            .await
            .is_ok()
    })
    .await;
    let only_follower = start_worker(
        "w1",
        vec![c.addrs[&follower].clone()],
        1000,
        100,
        dir.path(),
    )
    .await;
    // The follower first: where its watch starts.
    let mut all = vec![c.addrs[&follower].clone()];
    all.extend(others);
    let can_switch = start_worker("w2", all, 1000, 100, dir.path()).await;

    let rm = common::rm::RmClient::new(vec![c.addrs[&leader].clone()], http.clone());
    let spec = KeeperSpec {
        coordinator: "co".into(),
        renew_every: Some(Duration::from_millis(300)),
        fan_out: false,
        give_up_after_lease: false,
    };
    let renewer = SessionKeeper::start(rm, spec, |_| {});
    let session = renewer.registered(Duration::from_secs(10)).await.unwrap();
    let mut start = Vec::new();
    for (q, w) in [("q1", &only_follower), ("q2", &can_switch)] {
        let admitted: Value = http
            .post_json(
                &c.url(leader, "/v1/admission/acquire"),
                &json!({"query_id": q, "group": "g", "coordinator": "co", "session": session}),
            )
            .await
            .unwrap();
        let token = admitted["fencing_token"].as_u64().unwrap();
        let task = json!({"task_id": q, "query_id": q, "fencing_token": token, "work": {"kind": "simulated", "duration_ms": 60_000, "memory_bytes": 1}});
        let url = format!("http://{}/v1/tasks", w.addr);
        // 503 until the worker has heard from a fresh RM.
        eventually("the worker takes the task", || async {
            http.post_json::<_, Value>(&url, &task).await.is_ok()
        })
        .await;
        start.push(url);
    }
    let state = |w: &worker::node::RunningWorker, q: &str| {
        let url = format!("http://{}/v1/tasks/{q}", w.addr);
        let http = http.clone();
        async move {
            let t: Value = http.get_json(&url, 1).await.unwrap();
            t
        }
    };

    c.isolate(follower);
    let t0 = Instant::now();
    eventually("the cut-off worker stops its task", || async {
        state(&only_follower, "q1").await["state"] == "revoked"
    })
    .await;
    let took = t0.elapsed();
    let t = state(&only_follower, "q1").await;
    assert_eq!(t["error_name"], "FENCING_UNVERIFIED", "{t}");
    eprintln!("measured: a worker whose only RM was cut off stopped its task {took:?} after the cut (bound 1000 ms)");
    // The other worker follows a fresh RM: its task runs on.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let t = state(&can_switch, "q2").await;
        assert_eq!(t["state"], "running", "{t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.heal();
    only_follower.shutdown().await;
    can_switch.shutdown().await;
    drop(renewer);
    c.shutdown().await;
}
