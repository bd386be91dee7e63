//! Real `raft-rm` processes: the SIGKILL crash test and the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raft_rm::http::canary::CanaryView;
use raft_rm::http::health::{ClusterView, Health};

use rm_testkit::{client, secret_file, Writer};

const BIN: &str = env!("CARGO_BIN_EXE_raft-rm");

pub(crate) fn free_port() -> u16 {
    common::net::unused_loopback_port().unwrap()
}

pub(crate) struct Proc {
    pub(crate) child: Child,
}

impl Proc {
    pub(crate) fn start(dir: &Path, id: u64, peers: &BTreeMap<u64, String>) -> Proc {
        Self::start_with(dir, id, peers, &[])
    }

    fn start_with(dir: &Path, id: u64, peers: &BTreeMap<u64, String>, extra: &[&str]) -> Proc {
        Self::start_env(dir, id, peers, extra, &[])
    }

    pub(crate) fn start_env(
        dir: &Path,
        id: u64,
        peers: &BTreeMap<u64, String>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let peers_text = peers
            .iter()
            .map(|(i, a)| format!("{i}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("node{id}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args(["--id", &id.to_string(), "--listen", &peers[&id]])
            .arg("--data-dir")
            .arg(dir.join(format!("n{id}")))
            .args(["--peers", &peers_text])
            .arg("--shared-secret-file")
            .arg(secret_file(dir))
            .args(["--snapshot-every", "50", "--keep-logs-after-snapshot", "20"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc { child }
    }

    pub(crate) fn sigkill(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// On a failing test, prints the end of every node's log before the temp
/// dir goes, so a CI failure can be diagnosed from its output alone.
pub(crate) struct LogsOnPanic<'a>(pub(crate) &'a Path);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Keep the data for `raft-rm inspect` when asked to.
        if let Ok(keep) = std::env::var("RAFT_RM_TEST_KEEP") {
            let dest = PathBuf::from(keep);
            let _ = std::process::Command::new("cp")
                .arg("-r")
                .arg(self.0)
                .arg(&dest)
                .status();
            eprintln!("---- data dirs copied to {}", dest.display());
        }
        for id in 1..=3 {
            let path = self.0.join(format!("node{id}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- last lines of {}", path.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

async fn health(addr: &str) -> Option<Health> {
    client()
        .get_json(&format!("http://{addr}/v1/health"), 1)
        .await
        .ok()
}

pub(crate) async fn wait_leader(addrs: &[&String], timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        for a in addrs {
            if let Some(h) = health(a).await {
                if h.role == common::api::Role::Leader {
                    return h.node_id;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader among {addrs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A linearizable read of the canaries, retried until it succeeds. After a
/// full restart the node that led before the crash resumes as leader, and
/// the others may elect a new one over it: its reads then answer 503 until
/// the clients find the new leader, as they would in production.
pub(crate) async fn linearizable_canaries(
    peers: &BTreeMap<u64, String>,
    timeout: Duration,
) -> CanaryView {
    let addrs: Vec<&String> = peers.values().collect();
    let deadline = Instant::now() + timeout;
    loop {
        let leader = wait_leader(&addrs, timeout).await;
        let url = format!("http://{}/v1/canary", peers[&leader]);
        match client().get_json::<CanaryView>(&url, 3).await {
            Ok(view) => return view,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no linearizable read within {timeout:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three processes, writers running throughout; SIGKILL the leader, then
/// all three; restart. Every acknowledged write is there, none is applied
/// twice, and the replicas converge to identical state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leader_then_everyone_loses_no_acknowledged_write() {
    common::telemetry::init();
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let all: Vec<&String> = peers.values().collect();
    let mut procs: BTreeMap<u64, Proc> = (1..=3)
        .map(|i| (i, Proc::start(dir.path(), i, &peers)))
        .collect();
    let leader = wait_leader(&all, Duration::from_secs(15)).await;

    let targets: Vec<String> = peers.values().cloned().collect();
    let writers: Vec<Writer> = (0..4)
        .map(|k| Writer::start(&format!("crash-{k}"), client(), targets.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    procs.get_mut(&leader).unwrap().sigkill();
    let rest: Vec<&String> = peers
        .iter()
        .filter(|(i, _)| **i != leader)
        .map(|(_, a)| a)
        .collect();
    let new_leader = wait_leader(&rest, Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    procs.insert(leader, Proc::start(dir.path(), leader, &peers));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Everyone dies at once, with writes in flight.
    for p in procs.values_mut() {
        p.sigkill();
    }
    let mut outcomes = Vec::new();
    for w in writers {
        let name = w.name.clone();
        outcomes.push((name, w.finish().await));
    }
    let procs: BTreeMap<u64, Proc> = (1..=3)
        .map(|i| (i, Proc::start(dir.path(), i, &peers)))
        .collect();
    assert_nothing_lost_and_converged(&peers, &outcomes).await;
    drop(procs);
}

/// After a crash and restart: every acknowledged canary write is applied,
/// none twice or beyond what was attempted, and the replicas converge to
/// identical canaries and identical state digests.
pub(crate) async fn assert_nothing_lost_and_converged(
    peers: &BTreeMap<u64, String>,
    outcomes: &[(String, (u64, u64))],
) {
    let all: Vec<&String> = peers.values().collect();
    let view = linearizable_canaries(peers, Duration::from_secs(15)).await;
    let mut total = 0;
    for (name, (acked, attempted)) in outcomes {
        let got = view.canaries.get(name).cloned().unwrap_or_default();
        assert!(*acked > 0, "{name} never got an acknowledgement");
        assert!(
            got.last_seq >= *acked,
            "{name}: acknowledged {acked} but only {} survived",
            got.last_seq
        );
        assert!(
            got.last_seq <= *attempted,
            "{name}: {} applied but only {attempted} attempted",
            got.last_seq
        );
        assert_eq!(
            got.count, got.last_seq,
            "{name}: a seq was applied twice or skipped"
        );
        total += acked;
    }
    eprintln!(
        "crash test: {total} acknowledged writes across {} clients survived",
        outcomes.len()
    );

    // Convergence: identical canaries everywhere, and identical state
    // digests whenever two replicas report the same applied index.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut views = Vec::new();
        for a in &all {
            let v: CanaryView = client()
                .get_json(&format!("http://{a}/v1/canary?read=local"), 3)
                .await
                .unwrap();
            let c: ClusterView = client()
                .get_json(&format!("http://{a}/v1/cluster"), 3)
                .await
                .unwrap();
            views.push((v.canaries, c.last_applied, c.state_digest));
        }
        let same_canaries = views
            .iter()
            .all(|v| v.0 == views[0].0 && v.0 == view.canaries);
        let same_digest = views.iter().all(|v| v.1 == views[0].1 && v.2 == views[0].2);
        if same_canaries && same_digest {
            break;
        }
        for pair in views.windows(2) {
            if pair[0].1 == pair[1].1 {
                assert_eq!(pair[0].2, pair[1].2, "replicas at the same index differ");
            }
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {views:?}; linearizable read after restart: {:?}",
            view.canaries
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn run_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_flags_and_config_give_one_line_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "id = \"one\"\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--bogus"], "unexpected argument '--bogus'"),
        (vec!["--id", "x"], "invalid value 'x' for '--id"),
        (
            vec!["--id", "1", "--data-dir", d, "--peers", "1=127.0.0.1:1"],
            "listen is required",
        ),
        (
            vec![
                "--id",
                "1",
                "--listen",
                "0.0.0.0:7001",
                "--data-dir",
                d,
                "--peers",
                "1=127.0.0.1:1",
            ],
            "shared-secret-file: required when listening on a non-loopback address",
        ),
        (
            vec![
                "--id",
                "1",
                "--listen",
                "127.0.0.1:7001",
                "--data-dir",
                d,
                "--peers",
                "2=127.0.0.1:1",
            ],
            "peers: must include this node (id 1)",
        ),
        (vec!["--config", bad_toml.to_str().unwrap()], "config file"),
        (
            vec!["--config", "/nonexistent/rm.toml"],
            "config file /nonexistent/rm.toml",
        ),
    ];
    for (args, want) in cases {
        let (code, stderr) = run_cli(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: more than one line: {stderr}"
        );
        assert!(
            stderr.starts_with("raft-rm: ") && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
    let (code, out) = (
        Command::new(BIN)
            .arg("--help")
            .output()
            .unwrap()
            .status
            .code(),
        (),
    );
    assert_eq!((code, out), (Some(0), ()));
}

#[test]
fn a_data_dir_of_another_node_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    {
        let metrics = std::sync::Arc::new(raft_rm::metrics::Metrics::new());
        drop(raft_rm::store::open(&data, 1, metrics).unwrap());
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let peers = format!("2={listen}");
    let (code, stderr) = run_cli(&[
        "--id",
        "2",
        "--listen",
        &listen,
        "--data-dir",
        data.to_str().unwrap(),
        "--peers",
        &peers,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("belongs to node 1, not node 2"), "{stderr}");
}

/// `--join`: an empty data dir with the lowest id and no answering peer
/// would found a cluster; with `--join` it waits to be added instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_never_initializes_even_as_the_lowest_id() {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let peers: BTreeMap<u64, String> = (1..=2)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let initialized_within = |addr: String, wait: Duration| async move {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if health(&addr).await.is_some_and(|h| h.initialized) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    // Node 2 never starts, so nobody tells node 1 a cluster exists.
    let joining = Proc::start_with(dir.path(), 1, &peers, &["--join"]);
    assert!(!initialized_within(peers[&1].clone(), Duration::from_secs(3)).await);
    drop(joining);
    // The same node without --join founds a cluster: the check above can fail.
    std::fs::remove_dir_all(dir.path().join("n1")).unwrap();
    let _founding = Proc::start(dir.path(), 1, &peers);
    assert!(initialized_within(peers[&1].clone(), Duration::from_secs(10)).await);
}
