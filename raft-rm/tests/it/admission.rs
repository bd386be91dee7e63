//! Linearizable admission across a real 3-node cluster under faults, and
//! staleness-bounded views on a partitioned follower.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::api::Decision;
use common::http::HttpClient;
use raft_rm::http::admission::AcquireAnswer;
use raft_rm::http::groups::View;
use serde_json::{json, Value};

use rm_testkit::{max_overlap, Settings, TestCluster};

const T: Duration = Duration::from_secs(10);
const LIMIT: usize = 3;

fn groups_file(dir: &Path) -> PathBuf {
    let path = dir.join("resource-groups.json");
    let text = json!({"rootGroups": [
        {"name": "hot", "hardConcurrencyLimit": LIMIT, "maxQueued": 1000},
        {"name": "cool", "hardConcurrencyLimit": 10, "maxQueued": 10,
         "consistency": {"mode": "eventual", "maxStalenessMs": 500}}]});
    std::fs::write(&path, text.to_string()).unwrap();
    path
}

/// Registers coordinator `co`'s session at `leader`.
async fn register(c: &TestCluster, leader: u64) -> u64 {
    let answer: common::api::SessionAnswer = c
        .http
        .post_json(
            &c.url(leader, "/v1/sessions"),
            &common::api::RegisterSession {
                coordinator: "co".into(),
            },
        )
        .await
        .unwrap();
    answer.session
}

/// Coordinator `co`'s acquire of `q` in the `hot` group.
fn hot_acquire(q: &str, session: u64) -> common::api::Acquire {
    common::api::Acquire {
        query_id: q.into(),
        group: "hot".into(),
        coordinator: "co".into(),
        session,
        priority: 0,
        payload: String::new(),
        max_queued_ms: None,
        template: Vec::new(),
    }
}

/// The `hot` group's (running, queued), read linearizably from `leader`.
async fn hot_counts(c: &TestCluster, leader: u64) -> (u32, u32) {
    let view: View = c
        .http
        .get_json(&c.url(leader, "/v1/resource-groups?max_staleness_ms=0"), 3)
        .await
        .unwrap();
    let hot = view.groups.iter().find(|g| g.id == "hot").unwrap();
    (hot.running, hot.queued)
}

/// A 3-node cluster whose initial resource-group configuration is committed.
async fn start(dir: &Path) -> TestCluster {
    let c = TestCluster::start(
        3,
        Settings {
            resource_groups: Some(groups_file(dir)),
            session_lease_ms: Some(60_000),
            ..Default::default()
        },
    )
    .await;
    let deadline = Instant::now() + T;
    while c
        .http
        .get_json::<Value>(&c.url(1, "/v1/admin/config"), 1)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "no configuration committed");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    c
}

