//! The worker's HTTP API: auth, bad input, and the task lifecycle over the
//! wire. The RMs it reports to are absent here; it keeps serving.

use std::time::Duration;

use common::auth::SharedSecret;
use common::http::{HttpClient, HttpError, CONTENT_JSON};
use serde_json::{json, Value};
use worker::config::WorkerArgs;

fn status(r: Result<Vec<u8>, HttpError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.status().unwrap_or(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_api_checks_auth_and_input_and_runs_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    std::fs::write(&secret_path, "worker-test-secret-0123").unwrap();
    let args = WorkerArgs {
        id: "w".into(),
        listen: "127.0.0.1:0".into(),
        advertise: None,
        rm: vec!["127.0.0.1:1".into()],
        memory_bytes: 100,
        shared_secret_file: Some(secret_path.clone()),
        heartbeat_ms: 1000,
        data_dir: None,
        fencing_bound_ms: None,
        catalog_dir: None,
        tpch_cache_dir: None,
        tls: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let w = worker::node::start(
        args.validate().unwrap(),
        listener,
        common::clock::SystemClock::shared(),
    )
    .await
    .unwrap();
    let url = |p: &str| format!("http://{}{p}", w.addr);
    let anon = HttpClient::new(None, Duration::from_secs(5));
    let http = HttpClient::new(
        Some(SharedSecret::from_file(&secret_path).unwrap()),
        Duration::from_secs(5),
    );
    let post = |c: &HttpClient, p: &str, body: &str| {
        let (c, u, b) = (c.clone(), url(p), body.as_bytes().to_vec());
        async move { c.post_bytes(&u, CONTENT_JSON, b, None, &[]).await }
    };

    // Eventual-mode tasks (fencing token 0): a token would need an RM's
    // ledger to vouch for it (`tests/fencing.rs`).
    let task = r#"{"task_id":"t1","query_id":"q","fencing_token":0,"work":{"kind":"simulated","duration_ms":60000,"memory_bytes":60}}"#;
    assert_eq!(status(post(&anon, "/v1/tasks", task).await), 401);
    assert_eq!(status(anon.get_bytes(&url("/v1/tasks"), &[]).await), 401);
    for path in ["/v1/info", "/v1/health", "/metrics"] {
        assert_eq!(status(anon.get_bytes(&url(path), &[]).await), 200, "{path}");
    }
    for bad in [
        "{",
        r#"{"task_id":"t","query_id":"q"}"#,
        r#"{"task_id":"","query_id":"q","fencing_token":1,"work":{"kind":"simulated","duration_ms":1,"memory_bytes":1}}"#,
        r#"{"task_id":"t","query_id":"q","fencing_token":1,"work":{"kind":"simulated","duration_ms":1,"memory_bytes":101}}"#,
        r#"{"task_id":"t","query_id":"q","fencing_token":-1,"work":{"kind":"simulated","duration_ms":1,"memory_bytes":1}}"#,
    ] {
        assert_eq!(status(post(&http, "/v1/tasks", bad).await), 400, "{bad}");
    }
    assert_eq!(status(post(&http, "/v1/tasks", task).await), 200);
    let conflicting = r#"{"task_id":"t1","query_id":"q","fencing_token":0,"work":{"kind":"simulated","duration_ms":5,"memory_bytes":60}}"#;
    assert_eq!(status(post(&http, "/v1/tasks", conflicting).await), 409);
    // A second task does not fit beside the first: it is blocked, and so is the node.
    let t2 = r#"{"task_id":"t2","query_id":"q2","fencing_token":0,"work":{"kind":"simulated","duration_ms":60000,"memory_bytes":60}}"#;
    let b: Value = serde_json::from_slice(&post(&http, "/v1/tasks", t2).await.unwrap()).unwrap();
    assert_eq!(b["state"], "blocked");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let info: Value = http.get_json(&url("/v1/info"), 1).await.unwrap();
    assert_eq!(
        (
            info["memory"]["reserved_bytes"].as_u64(),
            info["memory"]["blocked_tasks"].as_u64()
        ),
        (Some(60), Some(1))
    );
    let metrics = String::from_utf8(http.get_bytes(&url("/metrics"), &[]).await.unwrap()).unwrap();
    assert!(metrics.contains("worker_blocked_tasks 1"), "{metrics}");
    // Cancel the first: the second gets its memory; then kill it.
    assert_eq!(status(http.delete(&url("/v1/tasks/t1")).await), 200);
    assert_eq!(status(anon.delete(&url("/v1/tasks/t2")).await), 401);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let t: Value = http.get_json(&url("/v1/tasks/t2"), 1).await.unwrap();
        if t["state"] == "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status(post(&http, "/v1/tasks/t2/kill", r#"{"reason":"low memory"}"#).await),
        200
    );
    assert_eq!(
        status(post(&http, "/v1/tasks/t2/kill", r#"{"why":"x"}"#).await),
        400
    );
    assert_eq!(
        status(http.get_bytes(&url("/v1/tasks/nope"), &[]).await),
        404
    );
    assert_eq!(status(http.get_bytes(&url("/v1/nowhere"), &[]).await), 404);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t1: Value = http.get_json(&url("/v1/tasks/t1"), 1).await.unwrap();
    let t2: Value = http.get_json(&url("/v1/tasks/t2"), 1).await.unwrap();
    assert_eq!(
        (t1["state"].as_str(), t2["state"].as_str()),
        (Some("cancelled"), Some("killed"))
    );
    assert_eq!(t2["reason"], json!("low memory"));
    w.shutdown().await;
}
