//! Auth and bad input on every endpoint: clear 4xx answers, never a panic,
//! and the node keeps working afterwards.

use std::time::Duration;

use common::http::{HttpClient, CONTENT_BINCODE, CONTENT_JSON};

use rm_testkit::{Settings, TestCluster};

const T: Duration = Duration::from_secs(10);

/// (method, path) of every route that needs the shared secret.
const PROTECTED: &[(&str, &str)] = &[
    ("POST", "/raft/append"),
    ("POST", "/raft/vote"),
    ("POST", "/raft/snapshot"),
    ("POST", "/v1/admin/add-learner"),
    ("POST", "/v1/admin/promote"),
    ("POST", "/v1/admin/remove"),
    ("POST", "/v1/admin/step-down"),
    ("POST", "/v1/admin/elect"),
    ("POST", "/v1/admin/snapshot"),
    ("POST", "/v1/canary"),
    ("GET", "/v1/canary"),
    ("POST", "/v1/admin/config"),
    ("GET", "/v1/admin/config"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/sessions/renew"),
    ("POST", "/v1/admission/acquire"),
    ("POST", "/v1/admission/release"),
    ("POST", "/v1/admission/adopt"),
    ("POST", "/v1/usage"),
    ("GET", "/v1/resource-groups"),
    ("GET", "/v1/watch?after=0"),
    ("GET", "/v1/coordinators"),
    ("GET", "/v1/coordinators/c1/queries"),
    ("GET", "/v1/coordinators/c1/queries/1_1_c1"),
];

async fn status_of(http: &HttpClient, method: &str, url: &str, body: Vec<u8>, ctype: &str) -> u16 {
    let r = if method == "GET" {
        http.get_bytes(url, &[]).await
    } else {
        http.post_bytes(url, ctype, body, None, &[]).await
    };
    match r {
        Ok(_) => 200,
        Err(e) => e.status().unwrap_or_else(|| panic!("{method} {url}: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_routes_refuse_missing_or_wrong_secrets_and_open_routes_answer() {
    let c = TestCluster::start(3, Settings::default()).await;
    c.wait_leader(&[1, 2, 3], T).await;
    let anonymous = HttpClient::new(None, T);
    let dir = tempfile::tempdir().unwrap();
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "wrong-secret-0123456789").unwrap();
    let wrong = HttpClient::new(
        Some(common::auth::SharedSecret::from_file(&wrong_file).unwrap()),
        T,
    );
    for (method, path) in PROTECTED {
        for client in [&anonymous, &wrong] {
            let s = status_of(
                client,
                method,
                &c.url(1, path),
                b"{}".to_vec(),
                CONTENT_JSON,
            )
            .await;
            assert_eq!(s, 401, "{method} {path}");
        }
    }
    let before =
        c.nodes[&1]
            .state
            .core
            .metrics()
            .render(&c.nodes[&1].raft, None, Default::default());
    let expected = format!("raft_rm_auth_failures_total {}", PROTECTED.len() * 2);
    assert!(before.contains(&expected), "{before}");
    for path in ["/v1/health", "/v1/cluster", "/metrics"] {
        assert_eq!(
            status_of(&anonymous, "GET", &c.url(1, path), vec![], "").await,
            200,
            "{path}"
        );
    }
    let leader_checks: Vec<u16> = futures_statuses(&anonymous, &c).await;
    assert_eq!(
        leader_checks.iter().filter(|s| **s == 200).count(),
        1,
        "{leader_checks:?}"
    );
    assert_eq!(
        leader_checks.iter().filter(|s| **s == 503).count(),
        2,
        "{leader_checks:?}"
    );
    c.shutdown().await;
}

async fn futures_statuses(http: &HttpClient, c: &TestCluster) -> Vec<u16> {
    let mut out = Vec::new();
    for id in [1, 2, 3] {
        out.push(status_of(http, "GET", &c.url(id, "/v1/health/leader"), vec![], "").await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_bodies_get_clear_errors() {
    let c = TestCluster::start(3, Settings::default()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let http = &c.http;
    let url = |p: &str| c.url(leader, p);
    // Raft RPCs: garbage bincode, an empty body, a body past the limit.
    for path in ["/raft/append", "/raft/vote", "/raft/snapshot"] {
        for body in [vec![0xff; 32], vec![]] {
            assert_eq!(
                status_of(http, "POST", &url(path), body, CONTENT_BINCODE).await,
                400,
                "{path}"
            );
        }
    }
    let huge = vec![0u8; raft_rm::http::RAFT_BODY_LIMIT + 1];
    assert_eq!(
        status_of(http, "POST", &url("/raft/append"), huge, CONTENT_BINCODE).await,
        413
    );
    // JSON routes: malformed, wrong shape, unknown fields, bad values, too big.
    let cases: &[(&str, &str)] = &[
        ("/v1/canary", "{"),
        ("/v1/canary", "[]"),
        ("/v1/canary", r#"{"client":"a"}"#),
        ("/v1/canary", r#"{"client":"a","seq":0}"#),
        ("/v1/canary", r#"{"client":"","seq":1}"#),
        ("/v1/canary", r#"{"client":"a","seq":1,"extra":1}"#),
        ("/v1/canary", r#"{"client":"a","seq":-1}"#),
        ("/v1/admin/add-learner", r#"{"node_id":9}"#),
        ("/v1/admin/add-learner", r#"{"node_id":9,"addr":"nope"}"#),
        ("/v1/admin/promote", r#"{"node_id":"x"}"#),
        ("/v1/admin/promote", r#"{"node_id":42}"#),
        ("/v1/admin/remove", r#"{"node_id":42}"#),
        ("/v1/admin/step-down", r#"{"to":42}"#),
        ("/v1/admin/step-down", r#"{"to":"x"}"#),
        ("/v1/admin/config", "{"),
        (
            "/v1/admin/config",
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":-1,"maxQueued":1}]}"#,
        ),
        ("/v1/sessions", r#"{"coordinator":""}"#),
        ("/v1/sessions", r#"{}"#),
        ("/v1/sessions/renew", r#"{"session":"x"}"#),
        (
            "/v1/admission/acquire",
            r#"{"query_id":"q","group":"g","coordinator":"c"}"#,
        ),
        (
            "/v1/admission/acquire",
            r#"{"query_id":"","group":"g","coordinator":"c","session":1}"#,
        ),
        (
            "/v1/admission/acquire",
            r#"{"query_id":"q","group":"g","coordinator":"c","session":1,"priority":"hi"}"#,
        ),
        ("/v1/admission/release", r#"{"query":"q"}"#),
        (
            "/v1/admission/adopt",
            r#"{"query_id":"q","coordinator":"c"}"#,
        ),
        (
            "/v1/usage",
            r#"{"coordinator":"c","seq":1,"groups":{"g":{"running":-1,"queued":0}}}"#,
        ),
        // Counts and figures no coordinator or worker can have.
        (
            "/v1/usage",
            r#"{"coordinator":"c","seq":1,"groups":{"g":{"running":4294967295,"queued":0}}}"#,
        ),
        (
            "/v1/usage",
            r#"{"coordinator":"c","seq":1,"groups":{"g":{"running":0,"queued":1000001}}}"#,
        ),
        (
            "/v1/heartbeat/worker",
            r#"{"node_id":"w","memory":{"total_bytes":18446744073709551615,"reserved_bytes":0,"blocked_tasks":0,"queries":{}},"cpu_cores":0,"running_tasks":0,"ttl_ms":1000}"#,
        ),
        (
            "/v1/heartbeat/worker",
            r#"{"node_id":"w","memory":{"total_bytes":100,"reserved_bytes":10,"blocked_tasks":0,"queries":{"a":10,"b":18446744073709551615}},"cpu_cores":0,"running_tasks":0,"ttl_ms":1000}"#,
        ),
        (
            "/v1/heartbeat/worker",
            r#"{"node_id":"w","memory":{"total_bytes":100,"reserved_bytes":1125899906842625,"blocked_tasks":0,"queries":{}},"cpu_cores":0,"running_tasks":0,"ttl_ms":1000}"#,
        ),
    ];
    for (path, body) in cases {
        let s = status_of(
            http,
            "POST",
            &url(path),
            body.as_bytes().to_vec(),
            CONTENT_JSON,
        )
        .await;
        assert_eq!(s, 400, "{path} {body}");
    }
    // A query process's measured memory may run over its worker's pool
    // (several processes, or one between two samples): the heartbeat says
    // so, and is taken.
    let over = r#"{"node_id":"w","memory":{"total_bytes":100,"reserved_bytes":150,"blocked_tasks":1,"queries":{"q":150}},"cpu_cores":0,"running_tasks":1,"ttl_ms":1000}"#;
    assert_eq!(
        status_of(
            http,
            "POST",
            &url("/v1/heartbeat/worker"),
            over.as_bytes().to_vec(),
            CONTENT_JSON
        )
        .await,
        200
    );
    let big = format!(
        r#"{{"client":"{}","seq":1}}"#,
        "x".repeat(raft_rm::http::API_BODY_LIMIT)
    );
    assert_eq!(
        status_of(
            http,
            "POST",
            &url("/v1/canary"),
            big.into_bytes(),
            CONTENT_JSON
        )
        .await,
        413
    );
    assert_eq!(
        status_of(http, "GET", &url("/v1/canary?read=sideways"), vec![], "").await,
        400
    );
    for bad in [
        "/v1/resource-groups?max_staleness_ms=-1",
        "/v1/watch",
        "/v1/watch?after=x",
    ] {
        assert_eq!(
            status_of(http, "GET", &url(bad), vec![], "").await,
            400,
            "{bad}"
        );
    }
    // Renewing an unknown session is a clear 410, not a 500.
    let gone = http
        .post_bytes(
            &url("/v1/sessions/renew"),
            CONTENT_JSON,
            br#"{"session":424242}"#.to_vec(),
            None,
            &[],
        )
        .await;
    assert_eq!(gone.err().and_then(|e| e.status()), Some(410));
    // The web UI's relay goes only to an announced coordinator, only for
    // a query id.
    assert_eq!(
        status_of(
            http,
            "GET",
            &url("/v1/coordinators/nobody/queries"),
            vec![],
            ""
        )
        .await,
        404
    );
    assert_eq!(
        status_of(
            http,
            "GET",
            &url("/v1/coordinators/c1/queries/a.b"),
            vec![],
            ""
        )
        .await,
        400
    );
    let announce = |addr: &str| {
        format!(r#"{{"node_id":"gone","role":"coordinator","addr":"{addr}","ttl_ms":5000}}"#)
    };
    let dead = format!("127.0.0.1:{}", common::net::unused_loopback_port().unwrap());
    http.post_bytes(
        &url("/v1/announce"),
        CONTENT_JSON,
        announce(&dead).into_bytes(),
        None,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        status_of(
            http,
            "GET",
            &url("/v1/coordinators/gone/queries"),
            vec![],
            ""
        )
        .await,
        502,
        "an announced coordinator that does not answer"
    );
    let listed: common::api::CoordinatorsView =
        http.get_json(&url("/v1/coordinators"), 1).await.unwrap();
    assert!(
        listed
            .coordinators
            .iter()
            .any(|c| c.name == "gone" && c.addr.as_deref() == Some(dead.as_str())),
        "{listed:?}"
    );
    assert_eq!(
        status_of(http, "GET", &url("/v1/nothing-here"), vec![], "").await,
        404
    );
    // A Raft RPC from another cluster is refused.
    let other = http
        .post_bytes(
            &url("/raft/vote"),
            CONTENT_BINCODE,
            vec![0],
            None,
            &[("x-rm-cluster", "someone-else")],
        )
        .await;
    assert_eq!(other.err().and_then(|e| e.status()), Some(409));
    // Still healthy and writable after all of that.
    assert!(c.canary(leader, "ok", 1).await.unwrap().applied);
    c.shutdown().await;
}