/// POSTs to the nodes in turn until one answers (all these calls are
/// idempotent, so a retry after an unknown outcome is safe). Returns the
/// answer and how many attempts it took.
async fn post_any_counted(
    http: &HttpClient,
    addrs: &[String],
    path: &str,
    body: &Value,
) -> (Value, usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    loop {
        let url = format!("http://{}{path}", addrs[i % addrs.len()]);
        match http.post_json(&url, body).await {
            Ok(v) => return (v, i + 1),
            Err(e) => assert!(Instant::now() < deadline, "{path} {body}: {e}"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The standing of a queued query, via adopt; `None` if the cluster does
/// not know it (404).
async fn poll_queued(http: &HttpClient, addrs: &[String], q: &str, session: u64) -> Option<Value> {
    let body = json!({"query_id": q, "coordinator": "co", "session": session});
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    loop {
        let url = format!("http://{}/v1/admission/adopt", addrs[i % addrs.len()]);
        match http.post_json(&url, &body).await {
            Ok(v) => return Some(v),
            Err(e) if e.status() == Some(404) => return None,
            Err(e) => assert!(Instant::now() < deadline, "adopt {q}: {e}"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn post_any(http: &HttpClient, addrs: &[String], path: &str, body: &Value) -> Value {
    post_any_counted(http, addrs, path, body).await.0
}

#[derive(Default)]
struct Log {
    /// Intervals in which a query was certainly admitted.
    held: Vec<(Instant, Instant)>,
    tokens: Vec<u64>,
    /// Releases of queries acknowledged as admitted that the cluster no
    /// longer knew on the first attempt: a lost admission. (After a failed
    /// attempt, "unknown" may just mean that attempt went through.)
    lost: Vec<String>,
    rejected: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_group_never_runs_more_than_its_limit_through_a_partition_and_a_leader_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    c.wait_applied(&[1, 2, 3], 3, T).await;
    let addrs: Vec<String> = c.addrs.values().cloned().collect();
    let http = c.http.clone();
    let session = post_any(&http, &addrs, "/v1/sessions", &json!({"coordinator": "co"})).await
        ["session"]
        .as_u64()
        .unwrap();

    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for k in 0..8 {
        let (http, addrs, log, stop) = (http.clone(), addrs.clone(), log.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let q = format!("c{k}-{n}");
                let req =
                    json!({"query_id": q, "group": "hot", "coordinator": "co", "session": session});
                // Acquire; while queued, poll with adopt (same session, so
                // harmless), which answers 404 if the cluster lost the query
                // (an acquire would silently enqueue it afresh).
                let mut v = post_any(&http, &addrs, "/v1/admission/acquire", &req).await;
                let (start, token) = loop {
                    let a: AcquireAnswer = serde_json::from_value(v).unwrap();
                    match a.decision().unwrap() {
                        Decision::Admitted { fencing_token } => {
                            break (Instant::now(), fencing_token)
                        }
                        Decision::Queued { .. } => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            match poll_queued(&http, &addrs, &q, session).await {
                                Some(next) => v = next,
                                None => {
                                    log.lock().unwrap().lost.push(format!("{q} (queued)"));
                                    break (Instant::now(), 0);
                                }
                            }
                        }
                        _ => {
                            log.lock().unwrap().rejected += 1;
                            break (Instant::now(), 0);
                        }
                    }
                };
                if token == 0 {
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(15 + (n % 4) * 10)).await;
                let end = Instant::now();
                let (v, attempts) = post_any_counted(
                    &http,
                    &addrs,
                    "/v1/admission/release",
                    &json!({"query_id": q}),
                )
                .await;
                let mut l = log.lock().unwrap();
                l.held.push((start, end));
                l.tokens.push(token);
                if v["outcome"] == "unknown" && attempts == 1 {
                    l.lost.push(q.clone());
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let follower = if leader == 3 { 2 } else { 3 };
    c.isolate(follower);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.heal();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    c.stop(leader).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    c.wait_leader(&rest, T).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let l = std::mem::take(&mut *log.lock().unwrap());
    assert!(
        l.held.len() > 50,
        "too little progress: {} admissions",
        l.held.len()
    );
    assert_eq!(l.rejected, 0);
    let distinct: BTreeSet<u64> = l.tokens.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        l.tokens.len(),
        "a fencing token was given twice"
    );
    let peak = max_overlap(l.held.iter().copied());
    assert!(
        peak as usize <= LIMIT,
        "{peak} queries certainly ran at once; the limit is {LIMIT}"
    );
    let view: View = c
        .http
        .get_json(&c.url(rest[0], "/v1/resource-groups"), 5)
        .await
        .unwrap();
    let hot = view.groups.iter().find(|g| g.id == "hot").unwrap();
    assert_eq!(
        (hot.running, hot.queued),
        (0, 0),
        "leaked admissions: {hot:?}"
    );
    assert!(
        l.lost.is_empty(),
        "admissions acknowledged, then unknown at their first release: {:?}",
        l.lost
    );
    eprintln!(
        "hot group: {} admissions, peak {peak} of {LIMIT}",
        l.held.len()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_follower_serves_views_within_the_bound_and_not_beyond() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let view = |id: u64, bound: u64| {
        let url = c.url(id, &format!("/v1/resource-groups?max_staleness_ms={bound}"));
        let http = c.http.clone();
        async move { http.get_json::<View>(&url, 3).await }
    };
    // Healthy (once the leader's first ticks and the initial configuration
    // are applied here; a follower can answer a fresh view just before
    // the configuration reaches it): the follower answers itself, fresh.
    let deadline = Instant::now() + T;
    let v = loop {
        match view(follower, 1000).await {
            Ok(v) if v.config_version.is_some() => break v,
            Ok(v) => assert!(Instant::now() < deadline, "no configuration: {v:?}"),
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v.served_by, follower);
    assert!(v.staleness_ms < 1000, "{}", v.staleness_ms);
    assert_eq!(v.config_version, Some(1));

    c.isolate(follower);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Within a generous bound it still answers, and says how stale it is.
    let v = view(follower, 60_000).await.unwrap();
    assert_eq!(v.served_by, follower);
    assert!(v.staleness_ms >= 700, "{}", v.staleness_ms);
    // Beyond a tight bound it never answers from its own state: it relays
    // to the leader (fresh), or, once it has started campaigning and knows
    // no leader, refuses naming both numbers.
    match view(follower, 400).await {
        Ok(v) => {
            assert_eq!(v.served_by, leader);
            assert!(v.staleness_ms <= 400, "{}", v.staleness_ms);
        }
        Err(common::http::HttpError::Status { status, body, .. }) => {
            assert_eq!(status, 503);
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["max_staleness_ms"], 400);
            assert!(body["staleness_ms"].as_u64().unwrap() >= 700, "{body}");
        }
        Err(e) => panic!("{e}"),
    }
    // When it may not relay, it refuses, naming both numbers.
    let refused = c
        .http
        .get_bytes(
            &c.url(follower, "/v1/resource-groups?max_staleness_ms=400"),
            &[("x-rm-forwarded", "9")],
        )
        .await
        .unwrap_err();
    let common::http::HttpError::Status { status, body, .. } = refused else {
        panic!("{refused}")
    };
    assert_eq!(status, 503);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["max_staleness_ms"], 400);
    assert!(body["staleness_ms"].as_u64().unwrap() >= 700, "{body}");

    // After healing, the follower (which campaigned while cut off: openraft
    // 0.9 has no pre-vote) may briefly disturb the leadership; it serves
    // fresh views itself once caught up.
    c.heal();
    let deadline = Instant::now() + T;
    loop {
        if view(follower, 400)
            .await
            .is_ok_and(|v| v.served_by == follower)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the follower never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_wakes_on_a_promotion_and_times_out_when_quiet() {
    use raft_rm::http::groups::WatchAnswer;
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let addrs: Vec<String> = c.addrs.values().cloned().collect();
    let http = c.http.clone();
    let session = post_any(&http, &addrs, "/v1/sessions", &json!({"coordinator": "co"})).await
        ["session"]
        .as_u64()
        .unwrap();
    let acquire =
        |q: &str| json!({"query_id": q, "group": "hot", "coordinator": "co", "session": session});
    for q in ["w1", "w2", "w3"] {
        post_any(&http, &addrs, "/v1/admission/acquire", &acquire(q)).await;
    }
    let v = post_any(&http, &addrs, "/v1/admission/acquire", &acquire("w4")).await;
    assert_eq!(v["status"], "queued");
    let applied: View = http
        .get_json(&c.url(follower, "/v1/resource-groups"), 3)
        .await
        .unwrap();
    let after = applied.last_applied.unwrap();

    // Quiet: an empty answer after the timeout, pointing at where to go on.
    let t0 = Instant::now();
    let quiet: WatchAnswer = http
        .get_json(
            &c.url(
                follower,
                &format!("/v1/watch?after={after}&coordinator=co&timeout_ms=300"),
            ),
            1,
        )
        .await
        .unwrap();
    assert!(quiet.events.is_empty() && !quiet.truncated);
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    // It says how current "nothing happened" is: the leader stamps its
    // time every tick (200 ms), so a healthy replica is well under 1 s.
    assert!(
        quiet.staleness_ms.is_some_and(|s| s < 1000),
        "{:?}",
        quiet.staleness_ms
    );
    assert_eq!(quiet.leader_id, Some(leader));

    // A release promotes w4; a watcher waiting on a follower wakes with it.
    let url = c.url(
        follower,
        &format!("/v1/watch?after={after}&coordinator=co&timeout_ms=5000"),
    );
    let waiter = {
        let http = http.clone();
        tokio::spawn(async move { http.get_json::<WatchAnswer>(&url, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t1 = Instant::now();
    post_any(
        &http,
        &addrs,
        "/v1/admission/release",
        &json!({"query_id": "w1"}),
    )
    .await;
    let woke = waiter.await.unwrap().unwrap();
    assert!(
        t1.elapsed() < Duration::from_secs(2),
        "the watch did not wake promptly"
    );
    let e = &woke.events[0];
    assert_eq!(
        (e.query_id.as_str(), e.kind),
        ("w4", common::wire::WatchEventKind::Promoted)
    );
    assert!(e.fencing_token.is_some() && e.index > after && woke.next_after >= e.index);
    // Another coordinator's watch does not see it.
    let other: WatchAnswer = http
        .get_json(
            &c.url(
                follower,
                &format!("/v1/watch?after={after}&coordinator=else&timeout_ms=100"),
            ),
            1,
        )
        .await
        .unwrap();
    assert!(other.events.is_empty());

    // Cut off from the others, the follower still answers the watch, and
    // says it is stale: a worker knows not to trust its silence.
    c.isolate(follower);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut: WatchAnswer = http
        .get_json(
            &c.url(follower, &format!("/v1/watch?after={after}&timeout_ms=100")),
            1,
        )
        .await
        .unwrap();
    assert!(
        cut.staleness_ms.is_some_and(|s| s >= 1200),
        "{:?}",
        cut.staleness_ms
    );
    c.heal();
    c.shutdown().await;
}

/// Group commit: a burst of acquires sent to the leader at once shares log
/// entries, and each acquire still gets its own answer, in one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_acquires_shares_entries_and_each_gets_its_own_answer() {
    const BURST: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let http = c.http.clone();
    let session = register(&c, leader).await;
    let send_all = |path: &'static str, body: fn(usize, u64) -> Value| {
        let calls: Vec<_> = (0..BURST)
            .map(|k| {
                let (http, url) = (http.clone(), c.url(leader, path));
                tokio::spawn(
                    async move { http.post_json::<_, Value>(&url, &body(k, session)).await },
                )
            })
            .collect();
        async move {
            let mut answers = Vec::new();
            for call in calls {
                answers.push(call.await.unwrap().unwrap());
            }
            answers
        }
    };

    let before = c.applied(leader).unwrap();
    let answers = send_all("/v1/admission/acquire", |k, session| {
        json!({"query_id": format!("b{k}"), "group": "hot", "coordinator": "co", "session": session})
    })
    .await;
    let entries = c.applied(leader).unwrap() - before;
    let mut tokens = BTreeSet::new();
    let mut positions = BTreeSet::new();
    for a in answers {
        let a: AcquireAnswer = serde_json::from_value(a).unwrap();
        match a.decision().unwrap() {
            Decision::Admitted { fencing_token } => assert!(tokens.insert(fencing_token)),
            Decision::Queued { position } => assert!(positions.insert(position)),
            other => panic!("{other:?}: {a:?}"),
        }
    }
    assert_eq!(tokens.len(), LIMIT, "admitted: {tokens:?}");
    let expected: BTreeSet<u32> = (1..=(BURST - LIMIT) as u32).collect();
    assert_eq!(
        positions, expected,
        "every queued acquire has its own place"
    );
    // Ticks may add an entry or two; without group commit it would be 64+.
    assert!(
        entries < BURST as u64 / 2,
        "{BURST} acquires took {entries} entries"
    );

    // Releasing everything at once promotes and drains the queue exactly.
    let outcomes = send_all(
        "/v1/admission/release",
        |k, _| json!({"query_id": format!("b{k}")}),
    )
    .await;
    assert!(outcomes
        .iter()
        .all(|o| o["outcome"] == "released" || o["outcome"] == "cancelled"));
    assert_eq!(hot_counts(&c, leader).await, (0, 0));
    c.shutdown().await;
}

/// A cluster that has not applied a resource-group configuration is
/// starting: an acquire gets a retryable 503 (it changed nothing), never a
/// final `rejected`; once the configuration is applied it is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_before_the_configuration_is_retryable_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let c = TestCluster::start(3, Settings::default()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let session = register(&c, leader).await;
    let acquire =
        json!({"query_id": "q1", "group": "hot", "coordinator": "co", "session": session});
    let early = c
        .http
        .post_json::<_, Value>(&c.url(leader, "/v1/admission/acquire"), &acquire)
        .await;
    assert_eq!(
        early.as_ref().err().and_then(|e| e.status()),
        Some(503),
        "before any configuration: {early:?}"
    );
    let text = std::fs::read_to_string(groups_file(dir.path())).unwrap();
    c.http
        .post_bytes(
            &c.url(leader, "/v1/admin/config"),
            common::http::CONTENT_JSON,
            text.into_bytes(),
            None,
            &[],
        )
        .await
        .unwrap();
    let admitted: AcquireAnswer = c
        .http
        .post_json(&c.url(leader, "/v1/admission/acquire"), &acquire)
        .await
        .unwrap();
    assert!(
        matches!(admitted.decision(), Ok(Decision::Admitted { .. })),
        "{admitted:?}"
    );
}

/// One group id that fails the name check (a `${USER}` group of a user
/// named with a TAB, or 300 characters long) no longer costs the whole
/// usage report: the valid entries are applied and counted in the view,
/// the invalid ones are named in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_report_applies_its_valid_groups_and_names_the_invalid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    register(&c, leader).await;
    let long = format!("cool.{}", "u".repeat(300));
    let report = json!({"coordinator": "co", "seq": 1, "groups": {
        "cool": {"running": 2, "queued": 1},
        "cool.a\tb": {"running": 5, "queued": 0},
        long.clone(): {"running": 7, "queued": 0},
    }});
    let answer: Value = c
        .http
        .post_json(&c.url(leader, "/v1/usage"), &report)
        .await
        .unwrap();
    assert_eq!(answer["applied"], true, "{answer}");
    let mut rejected: Vec<String> =
        serde_json::from_value(answer["rejected_groups"].clone()).unwrap();
    rejected.sort();
    assert_eq!(rejected, vec!["cool.a\tb".to_string(), long], "{answer}");
    let view: View = c
        .http
        .get_json(&c.url(leader, "/v1/resource-groups"), 3)
        .await
        .unwrap();
    let cool = view.group("cool").unwrap();
    assert_eq!((cool.running, cool.queued), (2, 1), "{view:?}");
    assert_eq!(view.reports.get("co"), Some(&1));
    c.shutdown().await;
}

/// The view says how old each coordinator's report in it is, by the log
/// time at which it was applied: a report applied 1.5 s ago is 1.5 s old
/// on every replica (whatever the replica's own staleness adds), and a
/// newer report starts again from zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_gives_each_reports_age_by_the_log_time_it_was_applied() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    register(&c, leader).await;
    let report = |seq: u64| json!({"coordinator": "co", "seq": seq, "groups": {"cool": {"running": 1, "queued": 0}}});
    let age = |view: &Value| view["report_ages_ms"]["co"].as_u64();
    let _: Value = c
        .http
        .post_json(&c.url(leader, "/v1/usage"), &report(1))
        .await
        .unwrap();
    let fresh: Value = c
        .http
        .get_json(&c.url(leader, "/v1/resource-groups"), 3)
        .await
        .unwrap();
    assert!(age(&fresh).is_some_and(|a| a < 1_000), "{fresh}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for id in [1, 2, 3] {
        let old: Value = c
            .http
            .get_json(&c.url(id, "/v1/resource-groups?max_staleness_ms=60000"), 3)
            .await
            .unwrap();
        let a = age(&old).unwrap_or_else(|| panic!("no age on node {id}: {old}"));
        assert!((1_400..10_000).contains(&a), "node {id}: {old}");
    }
    let _: Value = c
        .http
        .post_json(&c.url(leader, "/v1/usage"), &report(2))
        .await
        .unwrap();
    let renewed: Value = c
        .http
        .get_json(&c.url(leader, "/v1/resource-groups"), 3)
        .await
        .unwrap();
    assert!(age(&renewed).is_some_and(|a| a < 1_000), "{renewed}");
    c.shutdown().await;
}

/// `POST /v1/admission/batch`, sent to a follower (which relays it whole):
/// each operation is answered as its single route would, in order; a bad
/// operation gets its own 400 and the others still run; too many
/// operations are refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_operation_as_its_single_route_would() {
    use common::api::{
        AdmissionBatch, AdmissionBatchAnswer, AdmissionOp, AdmissionOpAnswer, Release,
        ReleaseOutcome, MAX_BATCH_OPS,
    };
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let session = register(&c, leader).await;
    let acquire = |q: &str| AdmissionOp::Acquire(hot_acquire(q, session));
    let release = |q: &str| AdmissionOp::Release(Release { query_id: q.into() });
    let mut ops: Vec<AdmissionOp> = (0..LIMIT + 2).map(|k| acquire(&format!("q{k}"))).collect();
    ops.push(acquire("")); // an invalid query id
    ops.push(release("q0"));
    ops.push(release("never-acquired"));
    let url = c.url(follower, "/v1/admission/batch");
    let answer: AdmissionBatchAnswer = c
        .http
        .post_json(&url, &AdmissionBatch { ops: ops.clone() })
        .await
        .unwrap();
    assert_eq!(answer.answers.len(), ops.len());
    let (mut admitted, mut queued) = (0, 0);
    for a in &answer.answers[..LIMIT + 2] {
        match a {
            AdmissionOpAnswer::Acquire(a) => match a.decision().unwrap() {
                Decision::Admitted { .. } => admitted += 1,
                Decision::Queued { .. } => queued += 1,
                other => panic!("{other:?}"),
            },
            other => panic!("an acquire answered {other:?}"),
        }
    }
    assert_eq!((admitted, queued), (LIMIT, 2));
    match &answer.answers[LIMIT + 2] {
        AdmissionOpAnswer::Error { status: 400, body } => {
            assert!(body.contains("query_id"), "{body}")
        }
        other => panic!("an invalid acquire answered {other:?}"),
    }
    // q0 ran or queued in this same batch; either way the release frees it.
    match &answer.answers[LIMIT + 3] {
        AdmissionOpAnswer::Release(r) => assert!(
            matches!(
                r.outcome,
                ReleaseOutcome::Released | ReleaseOutcome::Cancelled
            ),
            "{r:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        answer.answers[LIMIT + 4],
        AdmissionOpAnswer::Release(common::api::ReleaseAnswer {
            outcome: ReleaseOutcome::Unknown
        })
    );

    let too_many = AdmissionBatch {
        ops: (0..=MAX_BATCH_OPS).map(|_| release("x")).collect(),
    };
    let e = c
        .http
        .post_json::<_, Value>(&url, &too_many)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    c.shutdown().await;
}

/// The batching RM client a coordinator uses: 64 concurrent acquires go
/// out in a few batches and each gets its own answer (exactly the limit
/// admitted, every queued one its own place), an invalid one fails alone
/// with its single route's 400, and releases drain the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_client_gives_each_call_its_own_answer() {
    const BURST: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let session = register(&c, leader).await;
    let addrs: Vec<String> = [1, 2, 3]
        .iter()
        .map(|id| c.url(*id, "")[7..].to_string())
        .collect();
    let rm = common::rm::RmClient::new(addrs, c.http.clone()).batching();
    let request = |q: String| hot_acquire(&q, session);
    let before = c.applied(leader).unwrap();
    let calls: Vec<_> = (0..=BURST)
        .map(|k| {
            let (rm, r) = (
                rm.clone(),
                request(if k == BURST {
                    String::new()
                } else {
                    format!("c{k}")
                }),
            );
            tokio::spawn(async move { rm.acquire(&r).await })
        })
        .collect();
    let mut tokens = BTreeSet::new();
    let mut positions = BTreeSet::new();
    for (k, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Ok(a) if k < BURST => match a.decision().unwrap() {
                Decision::Admitted { fencing_token } => assert!(tokens.insert(fencing_token)),
                Decision::Queued { position } => assert!(positions.insert(position)),
                other => panic!("{other:?}"),
            },
            Err(e) if k == BURST => assert_eq!(e.status(), Some(400), "{e}"),
            other => panic!("call {k}: {other:?}"),
        }
    }
    assert_eq!(tokens.len(), LIMIT);
    assert_eq!(
        positions,
        (1..=(BURST - LIMIT) as u32).collect::<BTreeSet<_>>()
    );
    let entries = c.applied(leader).unwrap() - before;
    assert!(
        entries < BURST as u64 / 2,
        "{BURST} acquires took {entries} entries"
    );

    let releases: Vec<_> = (0..BURST)
        .map(|k| {
            let rm = rm.clone();
            tokio::spawn(async move { rm.release(&format!("c{k}")).await })
        })
        .collect();
    for r in releases {
        r.await.unwrap().unwrap();
    }
    assert_eq!(hot_counts(&c, leader).await, (0, 0));
    c.shutdown().await;
}
