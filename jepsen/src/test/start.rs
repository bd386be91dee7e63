//! The start phase: the run's resource groups, then the RMs (once they
//! have a leader and the configuration), then workers and coordinators
//! (once every coordinator answers), as the workload needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use common::http::HttpClient;
use tokio::sync::Mutex;

use super::check::limits_of;
use super::{Mode, TestSpec, OOM_WORKER_MEMORY_BYTES, QUEUE_TIMEOUT_MS};
use crate::cluster::{ClusterSpec, DataPlaneSpec, LocalCluster};
use crate::rm_client::RmClient;
use crate::workload::{self, Workload};

/// The run's resource groups, as written to `resource-groups.json` in the
/// run directory.
pub(super) struct Groups {
    pub file: PathBuf,
    /// Group id -> hard concurrency limit.
    pub limits: BTreeMap<String, u64>,
}

/// Writes the workload's resource groups into `dir`.
pub(super) fn resource_groups(spec: &TestSpec, dir: &Path) -> Result<Groups> {
    let text = match spec.workload {
        Workload::Semaphore => {
            if spec.mode != Mode::Linearizable {
                bail!("the semaphore workload runs against the RMs directly: linearizable only");
            }
            workload::semaphore_groups_json()
        }
        Workload::Queries => workload::query_groups_json(&spec.mode.consistency()),
        Workload::Queue => workload::queue_groups_json(&spec.mode.consistency()),
        Workload::Oom => workload::oom_groups_json(&spec.mode.consistency()),
        Workload::Limits => workload::limits_groups_json(&spec.mode.consistency()),
        Workload::Sql => workload::sql_groups_json(&spec.mode.consistency()),
    };
    let file = dir.join("resource-groups.json");
    std::fs::write(&file, &text)?;
    Ok(Groups {
        file,
        limits: limits_of(&text)?,
    })
}

/// The cluster a run runs on, and how the harness reaches it.
pub(super) struct Started {
    pub cluster: Arc<Mutex<LocalCluster>>,
    pub rm: RmClient,
    pub rms: Vec<String>,
    pub coordinators: Vec<String>,
    pub workers: Vec<String>,
    /// The cluster's internal HTTP client (its shared secret).
    pub internal: HttpClient,
}

/// Starts the cluster in `dir` on `net` (namespaces) or loopback, with
/// libfaketime preloaded when clock faults run.
pub(super) async fn start(
    spec: &TestSpec,
    dir: &Path,
    groups: &Groups,
    net: Option<Arc<crate::netns::Network>>,
    faketime: Option<PathBuf>,
) -> Result<Started> {
    // Storage faults want snapshots and purges often, not every 5000
    // entries: a short run must build, send and install many.
    let mut node_args: Vec<String> = Vec::new();
    if spec.schedule.faults.iter().any(|f| {
        matches!(
            f,
            crate::nemesis::Fault::Snapshot | crate::nemesis::Fault::CrashAt
        )
    }) {
        node_args.extend(
            ["--snapshot-every", "50", "--keep-logs-after-snapshot", "20"].map(String::from),
        );
    }
    let mut cluster = LocalCluster::start(ClusterSpec {
        net,
        faketime,
        env: spec
            .planted
            .iter()
            .map(|bug| ("FAILPOINTS".to_string(), format!("{bug}=return")))
            .collect(),
        nodes: spec.nodes,
        tls: spec.tls,
        base_port: 0,
        dir: dir.to_path_buf(),
        bin_dir: spec.bin_dir.clone(),
        node_args: vec![
            "--resource-groups".into(),
            groups.file.display().to_string(),
            "--session-lease-ms".into(),
            spec.session_lease_ms.to_string(),
            // Queued queries of a dead coordinator wait to be adopted; in a
            // test nobody adopts them, so they must time out (with a
            // reason) before the run ends.
            "--queue-timeout-ms".into(),
            QUEUE_TIMEOUT_MS.to_string(),
            // Upstream's default is minutes; a test has seconds.
            "--low-memory-killer-delay".into(),
            "1s".into(),
        ]
        .into_iter()
        .chain(node_args)
        .collect(),
    })?;
    let rms = cluster.addr_list();
    let rm_http = cluster.internal_http(Duration::from_secs(2))?;
    let rm = RmClient::new(rm_http);
    if cluster
        .client
        .wait_leader(&rms, Duration::from_secs(20))
        .await
        .is_none()
    {
        bail!("no leader within 20 s");
    }
    if !cluster
        .client
        .wait_config(&rms[0], Duration::from_secs(20))
        .await
    {
        bail!("the resource-group configuration was not applied within 20 s");
    }
    if spec.workload != Workload::Semaphore {
        cluster.start_data_plane(&DataPlaneSpec {
            workers: 2,
            coordinators: 2,
            // The oom workload's queries take 250 or 500 bytes.
            worker_memory_bytes: match spec.workload {
                Workload::Oom => OOM_WORKER_MEMORY_BYTES,
                // Real query processes hold hundreds of MB each.
                Workload::Sql => 4 << 30,
                _ => 1 << 30,
            },
            resource_groups: groups.file.clone(),
            worker_base_port: 0,
            coordinator_base_port: 0,
            worker_args: vec!["--heartbeat-ms".into(), "200".into()],
        })?;
        for m in cluster.members.iter().filter(|m| m.binary == "coordinator") {
            crate::trino::wait_ready(&m.addr, Duration::from_secs(30)).await?;
        }
    }
    let members = |binary: &str| -> Vec<String> {
        cluster
            .members
            .iter()
            .filter(|m| m.binary == binary)
            .map(|m| m.addr.clone())
            .collect()
    };
    let (coordinators, workers) = (members("coordinator"), members("worker"));
    let internal = cluster.internal_http(Duration::from_secs(5))?;
    Ok(Started {
        cluster: Arc::new(Mutex::new(cluster)),
        rm,
        rms,
        coordinators,
        workers,
        internal,
    })
}
