//! The `worker` binary's command line: one line and exit status 2 for
//! anything wrong, before it touches the network.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_worker");

#[test]
fn bad_flags_give_one_line_and_exit_status_2() {
    let base = [
        "--id",
        "w1",
        "--listen",
        "127.0.0.1:0",
        "--rm",
        "127.0.0.1:7001",
        "--memory-bytes",
        "1000",
    ];
    let with = |replace: &[(&str, &str)], extra: &[&str]| {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        for (flag, value) in replace {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1] = value.to_string();
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--bogus".into()], "unexpected argument '--bogus'"),
        (
            with(&[("--memory-bytes", "0")], &[]),
            "memory-bytes: must be positive",
        ),
        (
            with(&[("--memory-bytes", "lots")], &[]),
            "invalid value 'lots'",
        ),
        (
            with(&[("--rm", "nohost")], &[]),
            "rm: 'nohost' is not HOST:PORT",
        ),
        (
            with(&[("--listen", "0.0.0.0:0")], &[]),
            "shared-secret-file: required",
        ),
        (with(&[("--id", "")], &[]), "id: must be 1 to 256"),
        (
            with(&[], &["--shared-secret-file", "/nonexistent"]),
            "shared-secret-file: cannot read",
        ),
        (
            with(&[], &["--fencing-bound-ms", "100"]),
            "fencing-bound-ms: 100 ms is below 250 ms",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("worker: ") && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
}

/// SIGTERM (what a service manager sends) stops the worker gracefully:
/// exit status 0, not death by the signal.
#[test]
fn sigterm_stops_the_worker_with_status_0() {
    use std::time::{Duration, Instant};
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut child = Command::new(BIN)
        .args(["--id", "w1", "--listen", "127.0.0.1:0", "--rm", &closed])
        .args(["--memory-bytes", "1000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Past start-up: the signal handler is installed once it serves.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the worker exited early"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}
