//! The coordinated low-memory killer: one kill per episode, decided in the
//! log, carried out by coordinators and workers, kept across failover.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wire::{HeartbeatAnswer, MemoryPool, WorkerHeartbeat};
use raft_rm::config::RawConfig;
use serde_json::Value;

use crate::kit::stack::{Stack, StackOptions};
use crate::kit::trino::{run_query, Seen};
use crate::kit::{Settings, TestCluster};

const T: Duration = Duration::from_secs(15);

fn killer(delay: &str, leak_timeout: &str) -> RawConfig {
    RawConfig {
        low_memory_killer_delay: Some(delay.into()),
        low_memory_killer_leak_timeout: Some(leak_timeout.into()),
        ..Default::default()
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Instant::now()
}

async fn memory_view(c: &TestCluster, id: u64) -> Value {
    c.http
        .get_json(&c.url(id, "/v1/memory"), 3)
        .await
        .unwrap_or_default()
}

/// Polls node `id`'s `/v1/memory` until `f` holds; answers the view.
async fn wait_view(c: &TestCluster, id: u64, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let v = memory_view(c, id).await;
        if f(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_is_killed_per_episode_and_the_others_finish() {
    let s = Stack::start(StackOptions {
        workers: 1,
        worker_memory_bytes: 120,
        worker_heartbeat_ms: 100,
        rm_extra: killer("1s", "10s"),
        ..Default::default()
    })
    .await;
    let c1 = s.coordinators[0].addr.to_string();
    let c2 = s.coordinators[1].addr.to_string();
    let tasks = s.workers[0].tasks.clone();
    let pool = move || tasks.pool().snapshot();
    let submit = |c: &str, user: &'static str, ms: &'static str, bytes: &'static str| {
        let c = c.to_string();
        tokio::spawn(async move {
            let sim = [
                ("simulate_duration_ms", ms),
                ("simulate_memory_bytes", bytes),
            ];
            run_query(&c, user, "SELECT heavy", &sim).await
        })
    };
    // The largest query, in an eventual-mode group: its owner is not in
    // the RMs' ledger, so the kill must find its coordinator another way.
    let victim = submit(&c1, "eve", "60000", "50");
    wait_until("the victim to run", || pool().reserved_bytes == 50).await;
    let others = vec![
        submit(&c2, "mallory", "4000", "40"),
        submit(&c1, "mallory", "4000", "30"),
    ];
    wait_until("a full pool", || pool().reserved_bytes == 120).await;
    let waiter = submit(&c2, "mallory", "1000", "30");
    let blocked_at = wait_until("a blocked pool", || pool().is_blocked()).await;
    let freed_at = wait_until("the victim's memory to be free", || {
        !pool().queries.values().any(|b| *b == 50)
    })
    .await;
    let blocked_to_free = freed_at - blocked_at;
    eprintln!(
        "low-memory killer, delay 1 s: blocked -> memory free in {} ms",
        blocked_to_free.as_millis()
    );
    assert!(
        blocked_to_free >= Duration::from_millis(900),
        "killed before the delay: {blocked_to_free:?}"
    );

    let killed = victim.await.unwrap();
    let error = killed.error.expect("the victim failed");
    assert_eq!(error["errorName"], "CLUSTER_OUT_OF_MEMORY", "{error}");
    assert_eq!(error["errorCode"], 131076);
    assert_eq!(error["errorType"], "INSUFFICIENT_RESOURCES");
    assert_eq!(
        error["message"],
        "Query killed because the cluster is out of memory. Please try again in a few minutes."
    );
    let mut finished = vec![waiter.await.unwrap()];
    for o in others {
        finished.push(o.await.unwrap());
    }
    for seen in &finished {
        assert_eq!(
            seen.states.last().map(String::as_str),
            Some("FINISHED"),
            "{seen:?}"
        );
    }

    // One decision, settled once its memory was seen gone, the same on
    // every RM.
    let leader = s.rms.wait_leader(&[1, 2, 3], T).await;
    let v = wait_view(&s.rms, leader, "the kill to settle", |v| {
        v["kills"][0]["outcome"] == "freed"
    })
    .await;
    let kills = v["kills"].as_array().unwrap();
    assert_eq!(kills.len(), 1, "{v}");
    assert_eq!(kills[0]["episode"], 1);
    assert_eq!(kills[0]["reason"], "total-reservation-on-blocked-nodes");
    assert_eq!(kills[0]["figures"]["query_bytes"], 50);
    assert_eq!(
        kills[0]["figures"]["blocked_nodes"],
        serde_json::json!(["w1"])
    );
    assert_eq!(v["episodes_with_kills"], 1);
    assert_eq!(v["out_of_memory"], false, "{v}");
    for id in [1, 2, 3] {
        let other = wait_view(&s.rms, id, "the settlement everywhere", |o| {
            o["kills"][0]["outcome"] == "freed"
        })
        .await;
        assert_eq!(other["kills"], v["kills"]);
    }
    let metrics = s
        .rms
        .http
        .get_bytes(&s.rms.url(leader, "/metrics"), &[])
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("raft_rm_memory_oom_episodes_total 1"),
        "{metrics}"
    );
    s.shutdown().await;
}

/// Sends a worker's heartbeat to every RM every 100 ms, as a worker that
/// never frees anything would; records the kills the answers order.
struct StandIn {
    pool: Arc<Mutex<MemoryPool>>,
    ordered: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    fn start(c: &TestCluster, pool: MemoryPool) -> StandIn {
        let pool = Arc::new(Mutex::new(pool));
        let ordered = Arc::new(Mutex::new(BTreeSet::new()));
        let (http, urls) = (
            c.http.clone(),
            c.addrs
                .values()
                .map(|a| format!("http://{a}/v1/heartbeat/worker"))
                .collect::<Vec<_>>(),
        );
        let (p, o) = (pool.clone(), ordered.clone());
        let task = tokio::spawn(async move {
            loop {
                let hb = WorkerHeartbeat {
                    node_id: "w1".into(),
                    memory: p.lock().unwrap().clone(),
                    cpu_cores: 0.0,
                    running_tasks: 2,
                    ttl_ms: 1_000,
                    queries: Default::default(),
                };
                for url in &urls {
                    if let Ok(a) = http.post_json::<_, HeartbeatAnswer>(url, &hb).await {
                        o.lock()
                            .unwrap()
                            .extend(a.kills.into_iter().map(|k| k.query_id));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        StandIn {
            pool,
            ordered,
            task,
        }
    }
}

fn blocked_pool(queries: &[(&str, u64)]) -> MemoryPool {
    let queries: BTreeMap<String, u64> = queries.iter().map(|(q, b)| (q.to_string(), *b)).collect();
    MemoryPool {
        total_bytes: 100,
        reserved_bytes: queries.values().sum(),
        blocked_tasks: 1,
        queries,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_neither_repeats_nor_loses_the_kill() {
    let mut c = TestCluster::start(
        3,
        Settings {
            extra: killer("500ms", "3s"),
            ..Default::default()
        },
    )
    .await;
    let old = c.wait_leader(&[1, 2, 3], T).await;
    let worker = StandIn::start(&c, blocked_pool(&[("qa", 60), ("qb", 40)]));
    let decided = wait_view(&c, old, "a kill decision", |v| {
        v["kills"].as_array().is_some_and(|k| !k.is_empty())
    })
    .await;
    let decided_at = Instant::now();
    assert_eq!(decided["kills"][0]["query_id"], "qa");
    // The leader dies right after its decision committed.
    c.stop(old).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    let new = c.wait_leader(&rest, T).await;

    // The worker stand-in never frees qa, and the cluster stays out of
    // memory well past the delay: the new leader still must not kill again
    // until qa's decision settles (here: leaks, at 3 s).
    while decided_at.elapsed() < Duration::from_millis(2_500) {
        let v = memory_view(&c, new).await;
        let kills = v["kills"].as_array().cloned().unwrap_or_default();
        assert_eq!(kills.len(), 1, "killed again in the same episode: {v}");
        assert_eq!(kills[0]["query_id"], "qa");
        assert_eq!(kills[0]["outcome"], "unsettled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worker.ordered.lock().unwrap().contains("qa"));
    let v = wait_view(&c, new, "the leak and the next episode's kill", |v| {
        v["kills"].as_array().is_some_and(|k| k.len() == 2)
    })
    .await;
    assert_eq!(v["kills"][0]["query_id"], "qb", "newest first: {v}");
    assert_eq!(v["kills"][0]["episode"], 2);
    assert_eq!(v["kills"][1]["outcome"], "leaked");
    // qb's memory goes: its decision settles as freed.
    *worker.pool.lock().unwrap() = MemoryPool {
        total_bytes: 100,
        ..Default::default()
    };
    let v = wait_view(&c, new, "qb to settle", |v| {
        v["kills"][0]["outcome"] == "freed"
    })
    .await;
    assert_eq!(v["episodes_with_kills"], 2);
    assert!(worker.ordered.lock().unwrap().contains("qb"));
    worker.task.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_the_memory_limits_are_killed_with_trinos_errors() {
    let s = Stack::start(StackOptions {
        workers: 1,
        worker_memory_bytes: 120,
        worker_heartbeat_ms: 100,
        rm_extra: RawConfig {
            query_max_memory: Some("80B".into()),
            query_max_memory_per_node: Some("60B".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let c1 = s.coordinators[0].addr.to_string();
    let c2 = s.coordinators[1].addr.to_string();
    let sim = |bytes| {
        [
            ("simulate_duration_ms", "30000"),
            ("simulate_memory_bytes", bytes),
        ]
    };
    // 70 bytes: within the cluster limit, over the per-node one.
    let local = run_query(&c1, "mallory", "SELECT heavy", &sim("70")).await;
    // 90 bytes: over the cluster limit (reported as such, not per node).
    let global = run_query(&c2, "eve", "SELECT heavy", &sim("90")).await;
    // 50 bytes: within both.
    let fine = run_query(
        &c1,
        "mallory",
        "SELECT fine",
        &[
            ("simulate_duration_ms", "300"),
            ("simulate_memory_bytes", "50"),
        ],
    )
    .await;
    let error = |seen: &Seen| seen.error.clone().unwrap_or_default();
    let (l, g) = (error(&local), error(&global));
    assert_eq!(
        (&l["errorName"], &l["errorCode"]),
        (&"EXCEEDED_LOCAL_MEMORY_LIMIT".into(), &131079.into()),
        "{l}"
    );
    assert_eq!(
        l["message"],
        "Query exceeded per-node memory limit of 60B [on w1]"
    );
    assert_eq!(
        (&g["errorName"], &g["errorCode"]),
        (&"EXCEEDED_GLOBAL_MEMORY_LIMIT".into(), &131073.into()),
        "{g}"
    );
    assert_eq!(
        g["message"],
        "Query exceeded distributed user memory limit of 80B"
    );
    assert_eq!(
        fine.states.last().map(String::as_str),
        Some("FINISHED"),
        "{fine:?}"
    );
    let leader = s.rms.wait_leader(&[1, 2, 3], T).await;
    let v = wait_view(&s.rms, leader, "both kills settled", |v| {
        v["kills"]
            .as_array()
            .is_some_and(|k| k.len() == 2 && k.iter().all(|d| d["outcome"] == "freed"))
    })
    .await;
    let reasons: BTreeSet<&str> = v["kills"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        BTreeSet::from(["query.max-memory", "query.max-memory-per-node"])
    );
    assert_eq!(v["episodes_with_kills"], 0, "limit kills are not episodes");
    s.shutdown().await;
}

/// A real query that runs for many seconds, its process growing by about
/// 200 MB a second: every line item against 20,000 others.
const GROWING: &str = "SELECT count(*) FROM tpch.tiny.lineitem a CROSS JOIN \
                       (SELECT orderkey FROM tpch.tiny.lineitem LIMIT 20000) b \
                       WHERE a.orderkey + b.orderkey > 0";

/// A real query whose process grows past `query.max-memory-per-node`: the
/// RMs see its measured memory in the worker's heartbeats and kill it, the
/// worker kills its process, and the memory is free at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_query_over_the_per_node_limit_is_killed_and_its_memory_freed() {
    let s = Stack::start(StackOptions {
        workers: 1,
        worker_memory_bytes: 16 << 30,
        worker_heartbeat_ms: 100,
        rm_extra: RawConfig {
            query_max_memory_per_node: Some("200MB".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let c1 = s.coordinators[0].addr.to_string();
    let tasks = s.workers[0].tasks.clone();
    let query = tokio::spawn(async move { run_query(&c1, "mallory", GROWING, &[]).await });
    let pool = {
        let tasks = tasks.clone();
        move || tasks.pool().snapshot()
    };
    let over = wait_until("the query's process to hold 200 MB", || {
        pool().reserved_bytes > 200_000_000
    })
    .await;
    let free = wait_until("its memory to be free", || pool().reserved_bytes == 0).await;
    let seen = query.await.unwrap();
    let e = seen.error.clone().unwrap_or_default();
    assert_eq!(e["errorName"], "EXCEEDED_LOCAL_MEMORY_LIMIT", "{seen:?}");
    assert_eq!(
        e["message"],
        "Query exceeded per-node memory limit of 200MB [on w1]"
    );
    let task = tasks.list().into_iter().next().unwrap();
    let exit_ms = task.exit_after_stop_ms.unwrap();
    println!(
        "over 200 MB -> free: {} ms (heartbeat, the RMs' decision, the kill); kill -> process gone: {exit_ms} ms; peak {} bytes, {} ms CPU",
        free.duration_since(over).as_millis(),
        task.peak_memory_bytes,
        task.cpu_ms
    );
    assert!(exit_ms < 1000, "{task:?}");
    assert!(
        task.peak_memory_bytes > 200_000_000 && task.cpu_ms > 0,
        "{task:?}"
    );
    s.shutdown().await;
}

/// The low-memory killer on real work: a simulated task holds 300 MB of a
/// 1 GiB pool, a real query's process grows past it, and a task wanting
/// 500 MB waits: once the query and the task fill the pool, it is
/// blocked, and the RMs kill the largest holder, the query. Its process is
/// gone at once, its measured memory with it, and the waiting task runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_low_memory_killer_kills_a_real_query_and_its_memory_is_freed() {
    let s = Stack::start(StackOptions {
        workers: 1,
        worker_memory_bytes: 1 << 30,
        worker_heartbeat_ms: 100,
        // No delay: the query grows about 200 MB a second, and a query
        // holding the whole pool alone is the worker's to kill.
        rm_extra: killer("0s", "10s"),
        ..Default::default()
    })
    .await;
    let c1 = s.coordinators[0].addr.to_string();
    let c2 = s.coordinators[1].addr.to_string();
    let tasks = s.workers[0].tasks.clone();
    let pool = move || tasks.pool().snapshot();
    let simulated = |c: &str, ms: &'static str, bytes: &'static str| {
        let c = c.to_string();
        tokio::spawn(async move {
            let sim = [
                ("simulate_duration_ms", ms),
                ("simulate_memory_bytes", bytes),
            ];
            run_query(&c, "mallory", "SELECT held", &sim).await
        })
    };
    let holder = simulated(&c1, "30000", "300000000");
    wait_until("the holder to run", || pool().reserved_bytes >= 300_000_000).await;
    let c = c2.clone();
    let hog = tokio::spawn(async move { run_query(&c, "mallory", GROWING, &[]).await });
    wait_until("the query to hold 300 MB", || {
        pool().reserved_bytes > 600_000_000
    })
    .await;
    let hog_id = pool()
        .queries
        .iter()
        .find(|(_, b)| **b != 300_000_000)
        .map(|(q, _)| q.clone())
        .unwrap();
    let waiter = simulated(&c1, "300", "500000000");
    let blocked_at = wait_until("a blocked pool", || pool().is_blocked()).await;
    let freed_at = wait_until("the query's memory to be free", || {
        !pool().queries.contains_key(&hog_id)
    })
    .await;
    let seen = hog.await.unwrap();
    let e = seen.error.clone().unwrap_or_default();
    assert_eq!(e["errorName"], "CLUSTER_OUT_OF_MEMORY", "{seen:?}");
    let done = waiter.await.unwrap();
    assert_eq!(
        done.states.last().map(String::as_str),
        Some("FINISHED"),
        "{done:?}"
    );
    let task = s.workers[0].tasks.get(&hog_id).unwrap();
    let exit_ms = task.exit_after_stop_ms.unwrap();
    println!(
        "blocked -> free: {} ms (a heartbeat, the RMs' decision, the kill); kill -> process gone: {exit_ms} ms; the query held {} bytes at most",
        freed_at.duration_since(blocked_at).as_millis(),
        task.peak_memory_bytes
    );
    assert!(exit_ms < 1000, "{task:?}");
    holder.abort();
    s.shutdown().await;
}
