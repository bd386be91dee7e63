//! `jepsen cluster`: a local cluster (RMs, workers, coordinators) in the
//! foreground, its status printed whenever the leader changes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use super::ClusterArgs;
use crate::cluster::{DataPlaneSpec, LocalCluster};

#[derive(clap::Args, Debug)]
pub struct ClusterCmdArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// First port; node N listens on BASE+N-1.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Where node data and logs go; wiped first unless --keep.
    #[arg(long, default_value = "store/cluster")]
    dir: PathBuf,
    /// Keep the data of an earlier run (restart the same cluster).
    #[arg(long)]
    keep: bool,
    /// Stop by itself after this many seconds (for scripts and CI).
    #[arg(long)]
    exit_after: Option<u64>,
    /// Trino resource-groups.json for the RMs and coordinators [default:
    /// a linearizable `global` group with a `${USER}` subgroup, and an
    /// eventual `dashboards` group for sources `dashboard...`].
    #[arg(long)]
    resource_groups: Option<PathBuf>,
    /// Workers to start (ports 8101...).
    #[arg(long, default_value_t = 2)]
    workers: u64,
    /// Coordinators to start (ports 8080...): point Trino clients here.
    #[arg(long, default_value_t = 2)]
    coordinators: u64,
    /// Memory pool of each worker, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    worker_memory_bytes: u64,
    /// A flag for every raft-rm, as one argument each (repeat it), e.g.
    /// `--rm-arg=--low-memory-killer-delay=10s`.
    #[arg(long, allow_hyphen_values = true)]
    rm_arg: Vec<String>,
}

pub async fn run(args: ClusterCmdArgs) -> Result<()> {
    let ClusterCmdArgs {
        cluster,
        base_port,
        dir,
        keep,
        exit_after,
        resource_groups,
        workers,
        coordinators,
        worker_memory_bytes,
        rm_arg,
    } = args;
    if !keep && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
    }
    let mut s = cluster.spec(dir.clone(), base_port);
    let groups = match resource_groups {
        // Absolute, because each node runs from its own directory.
        Some(file) => std::fs::canonicalize(&file)
            .with_context(|| format!("resource groups file {}", file.display()))?,
        None => {
            std::fs::create_dir_all(&dir)?;
            let file = std::fs::canonicalize(&dir)?.join("resource-groups.json");
            std::fs::write(&file, DEFAULT_GROUPS)?;
            file
        }
    };
    s.node_args = vec!["--resource-groups".into(), groups.display().to_string()];
    s.node_args.extend(rm_arg);
    let mut c = LocalCluster::start(s)?;
    let offset = |p: u16| if base_port == 0 { 0 } else { p };
    c.start_data_plane(&DataPlaneSpec {
        workers,
        coordinators,
        worker_memory_bytes,
        resource_groups: groups,
        worker_base_port: offset(8101),
        coordinator_base_port: offset(8080),
        worker_args: Vec::new(),
    })?;
    run_cluster(&mut c, exit_after).await
}

/// Prints the cluster's status once it has a leader, then again whenever
/// the leader or membership changes; stops on Ctrl-C, SIGTERM or
/// `exit_after`.
async fn run_cluster(c: &mut LocalCluster, exit_after: Option<u64>) -> Result<()> {
    let addrs = c.addr_list();
    let Some(_) = c.client.wait_leader(&addrs, Duration::from_secs(20)).await else {
        c.stop_all();
        anyhow::bail!(
            "no leader within 20 s; see the node logs in {}",
            c.dir().display()
        );
    };
    let deadline = exit_after.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut last_leader = None;
    // Ctrl-C or SIGTERM (a script's or a service manager's stop): either
    // stops every process this cluster started. Registered now, before the
    // status that tells a script the cluster is up.
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        let leader = c.client.agreed_leader(&addrs).await;
        if leader.is_some() && leader != last_leader {
            // Give followers a moment to apply the leader's first entries.
            tokio::time::sleep(Duration::from_millis(500)).await;
            print_status(c).await;
            last_leader = leader;
        }
        for (name, status) in c.exited() {
            eprintln!(
                "{name} exited ({status}); see {}/{name}.log",
                c.dir().display()
            );
        }
        let stop = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = stop => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    println!("stopping the cluster");
    c.stop_all();
    Ok(())
}

