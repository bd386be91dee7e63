//! The web UI's data, read from the coordinator that does not run the
//! queries: its pages must agree with the RMs' JSON, and a query page must
//! come from the owner through an RM (or from the ledger once the owner
//! is dead). The browser test (`scripts/ui_browser_test.py`) checks that
//! the pages show these figures.

use std::time::{Duration, Instant};

use common::api::{
    ClusterPage, GroupsPage, Health, LedgerStatus, Mode, QueriesPage, QueryPage, QueryState,
    RowOrigin,
};
use common::http::HttpClient;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::kit::stack::{group_view, Stack, StackOptions};
use crate::kit::trino::TrinoClient;

const T: Duration = Duration::from_secs(15);

async fn page<T: DeserializeOwned>(coordinator: &str, path: &str) -> T {
    HttpClient::new(None, Duration::from_secs(10))
        .get_json(&format!("http://{coordinator}/ui/api/{path}"), 1)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Polls `f` until it answers `Some`, for at most [`T`].
async fn eventually<R, F, Fut>(what: &str, mut f: F) -> R
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<R, String>>,
{
    let deadline = Instant::now() + T;
    loop {
        match f().await {
            Ok(r) => return r,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Submits a simulated query of `ms` and polls it until it is `state`.
async fn start(
    client: &TrinoClient,
    coordinator: &str,
    user: &str,
    ms: u64,
    state: &str,
) -> String {
    let ms = ms.to_string();
    let sim = [
        ("simulate_duration_ms", ms.as_str()),
        ("simulate_memory_bytes", "100"),
    ];
    let mut r: Value = client
        .submit(coordinator, Some(user), "SELECT big", &sim)
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + T;
    while r["stats"]["state"] != state {
        assert!(Instant::now() < deadline, "{id} never {state}: {r}");
        r = client.poll(r["nextUri"].as_str().unwrap()).await.unwrap();
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_coordinators_pages_agree_with_the_rms_and_proxy_the_owners_queries() {
    let mut s = Stack::start(StackOptions::default()).await;
    let c1 = s.coordinators[0].addr.to_string();
    let c2 = s.coordinators[1].addr.to_string();
    let client = TrinoClient::default();
    // On c1: two linearizable queries fill `g` (limit 2), a third queues;
    // one eventual query runs in `ev`.
    let lin = start(&client, &c1, "alice", 6000, "RUNNING").await;
    let _lin2 = start(&client, &c1, "bob", 6000, "RUNNING").await;
    let queued = start(&client, &c1, "alice", 100, "QUEUED").await;
    let ev = start(&client, &c1, "eve", 6000, "RUNNING").await;

    // The groups page of c2 shows what the RMs' view shows.
    let g = group_view(&s, "g").await;
    assert_eq!(
        (g["running"].as_u64(), g["queued"].as_u64()),
        (Some(2), Some(1))
    );
    let groups: GroupsPage = eventually("c2's groups page", || async {
        let p: GroupsPage = page(&c2, "groups").await;
        let row = |id: &str| p.groups.iter().find(|r| r.id == id).cloned();
        match (row("g"), row("ev")) {
            (Some(g), Some(ev)) if (g.running, g.queued, ev.running) == (2, 1, 1) => Ok(p),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(groups.coordinator, "c2");
    let g = groups.groups.iter().find(|r| r.id == "g").unwrap();
    assert_eq!(
        (g.mode, g.hard_concurrency_limit, g.max_queued),
        (Mode::Linearizable, 2, 2)
    );
    assert_eq!(g.state, "CAN_QUEUE");
    assert!(
        g.admitted_last_minute >= 2,
        "c1's decisions are counted on c2's page: {g:?}"
    );
    let ev_row = groups.groups.iter().find(|r| r.id == "ev").unwrap();
    assert_eq!(
        (ev_row.mode, ev_row.max_staleness_ms),
        (Mode::Eventual, Some(10_000))
    );
    assert!(ev_row.decision_view.is_some(), "{ev_row:?}");
    assert!(groups.decisions_missing.is_empty(), "{groups:?}");

    // A query of c1, asked of c2: c1's own account, relayed by an RM.
    let p: QueryPage = page(&c2, &format!("query/{lin}")).await;
    assert_eq!(p.owner.as_deref(), Some("c1"));
    let via = p.proxied_via.clone().expect("proxied through an RM");
    assert!(s.rms.addrs.values().any(|a| *a == via), "{via}");
    let d = p.detail.expect("the owner's account");
    assert_eq!(
        (
            d.summary.state,
            d.summary.coordinator.as_str(),
            d.sql.as_str()
        ),
        (QueryState::Running, "c1", "SELECT big")
    );
    assert!(d.fencing_token.is_some(), "linearizable: fenced");
    assert_eq!(
        d.timeline
            .iter()
            .map(|t| t.step.as_str())
            .collect::<Vec<_>>(),
        ["queued", "admitted"]
    );
    assert!(d.summary.worker.is_some());
    let ledger = p.ledger.expect("in the ledger");
    assert_eq!(
        (ledger.status, ledger.fencing_token),
        (LedgerStatus::Running, d.fencing_token)
    );
    let p: QueryPage = page(&c2, &format!("query/{ev}")).await;
    let d = p.detail.expect("the owner's account");
    assert_eq!(
        (d.summary.mode, d.fencing_token),
        (Some(Mode::Eventual), None)
    );
    assert!(p.ledger.is_none(), "eventual queries are not in the ledger");

    // The queries page of c2 lists c1's queries, as c1 tells them.
    let list: QueriesPage = page(&c2, "queries").await;
    for id in [&lin, &queued, &ev] {
        let row = list
            .queries
            .iter()
            .find(|q| q.summary.query_id == *id)
            .unwrap_or_else(|| panic!("{id} listed: {list:?}"));
        assert_eq!(
            (row.origin, row.summary.coordinator.as_str()),
            (RowOrigin::Coordinator, "c1")
        );
    }

    // The cluster page: the leader every RM names, both workers, both
    // coordinators with c1's queries.
    let cluster: ClusterPage = page(&c2, "cluster").await;
    let h: Health = s
        .rms
        .http
        .get_json(&s.rms.url(1, "/v1/health"), 3)
        .await
        .unwrap();
    assert_eq!(cluster.leader_id, h.leader_id);
    assert_eq!(cluster.replicas.len(), 3);
    assert!(
        cluster.replicas.iter().all(|r| r.health.is_some()),
        "{cluster:?}"
    );
    assert_eq!(cluster.workers.len(), 2);
    assert!(cluster.banners.is_empty(), "{:?}", cluster.banners);
    let c1_row = cluster
        .coordinators
        .iter()
        .find(|c| c.view.name == "c1")
        .expect("c1 listed");
    assert_eq!(
        (c1_row.queued, c1_row.running),
        (Some(1), Some(3)),
        "{c1_row:?}"
    );
    assert_eq!(
        (c1_row.view.ledger_queued, c1_row.view.ledger_running),
        (1, 2)
    );
    assert!(cluster
        .coordinators
        .iter()
        .any(|c| c.view.name == "c2" && c.this));

    // The internal list is for the RMs' relay only.
    let bare = HttpClient::new(None, Duration::from_secs(5))
        .get_bytes(&format!("http://{c1}/ui/api/local/queries"), &[])
        .await;
    assert_eq!(bare.err().and_then(|e| e.status()), Some(401));

    // c1 dies: its queued query's page on c2 is what the ledger holds.
    let dead = s.coordinators.remove(0);
    dead.shutdown().await;
    let p: QueryPage = page(&c2, &format!("query/{queued}")).await;
    assert!(p.detail.is_none());
    assert!(p.owner_error.is_some(), "{p:?}");
    let ledger = p.ledger.expect("the RMs still hold it");
    assert_eq!(
        (
            ledger.status,
            ledger.coordinator.as_str(),
            ledger.sql.as_deref()
        ),
        (LedgerStatus::Queued, "c1", Some("SELECT big"))
    );
    let list: QueriesPage = page(&c2, "queries").await;
    let row = list
        .queries
        .iter()
        .find(|q| q.summary.query_id == queued)
        .expect("listed from the ledger");
    assert_eq!(row.origin, RowOrigin::Ledger);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_served_from_every_coordinator() {
    let s = Stack::start(StackOptions::default()).await;
    let http = HttpClient::new(None, Duration::from_secs(5));
    for c in &s.coordinators {
        let html = http
            .get_bytes(&format!("http://{}/ui/", c.addr), &[])
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&html).contains("app.js"));
        let js = http
            .get_bytes(&format!("http://{}/ui/app.js", c.addr), &[])
            .await
            .unwrap();
        assert!(!js.is_empty());
    }
    let missing = http
        .get_bytes(
            &format!("http://{}/ui/api/query/1_1_nobody", s.coordinators[0].addr),
            &[],
        )
        .await;
    assert_eq!(missing.err().and_then(|e| e.status()), Some(404));
    s.shutdown().await;
}
