//! The metrics an SRE watches during a failover drill move when they
//! should: leader changes, leader contact age, admission errors by kind;
//! and the snapshot metrics, with the on-demand snapshot route.

use std::time::{Duration, Instant};

use common::http::CONTENT_JSON;
use raft_rm::NodeId;
use serde_json::{json, Value};

use rm_testkit::{Settings, TestCluster};

const T: Duration = Duration::from_secs(10);

async fn scrape(c: &TestCluster, id: NodeId) -> String {
    let bytes = c.http.get_bytes(&c.url(id, "/metrics"), &[]).await.unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The value of `series` (name and labels as rendered) on node `id`, 0 if
/// the series is absent.
async fn sample(c: &TestCluster, id: NodeId, series: &str) -> f64 {
    scrape(c, id)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// Polls `series` on node `id` until `ok` holds; returns the value.
async fn wait_sample(c: &TestCluster, id: NodeId, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + T;
    loop {
        let v = sample(c, id, series).await;
        if ok(v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "node {id}: {series} stuck at {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CHANGES: &str = "raft_rm_leader_changes_total";
const AGE: &str = "raft_rm_leader_contact_age_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_changes_and_contact_age_follow_a_failover() {
    let c = TestCluster::start(3, Settings::default()).await;
    let old = c.wait_leader(&[1, 2, 3], T).await;
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    // Older than the processes' start, so a small age below is contact,
    // not the fallback to process start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut before = Vec::new();
    for id in [1, 2, 3] {
        // Learning the first leader counts; heartbeats (followers) and
        // quorum acks (leader) keep the contact age well under a second.
        let changes = wait_sample(&c, id, CHANGES, |v| v >= 1.0).await;
        wait_sample(&c, id, AGE, |v| v < 0.5).await;
        before.push((id, changes));
    }
    // Cut the leader off: it keeps leading but hears no quorum, so its
    // contact age grows; the others elect a new leader and count a change.
    c.isolate(old);
    wait_sample(&c, old, AGE, |v| v > 1.0).await;
    let new = c.wait_leader(&rest, T).await;
    assert_ne!(new, old);
    for (id, changes) in before.iter().filter(|(id, _)| *id != old) {
        wait_sample(&c, *id, CHANGES, |v| v > *changes).await;
        wait_sample(&c, *id, AGE, |v| v < 0.5).await;
    }
    // Healed, the old leader learns the new one: a change for it too.
    c.heal();
    let old_before = before.iter().find(|(id, _)| *id == old).map(|(_, v)| *v);
    wait_sample(&c, old, CHANGES, |v| Some(v) > old_before).await;
    wait_sample(&c, old, AGE, |v| v < 0.5).await;
    c.shutdown().await;
}

/// POSTs `body` to `path` on node `id`; the error status, if any.
async fn post(c: &TestCluster, id: NodeId, path: &str, body: &str) -> Option<u16> {
    c.http
        .post_bytes(
            &c.url(id, path),
            CONTENT_JSON,
            body.as_bytes().to_vec(),
            None,
            &[],
        )
        .await
        .err()
        .and_then(|e| e.status())
}

fn errors(route: &str, kind: &str) -> String {
    format!(r#"raft_rm_admission_errors_total{{route="{route}",kind="{kind}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_errors_are_counted_once_by_route_and_kind() {
    let c = TestCluster::start(3, Settings::default()).await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let acquire = "/v1/admission/acquire";
    assert_eq!(
        post(&c, follower, acquire, r#"{"query_id":"q"}"#).await,
        Some(400)
    );
    assert_eq!(post(&c, follower, acquire, "{").await, Some(400));
    assert_eq!(
        sample(&c, follower, &errors(acquire, "bad_request")).await,
        2.0
    );
    // A session renewal relayed to the leader, which answers 410: counted
    // where the client called, not again on the leader.
    let renew = "/v1/sessions/renew";
    assert_eq!(
        post(&c, follower, renew, r#"{"session":424242}"#).await,
        Some(410)
    );
    assert_eq!(
        sample(&c, follower, &errors(renew, "session_expired")).await,
        1.0
    );
    assert_eq!(
        sample(&c, leader, &errors(renew, "session_expired")).await,
        0.0
    );
    // An axum rejection (bad query string) is counted by its status.
    let bad_view = c
        .http
        .get_bytes(
            &c.url(leader, "/v1/resource-groups?max_staleness_ms=-1"),
            &[],
        )
        .await;
    assert_eq!(bad_view.err().and_then(|e| e.status()), Some(400));
    assert_eq!(
        sample(&c, leader, &errors("/v1/resource-groups", "bad_request")).await,
        1.0
    );
    // Successful answers are not errors.
    assert_eq!(
        post(&c, follower, "/v1/sessions", r#"{"coordinator":"c1"}"#).await,
        None
    );
    let text = scrape(&c, follower).await;
    assert!(!text.contains(r#"route="/v1/sessions","#), "{text}");
    c.shutdown().await;
}

const BUILT: &str = "raft_rm_snapshots_built_total";
const INSTALLED: &str = "raft_rm_snapshots_installed_total";
const BYTES: &str = "raft_rm_snapshot_bytes";

/// `POST /v1/admin/snapshot` builds a snapshot covering what was applied
/// when it was called and reports it as the metrics do; a new node whose
/// log the leader has purged installs that snapshot and reports its install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_on_demand_is_measured_where_built_and_where_installed() {
    let mut c = TestCluster::start(
        3,
        Settings {
            // No snapshot of its own accord during the test; purge all but
            // the last 5 entries after one.
            snapshot_every: 100_000,
            keep_logs_after_snapshot: 5,
            ..Default::default()
        },
    )
    .await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    for seq in 1..=30 {
        c.canary(leader, "a", seq).await.unwrap();
    }
    assert_eq!(sample(&c, leader, BUILT).await, 0.0);
    let applied = c.applied(leader).unwrap();
    let report = c.admin(leader, "/v1/admin/snapshot", json!({})).await;
    assert_eq!(report["node_id"], leader);
    assert!(
        report["applied_index"].as_u64().unwrap() >= applied,
        "{report}"
    );
    assert!(
        report["snapshot_index"].as_u64() >= report["applied_index"].as_u64(),
        "{report}"
    );
    let bytes = report["bytes"].as_f64().unwrap();
    assert!(
        bytes > 0.0 && report["build_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(sample(&c, leader, BUILT).await, 1.0);
    assert_eq!(sample(&c, leader, BYTES).await, bytes);
    assert!(sample(&c, leader, "raft_rm_snapshot_build_seconds").await > 0.0);
    // Any node builds its own when asked (not relayed to the leader).
    let follower = if leader == 1 { 2 } else { 1 };
    let theirs = c.admin(follower, "/v1/admin/snapshot", json!({})).await;
    assert_eq!(theirs["node_id"], follower);
    assert_eq!(sample(&c, follower, BUILT).await, 1.0);
    assert_eq!(
        post(&c, leader, "/v1/admin/snapshot", r#"{"timeout_ms":0}"#).await,
        Some(400)
    );
    assert_eq!(
        post(&c, leader, "/v1/admin/snapshot", r#"{"wait":1}"#).await,
        Some(400)
    );

    // openraft purges the log behind the snapshot lazily; a new node then
    // can only be caught up by the snapshot.
    let snapshot_index = report["snapshot_index"].as_u64().unwrap();
    let deadline = Instant::now() + T;
    while c.nodes[&leader]
        .raft
        .metrics()
        .borrow()
        .purged
        .map_or(0, |p| p.index)
        < 2
    {
        assert!(Instant::now() < deadline, "the leader never purged its log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = c.spawn_empty(4).await;
    c.admin(
        leader,
        "/v1/admin/add-learner",
        json!({"node_id": 4, "addr": addr}),
    )
    .await;
    // add-learner returns once the learner is within openraft's
    // replication_lag_threshold (5000 entries), here at once: wait for it.
    wait_sample(&c, 4, INSTALLED, |v| v >= 1.0).await;
    assert_eq!(sample(&c, 4, INSTALLED).await, 1.0);
    assert!(sample(&c, 4, "raft_rm_snapshot_install_seconds").await > 0.0);
    assert_eq!(sample(&c, 4, BUILT).await, 0.0);
    // The leader's snapshot at `snapshot_index`, byte for byte (it built no
    // other since).
    assert_eq!(sample(&c, 4, BYTES).await, bytes);
    let installed = c.nodes[&4].raft.metrics().borrow().snapshot;
    assert!(installed.map(|s| s.index) >= Some(snapshot_index));
    c.shutdown().await;
}

/// `hot` exports its series (one running, one queued at most), `plain`
/// does not.
fn jmx_groups_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("resource-groups.json");
    let text = json!({"rootGroups": [
        {"name": "hot", "hardConcurrencyLimit": 1, "maxQueued": 1, "jmxExport": true},
        {"name": "plain", "hardConcurrencyLimit": 5, "maxQueued": 5}]});
    std::fs::write(&path, text.to_string()).unwrap();
    path
}

/// POSTs `body` to `path` on node `id` and answers the JSON.
async fn post_json(c: &TestCluster, id: NodeId, path: &str, body: serde_json::Value) -> Value {
    c.http
        .post_json::<_, Value>(&c.url(id, path), &body)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Admissions (at once and from the queue) and rejections of a jmxExport
/// group are counted as entries are applied, so a follower exports the
/// same counts and gauges as the leader; a group without jmxExport
/// exports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmx_export_groups_are_exported_alike_by_the_leader_and_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let c = TestCluster::start(
        3,
        Settings {
            resource_groups: Some(jmx_groups_file(dir.path())),
            session_lease_ms: Some(60_000),
            ..Default::default()
        },
    )
    .await;
    let leader = c.wait_leader(&[1, 2, 3], T).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let deadline = Instant::now() + T;
    while c
        .http
        .get_json::<Value>(&c.url(leader, "/v1/admin/config"), 1)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "no configuration committed");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let session = post_json(&c, leader, "/v1/sessions", json!({"coordinator": "co"})).await
        ["session"]
        .as_u64()
        .unwrap();
    let acquire = |q: &str, group: &str| json!({"query_id": q, "group": group, "coordinator": "co", "session": session});
    let status = |v: &Value| v["status"].as_str().unwrap_or("").to_string();
    let path = "/v1/admission/acquire";
    let mut statuses = Vec::new();
    for (q, group) in [
        ("q1", "hot"),
        ("q1", "hot"),
        ("q2", "hot"),
        ("q3", "hot"),
        ("p1", "plain"),
    ] {
        // Through the follower too: it relays to the leader.
        let via = if q == "q2" { follower } else { leader };
        statuses.push(status(&post_json(&c, via, path, acquire(q, group)).await));
    }
    assert_eq!(
        statuses,
        ["admitted", "admitted", "queued", "rejected", "admitted"],
        "the second q1 is a retry"
    );
    // Releasing q1 promotes q2.
    post_json(
        &c,
        leader,
        "/v1/admission/release",
        json!({"query_id": "q1"}),
    )
    .await;

    let hot = r#"group="hot",mode="linearizable""#;
    for id in [leader, follower] {
        let admissions = format!("raft_rm_group_admissions_total{{{hot}}}");
        wait_sample(&c, id, &admissions, |v| v == 2.0).await;
        let rejected =
            format!(r#"raft_rm_group_rejections_total{{{hot},reason="QUERY_QUEUE_FULL"}}"#);
        assert_eq!(sample(&c, id, &rejected).await, 1.0, "node {id}");
        let gauge = |name: &str| format!("raft_rm_group_{name}{{{hot}}}");
        assert_eq!(sample(&c, id, &gauge("running_queries")).await, 1.0);
        assert_eq!(sample(&c, id, &gauge("queued_queries")).await, 0.0);
        assert_eq!(sample(&c, id, &gauge("hard_concurrency_limit")).await, 1.0);
        assert_eq!(sample(&c, id, &gauge("max_queued")).await, 1.0);
        let text = scrape(&c, id).await;
        assert!(!text.contains(r#"group="plain""#), "node {id}: {text}");
        assert!(
            !text.contains("raft_rm_group_soft_memory_limit_bytes{"),
            "no softMemoryLimit, no series: {text}"
        );
    }
    c.shutdown().await;
}

const EARLY: &str = "raft_rm_early_appends_total";

/// Early replication: the leader sends each new entry to its followers
/// while its own fsync runs (`raft_rm_early_appends_total` counts them);
/// every write still commits and every node applies the same log. With
/// `--early-replication false` nothing is sent early, and writes commit
/// the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_replication_sends_entries_during_the_leaders_fsync() {
    for early in [true, false] {
        let settings = Settings {
            extra: raft_rm::config::RawConfig {
                early_replication: Some(early),
                ..Default::default()
            },
            ..Settings::default()
        };
        let c = TestCluster::start(3, settings).await;
        let leader = c.wait_leader(&[1, 2, 3], T).await;
        let before = sample(&c, leader, EARLY).await;
        let mut last = 0;
        for seq in 1..=30 {
            last = c.canary(leader, "early", seq).await.unwrap().index;
        }
        c.wait_applied(&[1, 2, 3], last, T).await;
        let sent = sample(&c, leader, EARLY).await - before;
        if early {
            // One lone write at a time: each entry goes early to one
            // follower (a quorum's worth), unless the early request of
            // the one before is still on its way (at most one in flight).
            assert!(sent >= 20.0, "early appends for 30 lone writes: {sent}");
        } else {
            assert_eq!(sent, 0.0, "early replication is off");
        }
        for id in [1, 2, 3].into_iter().filter(|id| *id != leader) {
            assert_eq!(
                sample(&c, id, EARLY).await,
                0.0,
                "a follower sends nothing early"
            );
        }
        c.shutdown().await;
    }
}
