//! End to end, in one process: 3 RMs, 2 workers and 2 coordinators, driven
//! through Trino's client protocol as a client would.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kit::max_overlap;
use crate::kit::stack::{group_view, Stack, StackOptions};
use crate::kit::trino::{run_query, Seen, TrinoClient};

const T: Duration = Duration::from_secs(15);

async fn stack() -> Stack {
    Stack::start(StackOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_flow_through_both_coordinators_under_the_group_limit() {
    let s = stack().await;
    let c1 = s.coordinators[0].addr.to_string();
    let c2 = s.coordinators[1].addr.to_string();

    let one = run_query(&c1, "alice", "SELECT 1", &[]).await;
    assert_eq!(
        one.states.last().map(String::as_str),
        Some("FINISHED"),
        "{one:?}"
    );
    assert_eq!(one.data, Some(serde_json::json!([[1]])));
    assert_eq!(one.columns.as_ref().unwrap()[0]["type"], "integer");

    // No catalog in the session: Trino's error for an unqualified table.
    let bad = run_query(&c2, "bob", "SELECT * FROM nothing", &[]).await;
    assert_eq!(
        bad.error.as_ref().unwrap()["errorName"],
        "MISSING_CATALOG_NAME"
    );
    let write = run_query(&c2, "bob", "INSERT INTO t VALUES (1)", &[]).await;
    assert_eq!(write.error.as_ref().unwrap()["errorName"], "NOT_SUPPORTED");
    let rejected = run_query(&c2, "carol", "SELECT 1", &[]).await;
    assert_eq!(
        rejected.error.as_ref().unwrap()["errorName"],
        "QUERY_REJECTED"
    );
    let no_user = TrinoClient::default()
        .submit(&c1, None, "SELECT 1", &[])
        .await;
    assert_eq!(no_user.err().and_then(|e| e.status()), Some(400));

    // A burst of six 600 ms queries through both coordinators into a group
    // of limit 2 with 2 queue slots: 2 run, 2 queue then run, 2 are refused.
    let sim = [
        ("simulate_duration_ms", "600"),
        ("simulate_memory_bytes", "100"),
    ];
    let mut handles = Vec::new();
    for i in 0..6 {
        let c = if i % 2 == 0 { c1.clone() } else { c2.clone() };
        handles.push(tokio::spawn(async move {
            run_query(&c, "alice", "SELECT big", &sim).await
        }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut seen = Vec::new();
    for h in handles {
        seen.push(h.await.unwrap());
    }
    let finished: Vec<&Seen> = seen
        .iter()
        .filter(|q| q.states.last().map(String::as_str) == Some("FINISHED"))
        .collect();
    let full: Vec<&Seen> = seen
        .iter()
        .filter(|q| {
            q.error
                .as_ref()
                .is_some_and(|e| e["errorName"] == "QUERY_QUEUE_FULL")
        })
        .collect();
    assert_eq!((finished.len(), full.len()), (4, 2), "{seen:#?}");
    assert!(
        finished
            .iter()
            .all(|q| q.states.first().map(String::as_str) == Some("QUEUED")),
        "every query starts QUEUED: {seen:#?}"
    );
    assert!(
        finished
            .iter()
            .filter(|q| q.states.contains(&"RUNNING".to_string()))
            .count()
            >= 3,
        "{seen:#?}"
    );
    // Certainly-running intervals never overlap more than the limit.
    let peak = max_overlap(finished.iter().filter_map(|q| q.running));
    assert!(peak <= 2, "{peak} running at once, limit 2");

    let metrics = TrinoClient::default().metrics(&c1).await;
    assert!(metrics.contains("coordinator_has_session 1"), "{metrics}");
    assert!(
        metrics.contains("coordinator_running_queries 0"),
        "{metrics}"
    );
    // Everything released: the group is empty on the RMs.
    let g = group_view(&s, "g").await;
    assert_eq!(
        (g["running"].as_u64(), g["queued"].as_u64()),
        (Some(0), Some(0)),
        "{g}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_query_stops_its_task_and_frees_its_slot() {
    let s = stack().await;
    let c1 = s.coordinators[0].addr.to_string();
    let client = TrinoClient::default();
    let session = [
        ("simulate_duration_ms", "60000"),
        ("simulate_memory_bytes", "200"),
    ];
    let mut r = client
        .submit(&c1, Some("bob"), "SELECT long", &session)
        .await
        .unwrap();
    let deadline = Instant::now() + T;
    while r["stats"]["state"] != "RUNNING" {
        assert!(Instant::now() < deadline, "{r}");
        r = client.poll(r["nextUri"].as_str().unwrap()).await.unwrap();
    }
    // Wait until a worker holds its memory, then cancel.
    let memory = |s: &Stack| {
        let (http, url) = (s.rms.http.clone(), s.rms.url(2, "/v1/memory"));
        async move {
            http.get_json::<Value>(&url, 1).await.unwrap_or_default()["reserved_bytes"].as_u64()
        }
    };
    while memory(&s).await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the task never reserved its memory"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.cancel(r["nextUri"].as_str().unwrap()).await.unwrap();
    let done: Value = loop {
        let next = client.poll(r["nextUri"].as_str().unwrap()).await.unwrap();
        if next["nextUri"].is_null() {
            break next;
        }
        r = next;
        assert!(Instant::now() < deadline);
    };
    assert_eq!(done["error"]["errorName"], "USER_CANCELED", "{done}");
    while memory(&s).await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the worker still holds the cancelled query's memory"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = group_view(&s, "g").await;
    assert_eq!(
        g["running"].as_u64(),
        Some(0),
        "the admission was not released: {g}"
    );
    s.shutdown().await;
}

/// Eventual mode decides on each coordinator's own view: two coordinators
/// that both see the group's last slot free both take it. Each refreshes
/// every 2 s, so neither sees the other's admission in time. Linearizable
/// mode, the same burst: never more than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_mode_over_admits_across_coordinators_and_linearizable_does_not() {
    let s = Stack::start(StackOptions {
        refresh_ms: 2000,
        ..Default::default()
    })
    .await;
    let c1 = s.coordinators[0].addr.to_string();
    let c2 = s.coordinators[1].addr.to_string();
    let burst = |user: &'static str, n: usize| {
        let (c1, c2) = (c1.clone(), c2.clone());
        async move {
            // Long enough for several RUNNING polls (each waits up to 1 s).
            let sim = [
                ("simulate_duration_ms", "3000"),
                ("simulate_memory_bytes", "10"),
            ];
            let mut handles = Vec::new();
            for i in 0..n {
                let c = if i % 2 == 0 { c1.clone() } else { c2.clone() };
                handles.push(tokio::spawn(async move {
                    run_query(&c, user, "SELECT x", &sim).await
                }));
            }
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.unwrap());
            }
            out
        }
    };
    let peak = |seen: &[Seen]| max_overlap(seen.iter().filter_map(|q| q.running));
    let finished = |seen: &[Seen]| {
        seen.iter()
            .all(|q| q.states.last().map(String::as_str) == Some("FINISHED"))
    };
    let eventual = burst("eve", 2).await;
    assert!(finished(&eventual), "{eventual:#?}");
    assert_eq!(
        peak(&eventual),
        2,
        "eventual mode should over-admit here (limit 1): {eventual:#?}"
    );
    // Linearizable, limit 2, four at once through both coordinators.
    let linear = burst("alice", 4).await;
    assert!(finished(&linear), "{linear:#?}");
    assert!(
        peak(&linear) <= 2,
        "linearizable over-admitted: {linear:#?}"
    );
    s.shutdown().await;
}

/// A coordinator restarted under the same id must be seen by the others
/// at once. Its usage reports used to restart their sequence at 1, and the
/// RMs kept only reports above the last one stored (that of the process
/// before the restart): the new process's running queries were invisible
/// to eventual-mode admission elsewhere, which over-admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinators_usage_is_seen_by_the_others() {
    let mut s = Stack::start(StackOptions {
        refresh_ms: 50,
        ..Default::default()
    })
    .await;
    // c1's report sequence grows (a report every 50 ms)...
    tokio::time::sleep(Duration::from_secs(2)).await;
    // ...and it restarts under the same id.
    s.restart_coordinator(0).await;
    let c1 = s.coordinators[0].addr.to_string();
    let c2 = s.coordinators[1].addr.to_string();
    let sim = [
        ("simulate_duration_ms", "4000"),
        ("simulate_memory_bytes", "10"),
    ];
    let first = tokio::spawn({
        let c1 = c1.clone();
        async move { run_query(&c1, "eve", "SELECT x", &sim).await }
    });
    // Many refreshes later, c2's view includes c1's running query.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = run_query(&c2, "eve", "SELECT x", &sim).await;
    let first = first.await.unwrap();
    let seen = [first, second];
    assert!(
        seen.iter()
            .all(|q| q.states.last().map(String::as_str) == Some("FINISHED")),
        "{seen:#?}"
    );
    assert_eq!(
        max_overlap(seen.iter().filter_map(|q| q.running)),
        1,
        "c2 admitted next to the restarted c1's query (limit 1): {seen:#?}"
    );
    s.shutdown().await;
}

/// A coordinator dies with queries running and queued, right after it told
/// a client QUEUED. Its running queries fail; its queued one survives in
/// the RMs and, when the client's next
/// poll reaches the other coordinator (as through a load balancer), is
/// adopted there and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_coordinators_queued_query_is_adopted_by_another() {
    let mut s = stack().await;
    let c1 = s.coordinators[0].addr.to_string();
    let c2 = s.coordinators[1].addr.to_string();
    let client = TrinoClient::default();
    let submit = |sql: &'static str, ms: &'static str| {
        let (client, c1) = (client.clone(), c1.clone());
        async move {
            let session = [
                ("simulate_duration_ms", ms),
                ("simulate_memory_bytes", "10"),
            ];
            client
                .submit(&c1, Some("bob"), sql, &session)
                .await
                .unwrap()
        }
    };
    // Two long queries fill the group (limit 2); a third queues.
    let mut running = Vec::new();
    for sql in ["SELECT a", "SELECT b"] {
        let mut r = submit(sql, "60000").await;
        let deadline = Instant::now() + T;
        while r["stats"]["state"] != "RUNNING" {
            assert!(Instant::now() < deadline, "{r}");
            r = client.poll(r["nextUri"].as_str().unwrap()).await.unwrap();
        }
        running.push(r);
    }
    // The first answer is enough: QUEUED means the RMs hold the query.
    let queued = submit("SELECT c", "300").await;
    assert_eq!(queued["stats"]["state"], "QUEUED", "{queued}");

    // A cancel that reaches c2 while c1 lives cannot act: it says so.
    let via_c2 = |uri: &str| uri.replace(&c1, &c2);
    let delete_via_c2 = |uri: &str| {
        let (client, url) = (client.clone(), via_c2(uri));
        async move { client.cancel_status(&url).await }
    };
    assert_eq!(
        delete_via_c2(queued["nextUri"].as_str().unwrap()).await,
        503
    );

    // c1 dies at once: no release, no more renewals.
    let t0 = Instant::now();
    s.coordinators.remove(0).shutdown().await;
    eprintln!("c1 shut down in {:?}", t0.elapsed());

    // The queued query's client carries on at c2: 503 (retry) while c1's
    // session still counts as alive, then adopted, promoted, run.
    let mut next = via_c2(queued["nextUri"].as_str().unwrap());
    let deadline = Instant::now() + T;
    let done: Value = loop {
        assert!(
            Instant::now() < deadline,
            "the queued query was never adopted"
        );
        match client.poll(&next).await {
            Ok(r) => match r["nextUri"].as_str() {
                Some(n) => next = n.to_string(),
                None => break r,
            },
            Err(e) if e.status() == Some(503) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(done["stats"]["state"], "FINISHED", "{done}");
    eprintln!("adopted query finished {:?} after c1 died", t0.elapsed());
    // Now c1's session is gone, a cancel through c2 takes effect.
    assert_eq!(
        delete_via_c2(running[0]["nextUri"].as_str().unwrap()).await,
        204
    );
    // The running ones did not survive their coordinator.
    for r in &running {
        let answer = client.poll(&via_c2(r["nextUri"].as_str().unwrap())).await;
        // Whether the RMs still hold its admission or have revoked it with
        // the dead session, the answer says it failed, and why.
        let v = answer.expect("an answer, not 404");
        assert_eq!(v["stats"]["state"], "FAILED", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("coordinator running this query failed")),
            "{v}"
        );
    }
    s.shutdown().await;
}

/// A `nextUri` with the right query id but a wrong slug is someone else's
/// guess: it must neither see nor disturb the query (ids are guessable).
/// An id that is no query id (a path, percent-encoded) is not looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_slug_or_a_forged_id_never_touches_a_query() {
    let s = stack().await;
    let c1 = s.coordinators[0].addr.to_string();
    let client = TrinoClient::default();
    let session = [
        ("simulate_duration_ms", "200"),
        ("simulate_memory_bytes", "10"),
    ];
    let first = client
        .submit(&c1, Some("alice"), "SELECT 1", &session)
        .await
        .unwrap();
    let next = first["nextUri"].as_str().unwrap().to_string();
    // /v1/statement/{phase}/{id}/{slug}/{token}
    let parts: Vec<String> = next.rsplitn(4, '/').map(String::from).collect();
    let (slug, id) = (parts[1].clone(), parts[2].clone());
    // The query runs and ends (the ledger says finished) while its client
    // has not fetched the end yet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let forged = next.replace(&slug, "0123456789abcdef");
    match client.poll(&forged).await {
        Err(e) => assert_eq!(e.status(), Some(404), "{e}"),
        Ok(v) => panic!("a wrong slug was answered: {v}"),
    }
    // A cancel with the wrong slug cancels nothing, and says so.
    assert_eq!(client.cancel_status(&forged).await, 404);
    // The real client still gets its result.
    let mut next = next;
    let done = loop {
        let r = client.poll(&next).await.unwrap();
        match r["nextUri"].as_str() {
            Some(n) => next = n.to_string(),
            None => break r,
        }
    };
    assert_eq!(done["stats"]["state"], "FINISHED", "{done}");
    // Its group as Trino gives it: the path as an array of names.
    let info = client
        .poll(&format!("http://{c1}/v1/query/{id}"))
        .await
        .unwrap();
    assert_eq!(info["resourceGroupId"], serde_json::json!(["g"]), "{info}");
    let state = client
        .poll(&format!("http://{c1}/v1/resourceGroupState/g"))
        .await
        .unwrap();
    assert_eq!(
        (
            &state["id"],
            &state["hardConcurrencyLimit"],
            &state["state"]
        ),
        (
            &serde_json::json!(["g"]),
            &serde_json::json!(2),
            &serde_json::json!("CAN_RUN")
        ),
        "{state}"
    );
    match client
        .poll(&format!("http://{c1}/v1/resourceGroupState/nope"))
        .await
    {
        Err(e) => assert_eq!(e.status(), Some(404), "{e}"),
        Ok(v) => panic!("an unknown group was answered: {v}"),
    }
    // A path in place of the id reaches nothing behind the coordinator.
    for forged_id in ["..%2F..%2Fadmin%2Fconfig", "..", "a%2F..%2F..%2Fhealth"] {
        let uri = format!("http://{c1}/v1/statement/executing/{forged_id}/{slug}/1");
        match client.poll(&uri).await {
            Err(e) => assert_eq!(e.status(), Some(404), "{forged_id}: {e}"),
            Ok(v) => panic!("{forged_id} was answered: {v}"),
        }
    }
    s.shutdown().await;
}

