//! The `coordinator` binary's command line: one line and exit status 2.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_coordinator");

/// Runs the binary; a run that has not exited within 10 s (it started
/// serving instead of refusing) is killed and reported.
fn run(args: &[String]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "still running after 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_flags_and_files_give_one_line_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.json");
    std::fs::write(
        &ok,
        r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1}]}"#,
    )
    .unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":-1,"maxQueued":1}]}"#,
    )
    .unwrap();
    let (ok, bad) = (ok.to_str().unwrap(), bad.to_str().unwrap());
    let base = |groups: &str, extra: &[&str]| -> Vec<String> {
        [
            "--id",
            "c1",
            "--listen",
            "127.0.0.1:0",
            "--rm",
            "127.0.0.1:7001",
            "--resource-groups",
            groups,
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let mut no_rm = base(ok, &[]);
    no_rm.splice(4..6, []);
    let mut bad_id = base(ok, &[]);
    bad_id[1] = "bad id!".into();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--bogus".into()], "unexpected argument '--bogus'"),
        (
            base("/nonexistent.json", &[]),
            "resource-groups: cannot read /nonexistent.json",
        ),
        (
            base(bad, &[]),
            "rootGroups[0].hardConcurrencyLimit: must be >= 0",
        ),
        (
            base(ok, &["--freshness-gate", "1.5"]),
            "freshness-gate: must be in (0, 1]",
        ),
        (
            base(ok, &["--refresh-ms", "0"]),
            "refresh-ms: must be positive",
        ),
        (no_rm, "rm: at least one resource manager is required"),
        (bad_id, "id: must be 1 to 64"),
    ];
    for (args, want) in cases {
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("coordinator: ") && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
}

/// SIGTERM (what a service manager sends) stops the coordinator
/// gracefully: exit status 0, not death by the signal.
#[test]
fn sigterm_stops_the_coordinator_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("groups.json");
    std::fs::write(
        &groups,
        r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1}]}"#,
    )
    .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let child = Command::new(BIN)
        .args(["--id", "c1", "--listen", "127.0.0.1:0", "--rm", &closed])
        .arg("--resource-groups")
        .arg(&groups)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Past start-up: the signal handler is installed once it serves.
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
}
