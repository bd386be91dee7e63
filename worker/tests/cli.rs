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