/// Submissions cannot grow a coordinator's memory without bound: past
/// `--max-queries` unfinished queries it answers 503 (a Trino client
/// retries), and an ended query makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_coordinator_answers_503_until_a_query_ends() {
    let s = Stack::start(StackOptions {
        max_queries: 2,
        ..Default::default()
    })
    .await;
    let c1 = s.coordinators[0].addr.to_string();
    let client = TrinoClient::default();
    let long = [
        ("simulate_duration_ms", "60000"),
        ("simulate_memory_bytes", "10"),
    ];
    let a = client
        .submit(&c1, Some("bob"), "SELECT a", &long)
        .await
        .unwrap();
    client
        .submit(&c1, Some("bob"), "SELECT b", &long)
        .await
        .unwrap();
    match client.submit(&c1, Some("bob"), "SELECT c", &long).await {
        Err(e) => assert_eq!(e.status(), Some(503), "{e}"),
        Ok(v) => panic!("a third query was taken: {v}"),
    }
    client.cancel(a["nextUri"].as_str().unwrap()).await.unwrap();
    let deadline = Instant::now() + T;
    loop {
        match client.submit(&c1, Some("bob"), "SELECT d", &long).await {
            Ok(_) => break,
            Err(e) if e.status() == Some(503) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no room after a cancel: {e}"),
        }
    }
    s.shutdown().await;
}