async fn print_status(c: &LocalCluster) {
    println!(
        "\nraft-rm cluster: {} nodes, data and logs in {}",
        c.addrs.len(),
        c.dir().display()
    );
    println!(
        "{:<4} {:<18} {:<10} {:>5} {:>12} {:>13}",
        "id", "address", "role", "term", "last_applied", "staleness_ms"
    );
    for (id, addr) in &c.addrs {
        match c.client.health(addr).await {
            Ok(h) => println!(
                "{:<4} {:<18} {:<10} {:>5} {:>12} {:>13}",
                id,
                addr,
                h.role,
                h.term,
                h.last_applied.map_or("-".into(), |v| v.to_string()),
                h.staleness_ms.map_or("-".into(), |v| v.to_string())
            ),
            Err(e) => println!("{id:<4} {addr:<18} unreachable: {e}"),
        }
    }
    for m in &c.members {
        println!(
            "{:<4} {:<18} {}",
            m.name,
            m.addr,
            if m.name.starts_with('c') {
                "coordinator"
            } else {
                "worker"
            }
        );
    }
    println!(
        "try: curl -s {}://{}/v1/cluster{} | python3 -m json.tool   (secret for admin calls: {}/secret)",
        if c.tls_login().is_some() { "https" } else { "http" },
        c.addrs.values().next().map(String::as_str).unwrap_or("127.0.0.1:7001"),
        c.tls_login()
            .map(|(ca, _, _)| format!(" --cacert {0} --cert {1}/harness.pem --key {1}/harness-key.pem", ca.display(), ca.parent().map(|d| d.display().to_string()).unwrap_or_default()))
            .unwrap_or_default(),
        c.dir().display()
    );
    let coordinators: Vec<&str> = c
        .members
        .iter()
        .filter(|m| m.name.starts_with('c'))
        .map(|m| m.addr.as_str())
        .collect();
    let scheme = if c.tls_login().is_some() {
        "https"
    } else {
        "http"
    };
    if !coordinators.is_empty() {
        println!(
            "Web UI (every coordinator serves it): {}",
            coordinators
                .iter()
                .map(|a| format!("{scheme}://{a}/ui/"))
                .collect::<Vec<_>>()
                .join("  ")
        );
    }
    let Some(coordinator) = coordinators.first() else {
        return;
    };
    let host = coordinator.split(':').next().unwrap_or("127.0.0.1");
    let port = coordinator.rsplit(':').next().unwrap_or("8080");
    match c.tls_login() {
        None => println!(
            "Trino clients: http://{coordinator}  e.g.  python3 -c \"import trino; c=trino.dbapi.connect(host='{host}', port={port}, user='me').cursor(); c.execute('SELECT * FROM tpch.tiny.nation'); print(c.fetchall()[:3])\""
        ),
        Some((ca, user, password)) => {
            println!(
                "TLS: every process over HTTPS with mutual TLS, CA {}; coordinators take passwords (user {user}, password {password})",
                ca.display()
            );
            println!(
                "Trino clients: https://{coordinator}  e.g.  python3 -c \"import trino; c=trino.dbapi.connect(host='{host}', port={port}, user='{user}', http_scheme='https', auth=trino.auth.BasicAuthentication('{user}', '{password}'), verify='{}').cursor(); c.execute('SELECT * FROM tpch.tiny.nation'); print(c.fetchall()[:3])\"",
                ca.display()
            );
            let overriding: Vec<&str> = ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"]
                .into_iter()
                .filter(|v| std::env::var_os(v).is_some())
                .collect();
            if !overriding.is_empty() {
                println!(
                    "note: {} is set here, and the requests library prefers it to verify=: unset it for that client",
                    overriding.join(" and ")
                );
            }
        }
    }
}

/// The resource groups `jepsen cluster` runs with unless told otherwise:
/// linearizable, a global limit and a per-user one; and, to see the two
/// modes side by side, an eventual group for clients whose source starts
/// with `dashboard` (a 1 s staleness bound).
const DEFAULT_GROUPS: &str = r#"{
  "rootGroups": [
    {"name": "global", "hardConcurrencyLimit": 8, "maxQueued": 100,
     "subGroups": [{"name": "${USER}", "hardConcurrencyLimit": 2, "maxQueued": 20}]},
    {"name": "dashboards", "hardConcurrencyLimit": 20, "maxQueued": 100,
     "consistency": {"mode": "eventual", "maxStalenessMs": 1000}}
  ],
  "selectors": [{"source": "dashboard.*", "group": "dashboards"}, {"group": "global.${USER}"}]
}"#;
