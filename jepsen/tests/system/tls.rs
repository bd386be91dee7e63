//! TLS between real processes (`LocalCluster` with `tls`: a throw-away
//! CA, mutual TLS): an RM takes Raft RPCs only from `raft-rm`
//! certificates, and certificates are reloaded under load without a
//! leader change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::http::HttpClient;
use jepsen::cluster::{ClusterSpec, LocalCluster, Target};

/// Where cargo put the binaries beside this test (`target/<profile>/`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn start(dir: &Path) -> LocalCluster {
    LocalCluster::start(ClusterSpec {
        nodes: 3,
        base_port: 0,
        dir: dir.to_path_buf(),
        bin_dir: bin_dir(),
        node_args: Vec::new(),
        net: None,
        faketime: None,
        env: Vec::new(),
        tls: true,
    })
    .unwrap()
}

/// A client presenting `name`'s certificate in `role` (none: no client
/// certificate), trusting the cluster's CA.
fn client_as(c: &LocalCluster, name: &str, role: Option<&str>) -> HttpClient {
    let issued = c.tls_issue(name, role.unwrap_or("admin")).unwrap();
    let config = match role {
        Some(_) => {
            common::tls::Tls::load(
                &issued.cert,
                &issued.key,
                &issued.ca,
                common::tls::ClientAuth::Off,
            )
            .unwrap()
            .client
        }
        None => std::sync::Arc::new(
            common::tls::client_config(&common::tls::read_roots(&issued.ca).unwrap(), None)
                .unwrap(),
        ),
    };
    let secret = common::auth::SharedSecret::from_file(&c.dir().join("secret")).unwrap();
    HttpClient::new(Some(secret), Duration::from_secs(5)).with_tls(Some(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_rpcs_are_taken_only_from_raft_rm_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let addrs = c.addr_list();
    c.client
        .wait_leader(&addrs, Duration::from_secs(20))
        .await
        .expect("a leader over TLS");
    let vote = c.client.http().url(&addrs[0], "/raft/vote");
    let post = |http: HttpClient| {
        let vote = vote.clone();
        async move {
            http.post_bytes(&vote, common::http::CONTENT_BINCODE, vec![0], None, &[])
                .await
        }
    };
    for (name, role) in [("w9", "worker"), ("c9", "coordinator"), ("ops", "admin")] {
        let refused = post(client_as(&c, name, Some(role))).await.unwrap_err();
        assert_eq!(refused.status(), Some(403), "{role}: {refused}");
        assert!(
            refused
                .to_string()
                .contains("takes only raft-rm certificates"),
            "{refused}"
        );
    }
    // Without a client certificate the handshake itself fails.
    let anonymous = post(client_as(&c, "anon", None)).await.unwrap_err();
    assert_eq!(anonymous.status(), None, "{anonymous}");
    // A raft-rm certificate gets through the role check to the RPC itself
    // (whose body, one byte, is then refused as a bad message).
    let rm = post(client_as(&c, "n9", Some("raft-rm")))
        .await
        .unwrap_err();
    assert_ne!(rm.status(), Some(403), "{rm}");
    // The rest of the API stays open to any certificate of the CA.
    let health = client_as(&c, "w9", Some("worker"))
        .get_bytes(&c.client.http().url(&addrs[0], "/v1/health"), &[])
        .await;
    assert!(health.is_ok(), "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_under_load_without_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let addrs = c.addr_list();
    let leader = c
        .client
        .wait_leader(&addrs, Duration::from_secs(20))
        .await
        .expect("a leader over TLS");
    let term = c.client.health(&addrs[0]).await.unwrap().term;
    // Durable writes from four clients, through every RM, until told.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..4 {
        let (client, addrs, stop) = (c.client.clone(), addrs.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut seq = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seq += 1;
                let addr = &addrs[seq as usize % addrs.len()];
                match client.canary(addr, &format!("load{w}"), seq).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // New pairs for every RM: half taken on SIGHUP, half when noticed.
    for id in 1..=3u64 {
        c.reissue_rm(id).unwrap();
        if id % 2 == 1 {
            let pid = c.pid(&Target::Rm(id)).unwrap();
            // SAFETY: kill(2) on a child process this test started.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        }
    }
    let reloaded = |id: u64| {
        std::fs::read_to_string(dir.path().join(format!("node{id}.log")))
            .unwrap_or_default()
            .contains("TLS certificate reloaded")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(1..=3).all(reloaded) {
        assert!(
            Instant::now() < deadline,
            "not every RM reloaded its certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for l in load {
        let (ok, failed) = l.await.unwrap();
        assert!(
            failed.is_empty(),
            "writes failed across the reload: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 20, "the load ran: {total} writes");
    // New connections take the new certificates, and the leader stayed.
    for addr in &addrs {
        let h = c.client.health(addr).await.unwrap();
        assert_eq!((h.leader_id, h.term), (Some(leader), term), "{addr}");
    }
    let fresh = client_as(&c, "fresh", Some("admin"));
    assert!(fresh
        .get_bytes(&c.client.http().url(&addrs[1], "/v1/health"), &[])
        .await
        .is_ok());
}