/// The configuration in the RMs' log is the one coordinators admit by: a
/// `POST /v1/admin/config` that raises the eventual group's limit from 1
/// to 2 lets a coordinator run two of its queries at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_follow_a_configuration_change() {
    let s = stack().await;
    let c1 = s.coordinators[0].addr.to_string();
    let raised = crate::kit::groups::STACK.replace(
        r#""name":"ev","hardConcurrencyLimit":1"#,
        r#""name":"ev","hardConcurrencyLimit":2"#,
    );
    assert_ne!(raised, crate::kit::groups::STACK);
    let url = s.rms.url(1, "/v1/admin/config");
    let applied: Value = s
        .rms
        .http
        .post_bytes(&url, "application/json", raised.into_bytes(), None, &[])
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let version = applied["version"].as_u64().unwrap();
    // Within a couple of seconds every coordinator says it is in force.
    let deadline = Instant::now() + T;
    for c in &s.coordinators {
        loop {
            let status: Value = s
                .rms
                .http
                .get_json(&format!("http://{}/v1/status", c.addr), 1)
                .await
                .unwrap();
            if status["config_version"].as_u64() == Some(version) {
                break;
            }
            assert!(Instant::now() < deadline, "not followed: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let client = TrinoClient::default();
    let long = [
        ("simulate_duration_ms", "20000"),
        ("simulate_memory_bytes", "10"),
    ];
    let mut queries = Vec::new();
    for sql in ["SELECT a", "SELECT b"] {
        queries.push(client.submit(&c1, Some("eve"), sql, &long).await.unwrap());
    }
    let deadline = Instant::now() + T;
    for q in &mut queries {
        while q["stats"]["state"] != "RUNNING" {
            assert!(
                Instant::now() < deadline,
                "both should run under the new limit of 2: {q}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            *q = client.poll(q["nextUri"].as_str().unwrap()).await.unwrap();
        }
    }
    s.shutdown().await;
}
