//! `jepsen cluster` as an operator (or a script) runs it: stopped by
//! SIGTERM as by Ctrl-C, it stops every process it started.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Processes whose command line mentions `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(&needle) && !text.contains("jepsen cluster") {
            out.push(text);
        }
    }
    out
}

#[test]
fn sigterm_stops_the_cluster_and_every_process_it_started() {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let mut child = Command::new(bin.join("jepsen"))
        .args([
            "cluster",
            "--base-port",
            "0",
            "--exit-after",
            "60",
            "--workers",
            "1",
            "--coordinators",
            "1",
        ])
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--dir")
        .arg(&cluster_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let up = lines
        .by_ref()
        .any(|l| l.is_ok_and(|l| l.starts_with("Trino clients")));
    assert!(up, "the cluster never printed its status");
    // Keep reading: it says when it stops.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    assert!(
        processes_under(&cluster_dir).len() >= 5,
        "3 RMs, a worker and a coordinator run"
    );
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let said = rest.join().unwrap();
    assert!(said.iter().any(|l| l == "stopping the cluster"), "{said:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_under(&cluster_dir);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running after SIGTERM: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
