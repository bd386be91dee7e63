//! `jepsen bench etcd`: linearizable admission on `raft-rm` against what a
//! user would build on etcd, same machine, same run, alternating.
//!
//! - [`EtcdCluster`]: starts Debian's `etcd` (3 members on loopback, data
//!   in the run directory, default fsync durability) and kills and wipes
//!   it on drop, like [`LocalCluster`].
//! - Two etcd recipes, both what a user might build:
//!   - `etcd-cas`, [`acquire`] / [`release`]: a counter per group; acquire
//!     reads it and, below the limit, commits `count + 1` plus a slot key
//!     under the client's lease in one transaction that compares the
//!     counter's mod revision; release deletes the slot and decrements the
//!     same way. A lost compare is a conflict: the transaction's else
//!     branch reads the counter again, and the client retries. Under
//!     contention most compares are lost: this is the weak recipe;
//!   - `etcd-ranked` ([`super::etcd_ranked`]): a counting semaphore ranked
//!     by creation revision, as etcd's own `concurrency.Mutex` orders its
//!     waiters: no compare to lose, the strong recipe.
//! - [`compare`]: the loads ([`loads`]), each run on the three systems per
//!   round; [`ratios`] (ours against the stronger etcd recipe per load)
//!   and [`targets`] over the rows.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchClient,
};
use serde::Serialize;

use super::admission::run_admission;
use super::{
    closed_loop, sweep, timed_cycle, Level, HOT_GROUP, LIMIT, QUEUE_GROUP, QUEUE_LIMIT,
    QUEUE_MAX_QUEUED,
};
use crate::cluster::{ClusterSpec, LocalCluster};
use crate::stats::{summarize, Summary};

/// What to say when there is no `etcd` to run.
const INSTALL_HINT: &str =
    "etcd not found on PATH: install Debian's etcd-server (apt-get install -y etcd-server)";

/// A local etcd cluster of real `etcd` processes on loopback. Member `eN`
/// logs to `<dir>/eN.log` and keeps its data in `<dir>/eN`.
pub struct EtcdCluster {
    dir: PathBuf,
    procs: Vec<Child>,
    /// Client URLs, member by member.
    pub endpoints: Vec<String>,
}

/// The `etcd` binary on PATH, if any.
fn etcd_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("etcd"))
        .find(|p| p.is_file())
}

impl EtcdCluster {
    /// Starts `members` etcd members on free loopback ports under `dir`.
    /// Fails at once, with how to install it, when there is no `etcd`.
    pub fn start(dir: &Path, members: usize) -> Result<EtcdCluster> {
        let bin = etcd_binary().context(INSTALL_HINT)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = || common::net::unused_loopback_port().context("cannot pick a loopback port");
        let mut urls = Vec::new();
        for _ in 0..members {
            let (client, peer) = (port()?, port()?);
            urls.push((
                format!("http://127.0.0.1:{client}"),
                format!("http://127.0.0.1:{peer}"),
            ));
        }
        let initial: Vec<String> = (1..=members)
            .zip(&urls)
            .map(|(i, (_, peer))| format!("e{i}={peer}"))
            .collect();
        let token = format!("bench-{:016x}", rand::random::<u64>());
        let mut cluster = EtcdCluster {
            dir: dir.to_path_buf(),
            procs: Vec::new(),
            endpoints: urls.iter().map(|(c, _)| c.clone()).collect(),
        };
        for (i, (client, peer)) in (1..=members).zip(&urls) {
            let log_path = dir.join(format!("e{i}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let child = Command::new(&bin)
                .arg(format!("--name=e{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.join(format!("e{i}")).display()
                ))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg("--initial-cluster-state=new")
                .arg(format!("--initial-cluster-token={token}"))
                .args(["--logger=zap", "--log-outputs=stderr"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.procs.push(child);
        }
        Ok(cluster)
    }

    /// Waits until every member names the same leader; answers the
    /// leader's client URL.
    pub async fn wait_leader(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            for (i, child) in self.procs.iter_mut().enumerate() {
                if let Some(status) = child.try_wait()? {
                    let log = self.dir.join(format!("e{}.log", i + 1));
                    bail!(
                        "etcd member e{} exited ({status}): see {}",
                        i + 1,
                        log.display()
                    );
                }
            }
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd has no leader after {timeout:?}: see {}/e*.log",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader's client URL, once every member agrees on it.
    async fn leader(&self) -> Option<String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(1));
        let (mut leaders, mut ids) = (Vec::new(), Vec::new());
        for endpoint in &self.endpoints {
            let mut c = Client::connect([endpoint], Some(options.clone()))
                .await
                .ok()?;
            let status = c.status().await.ok()?;
            leaders.push(status.leader());
            ids.push(status.header()?.member_id());
        }
        let leader = *leaders.first()?;
        if leader == 0 || leaders.iter().any(|l| *l != leader) {
            return None;
        }
        let at = ids.iter().position(|id| *id == leader)?;
        Some(self.endpoints[at].clone())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The logs stay; the data (a preallocated WAL per member) goes.
        for i in 1..=self.procs.len() {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("e{i}")));
        }
    }
}

/// The counter key of `group`.
fn counter_key(group: &str) -> String {
    format!("/count/{group}")
}

/// The slot key of query `query_id` in `group`.
fn slot_key(group: &str, query_id: &str) -> String {
    format!("/slots/{group}/{query_id}")
}

/// A counter's value and mod revision as a range read found it (an
/// absent key: 0 at revision 0, which a compare on mod revision matches).
fn counter_of(kvs: &[etcd_client::KeyValue]) -> Result<(i64, i64)> {
    match kvs.first() {
        None => Ok((0, 0)),
        Some(kv) => {
            let count = kv.value_str()?.parse().context("counter value")?;
            Ok((count, kv.mod_revision()))
        }
    }
}

/// Gives up after this many lost compares in a row (a live-lock guard:
/// someone wins every round, so a real run never gets close).
const MAX_ATTEMPTS: usize = 10_000;

/// What an acquire or release did.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Committed after `conflicts` lost compares.
    Done { conflicts: usize },
    /// Acquire only: the group was at its limit.
    Full { conflicts: usize },
}

/// Changes `group`'s counter by `delta` together with `slot_op`, in one
/// transaction that compares the counter's mod revision; a lost compare
/// reads the counter again (the else branch) and retries. An acquire
/// (`delta` > 0) stops at `limit`.
async fn change_counter(
    kv: &mut KvClient,
    group: &str,
    delta: i64,
    limit: i64,
    slot_op: impl Fn() -> TxnOp,
) -> Result<Change> {
    let key = counter_key(group);
    let (mut count, mut revision) = counter_of(kv.get(key.as_str(), None).await?.kvs())?;
    for conflicts in 0..MAX_ATTEMPTS {
        if delta > 0 && count + delta > limit {
            return Ok(Change::Full { conflicts });
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([
                TxnOp::put(key.as_str(), (count + delta).to_string(), None),
                slot_op(),
            ])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = kv.txn(txn).await?;
        if response.succeeded() {
            return Ok(Change::Done { conflicts });
        }
        match response.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => (count, revision) = counter_of(get.kvs())?,
            other => bail!("unexpected else-branch response {other:?}"),
        }
    }
    bail!("{MAX_ATTEMPTS} lost compares in a row on {key}")
}

/// Takes a slot of `group` (at most `limit`) for `query_id`, its slot key
/// held by `lease`.
pub async fn acquire(
    kv: &mut KvClient,
    group: &str,
    query_id: &str,
    limit: i64,
    lease: i64,
) -> Result<Change> {
    let slot = slot_key(group, query_id);
    change_counter(kv, group, 1, limit, || {
        TxnOp::put(slot.as_str(), "", Some(PutOptions::new().with_lease(lease)))
    })
    .await
}

/// Gives back `query_id`'s slot of `group`.
pub async fn release(kv: &mut KvClient, group: &str, query_id: &str) -> Result<Change> {
    let slot = slot_key(group, query_id);
    change_counter(kv, group, -1, 0, || TxnOp::delete(slot.as_str(), None)).await
}

/// One bench client: its own connection and its own lease, kept alive
/// until dropped.
struct EtcdClient {
    kv: KvClient,
    watch: WatchClient,
    lease: i64,
    keep_alive: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdClient {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

/// The lease every bench client holds its slots under.
const LEASE_TTL_SECS: i64 = 10;

impl EtcdClient {
    async fn connect(endpoint: &str) -> Result<EtcdClient> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        let mut client = Client::connect([endpoint], Some(options)).await?;
        let lease = client.lease_grant(LEASE_TTL_SECS, None).await?.id();
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
        let keep_alive = tokio::spawn(async move {
            let every = Duration::from_secs(LEASE_TTL_SECS as u64) / 3;
            while keeper.keep_alive().await.is_ok() && matches!(stream.message().await, Ok(Some(_)))
            {
                tokio::time::sleep(every).await;
            }
        });
        Ok(EtcdClient {
            kv: client.kv_client(),
            watch: client.watch_client(),
            lease,
            keep_alive,
        })
    }
}

/// One system's figures for one load in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub load: String,
    /// `raft-rm`, `etcd-cas` or `etcd-ranked`.
    pub system: String,
    pub round: usize,
    pub clients: usize,
    pub groups: usize,
    pub seconds: f64,
    pub admissions: usize,
    pub admissions_per_sec: f64,
    pub acquire_latency: Option<Summary>,
    pub release_latency: Option<Summary>,
    /// Lost compares, acquire and release (`etcd-cas` only).
    pub conflicts: usize,
    pub errors: usize,
}

/// The load's clients, closed-loop, against etcd's `leader`, client `k`
/// in `groups[k % groups.len()]`: acquire a fresh query id (within the
/// load's limit), release it. The counter recipe has no queue: at the
/// limit, an acquire is refused, unless the load queues, when it asks
/// again every [`FULL_RETRY`] (polling, the counter recipe's only way to
/// wait).
pub async fn run_etcd_admission(
    leader: &str,
    load: &Load,
    duration: Duration,
    tag: &str,
) -> Result<(crate::bench::Loop, usize)> {
    let (clients, groups) = (load.clients, &load.groups);
    let (limit, wait_full) = (load.limit, load.max_queued > 0);
    let mut held = Vec::new();
    for _ in 0..clients {
        held.push(EtcdClient::connect(leader).await?);
    }
    let sessions: Arc<Vec<(KvClient, i64)>> =
        Arc::new(held.iter().map(|s| (s.kv.clone(), s.lease)).collect());
    let conflicts = Arc::new(AtomicUsize::new(0));
    let (groups, tag) = (Arc::new(groups.to_vec()), tag.to_string());
    let counted = conflicts.clone();
    let run = closed_loop(clients, duration, move |k, n| {
        let (mut kv, lease) = sessions[k].clone();
        let group = groups[k % groups.len()].clone();
        let (q, conflicts) = (format!("e{tag}-{k}-{n}"), counted.clone());
        let mut kv_release = kv.clone();
        async move {
            let count = |c: usize| {
                conflicts.fetch_add(c, Ordering::Relaxed);
            };
            let acquiring = async {
                let give_up = Instant::now() + Duration::from_secs(30);
                loop {
                    match acquire(&mut kv, &group, &q, limit, lease).await {
                        Ok(Change::Done { conflicts: c }) => {
                            count(c);
                            break true;
                        }
                        Ok(Change::Full { conflicts: c }) => {
                            count(c);
                            if !wait_full || Instant::now() > give_up {
                                break false;
                            }
                            tokio::time::sleep(FULL_RETRY).await;
                        }
                        Err(_) => break false,
                    }
                }
            };
            let releasing = async {
                match release(&mut kv_release, &group, &q).await {
                    Ok(Change::Done { conflicts: c } | Change::Full { conflicts: c }) => {
                        count(c);
                        true
                    }
                    Err(_) => false,
                }
            };
            timed_cycle(acquiring, releasing).await
        }
    })
    .await?;
    // Their keep-alives stop, so the leases (and any slot a failed
    // release left) expire.
    drop(held);
    Ok((run, conflicts.load(Ordering::Relaxed)))
}

/// How often a counter-recipe client at the limit asks again.
pub const FULL_RETRY: Duration = Duration::from_millis(2);

/// The load's clients, closed-loop, against etcd's `leader` with the
/// ranked recipe, client `k` in `groups[k % groups.len()]`, each with one
/// key per group under its lease: acquire (waiting in the queue if ranked
/// past the load's limit), release.
pub async fn run_etcd_ranked_admission(
    leader: &str,
    load: &Load,
    duration: Duration,
    tag: &str,
) -> Result<crate::bench::Loop> {
    let (clients, groups) = (load.clients, &load.groups);
    let (limit, max_queued) = (load.limit, load.max_queued);
    use super::etcd_ranked::{self, Acquired};
    let mut held = Vec::new();
    for _ in 0..clients {
        held.push(EtcdClient::connect(leader).await?);
    }
    let sessions: Arc<Vec<(KvClient, WatchClient, i64)>> = Arc::new(
        held.iter()
            .map(|s| (s.kv.clone(), s.watch.clone(), s.lease))
            .collect(),
    );
    let (groups, tag) = (Arc::new(groups.to_vec()), tag.to_string());
    let run = closed_loop(clients, duration, move |k, n| {
        let (mut kv, mut watch, lease) = sessions[k].clone();
        let group = groups[k % groups.len()].clone();
        let q = format!("r{tag}-{k}-{n}");
        let mut kv_release = kv.clone();
        async move {
            let acquiring = async {
                matches!(
                    etcd_ranked::acquire(&mut kv, &mut watch, &group, lease, &q, limit, max_queued)
                        .await,
                    Ok(Acquired::Admitted { .. })
                )
            };
            let releasing = async {
                etcd_ranked::release(&mut kv_release, &group, lease)
                    .await
                    .is_ok()
            };
            timed_cycle(acquiring, releasing).await
        }
    })
    .await?;
    drop(held);
    Ok(run)
}

/// A load: how many clients, spread over how many groups, each group with
/// `limit` slots and `max_queued` queue places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Load {
    pub name: &'static str,
    pub clients: usize,
    pub groups: Vec<String>,
    pub limit: i64,
    pub max_queued: i64,
}

/// One hot group (limit [`LIMIT`]) with `clients` clients; `clients`
/// clients over [`crate::bench::SPREAD_GROUPS`] groups; one client; and
/// `clients` clients queueing for a group of [`QUEUE_LIMIT`] slots (so
/// queueing and promotion are measured too).
pub fn loads(clients: usize) -> Vec<Load> {
    let hot = vec![HOT_GROUP.to_string()];
    let wide = |name, clients, groups| Load {
        name,
        clients,
        groups,
        limit: LIMIT as i64,
        max_queued: 0,
    };
    vec![
        wide("hot", clients, hot.clone()),
        wide("100-groups", clients, crate::bench::spread_groups()),
        wide("1-client", 1, hot),
        Load {
            name: "queue-8",
            clients,
            groups: vec![QUEUE_GROUP.to_string()],
            limit: QUEUE_LIMIT as i64,
            max_queued: QUEUE_MAX_QUEUED as i64,
        },
    ]
}

/// Runs every load on both systems, `rounds` times: per round and load,
/// `raft-rm` first, then etcd; prints each row as it is measured.
pub async fn compare(
    ours: &LocalCluster,
    etcd_leader: &str,
    clients: usize,
    duration: Duration,
    rounds: usize,
) -> Result<Vec<Row>> {
    let levels = (1..=rounds).flat_map(|round| {
        loads(clients)
            .into_iter()
            .flat_map(move |load| System::ALL.map(|s| (round, load.clone(), s)))
    });
    sweep(levels, |(round, load, system)| async move {
        let tag = format!("{}-r{round}", load.name);
        let row = |seconds, admissions, acquire_latency, release_latency, conflicts, errors| Row {
            load: load.name.into(),
            system: system.name().into(),
            round,
            clients: load.clients,
            groups: load.groups.len(),
            seconds,
            admissions,
            admissions_per_sec: admissions as f64 / seconds,
            acquire_latency,
            release_latency,
            conflicts,
            errors,
        };
        Ok(match system {
            System::RaftRm => {
                let queued = load.max_queued > 0;
                let r = run_admission(
                    ours,
                    load.clients,
                    duration,
                    &tag,
                    &load.groups,
                    queued,
                    true,
                )
                .await?;
                row(
                    r.seconds,
                    r.acquires,
                    r.acquire_latency,
                    r.release_latency,
                    0,
                    r.errors,
                )
            }
            etcd => {
                let (r, conflicts) = match etcd {
                    System::EtcdCas => {
                        run_etcd_admission(etcd_leader, &load, duration, &tag).await?
                    }
                    _ => (
                        run_etcd_ranked_admission(etcd_leader, &load, duration, &tag).await?,
                        0,
                    ),
                };
                row(
                    r.seconds,
                    r.first.len(),
                    summarize(&r.first),
                    summarize(&r.second),
                    conflicts,
                    r.errors,
                )
            }
        })
    })
    .await
}

/// The systems a row measures: ours and the two etcd recipes.
#[derive(Debug, Clone, Copy)]
enum System {
    RaftRm,
    EtcdCas,
    EtcdRanked,
}

impl System {
    const ALL: [System; 3] = [System::RaftRm, System::EtcdCas, System::EtcdRanked];

    fn name(self) -> &'static str {
        match self {
            System::RaftRm => "raft-rm",
            System::EtcdCas => "etcd-cas",
            System::EtcdRanked => "etcd-ranked",
        }
    }
}

/// The etcd recipes, by row name.
const ETCD_SYSTEMS: [&str; 2] = ["etcd-cas", "etcd-ranked"];

impl Level for Row {
    fn line(&self) -> Option<String> {
        Some(table_line(self))
    }
}

/// `jepsen bench etcd`: both clusters on loopback (as many etcd members as
/// RMs), the rows, the summary, the ratios against their targets.
pub async fn command(
    template: &ClusterSpec,
    clients: usize,
    seconds: u64,
    rounds: usize,
) -> Result<()> {
    let groups = super::bench_groups();
    let b = super::start_cluster(template, "bench-etcd", Some(&groups), &[])?;
    let mut etcd = EtcdCluster::start(&b.dir.join("etcd"), template.nodes as usize)?;
    let leader = etcd.wait_leader(Duration::from_secs(30)).await?;
    println!("{TABLE_HEADER}");
    let rows = compare(
        &b.cluster,
        &leader,
        clients,
        Duration::from_secs(seconds),
        rounds,
    )
    .await?;
    println!("\n{}", summary(&rows));
    let ratios = ratios(&rows);
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "etcd", "nodes": template.nodes,
            "limit": LIMIT, "rows": rows, "ratios": ratios,
            "targets": targets(&ratios)}),
    )
}

/// The table's header, matching [`table_line`].
pub const TABLE_HEADER: &str =
    "load        system      round clients  adm/s    p50 ms   p99 ms   max ms  conflicts errors";

/// One row of the table.
pub fn table_line(r: &Row) -> String {
    let ms = |f: fn(&Summary) -> f64| r.acquire_latency.as_ref().map_or(0.0, f);
    format!(
        "{:<11} {:<11} {:>5} {:>7} {:>6.0} {:>9.2} {:>8.2} {:>8.2} {:>10} {:>6}",
        r.load,
        r.system,
        r.round,
        r.clients,
        r.admissions_per_sec,
        ms(|s| s.p50_ms),
        ms(|s| s.p99_ms),
        ms(|s| s.max_ms),
        r.conflicts,
        r.errors,
    )
}

/// Ours against the stronger etcd recipe for one load, over all rounds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ratio {
    pub load: String,
    /// The etcd recipe with the higher mean admissions/s on this load.
    pub against: String,
    /// Mean admissions/s over the rounds, ours / theirs.
    pub admissions_per_sec: f64,
    /// The worst round's acquire p50, ours / theirs (lower is better).
    pub acquire_p50: f64,
    /// The worst round's acquire p99, ours / theirs (lower is better).
    pub acquire_p99: f64,
}

/// Per load (in table order): mean admissions/s and worst acquire p50 and
/// p99, ours over the stronger etcd recipe's (the one with more
/// admissions/s on that load).
pub fn ratios(rows: &[Row]) -> Vec<Ratio> {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.load.as_str()) {
            names.push(&r.load);
        }
    }
    // (mean admissions/s, worst p50, worst p99), if the system ran it.
    let of = |load: &str, system: &str| -> Option<(f64, f64, f64)> {
        let runs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.load == load && r.system == system)
            .collect();
        if runs.is_empty() {
            return None;
        }
        let rate = runs.iter().map(|r| r.admissions_per_sec).sum::<f64>() / runs.len() as f64;
        let worst = |f: fn(&Summary) -> f64| {
            runs.iter()
                .filter_map(|r| r.acquire_latency.as_ref().map(f))
                .fold(0.0, f64::max)
        };
        Some((rate, worst(|s| s.p50_ms), worst(|s| s.p99_ms)))
    };
    names
        .into_iter()
        .filter_map(|load| {
            let ours = of(load, "raft-rm")?;
            let (against, theirs) = ETCD_SYSTEMS
                .iter()
                .filter_map(|s| of(load, s).map(|f| (*s, f)))
                .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))?;
            Some(Ratio {
                load: load.to_string(),
                against: against.to_string(),
                admissions_per_sec: ours.0 / theirs.0,
                acquire_p50: ours.1 / theirs.1,
                acquire_p99: ours.2 / theirs.2,
            })
        })
        .collect()
}

/// The targets, each with whether this run met it, against the stronger
/// etcd recipe: the hot group and 100 groups at least 4x its admissions/s
/// with a p99 no worse; one client at least 1.3x with a p50 no worse; the
/// queueing load at least 3x.
pub fn targets(ratios: &[Ratio]) -> Vec<(String, bool)> {
    let of = |load: &str| ratios.iter().find(|r| r.load == load);
    let mut out = Vec::new();
    for load in ["hot", "100-groups"] {
        if let Some(r) = of(load) {
            let met = r.admissions_per_sec >= 4.0 && r.acquire_p99 <= 1.0;
            out.push((format!("{load}: >= 4x admissions/s, p99 no worse"), met));
        }
    }
    if let Some(r) = of("1-client") {
        let met = r.admissions_per_sec >= 1.3 && r.acquire_p50 <= 1.0;
        out.push((
            "1-client: >= 1.3x admissions/s, p50 no worse".to_string(),
            met,
        ));
    }
    if let Some(r) = of("queue-8") {
        let met = r.admissions_per_sec >= 3.0;
        out.push(("queue-8: >= 3x admissions/s".to_string(), met));
    }
    out
}

/// What follows the rows: the ratios per load, then the targets.
pub fn summary(rows: &[Row]) -> String {
    let ratios = ratios(rows);
    let mut out = vec![
        "ours / the stronger etcd recipe: admissions/s (mean over rounds), acquire p50 and p99 (worst round)"
            .to_string(),
    ];
    for r in &ratios {
        out.push(format!(
            "{:<11} {:>6.2}x admissions/s  {:>6.2}x p50  {:>6.2}x p99  (against {})",
            r.load, r.admissions_per_sec, r.acquire_p50, r.acquire_p99, r.against
        ));
    }
    for (target, met) in targets(&ratios) {
        let verdict = if met { "met" } else { "NOT met" };
        out.push(format!("target {target}: {verdict}"));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(load: &str, system: &str, rate: f64, p99: f64) -> Row {
        Row {
            load: load.into(),
            system: system.into(),
            round: 1,
            clients: 64,
            groups: 1,
            seconds: 1.0,
            admissions: rate as usize,
            admissions_per_sec: rate,
            acquire_latency: Some(Summary {
                count: rate as usize,
                p50_ms: p99 / 2.0,
                p99_ms: p99,
                max_ms: p99 * 2.0,
                mean_ms: p99 / 2.0,
            }),
            release_latency: None,
            conflicts: 0,
            errors: 0,
        }
    }

    #[test]
    fn ratios_are_against_the_stronger_etcd_recipe_per_load() {
        let rows = [
            row("hot", "raft-rm", 300.0, 4.0),
            row("hot", "etcd-cas", 50.0, 80.0),
            row("hot", "etcd-ranked", 100.0, 8.0),
            row("hot", "raft-rm", 500.0, 6.0),
            row("hot", "etcd-cas", 50.0, 80.0),
            row("hot", "etcd-ranked", 100.0, 4.0),
            row("1-client", "raft-rm", 50.0, 2.0),
            row("1-client", "etcd-cas", 100.0, 1.0),
            row("1-client", "etcd-ranked", 80.0, 1.5),
        ];
        let r = ratios(&rows);
        assert_eq!(
            r,
            vec![
                Ratio {
                    load: "hot".into(),
                    against: "etcd-ranked".into(),
                    admissions_per_sec: 4.0,
                    acquire_p50: 0.75,
                    acquire_p99: 0.75
                },
                Ratio {
                    load: "1-client".into(),
                    against: "etcd-cas".into(),
                    admissions_per_sec: 0.5,
                    acquire_p50: 2.0,
                    acquire_p99: 2.0
                },
            ]
        );
        let summary = summary(&rows);
        assert!(
            summary.contains(
                "hot           4.00x admissions/s    0.75x p50    0.75x p99  (against etcd-ranked)"
            ),
            "{summary}"
        );
        assert!(summary.contains("target hot: >= 4x admissions/s, p99 no worse: met"));
        assert!(summary.contains("target 1-client: >= 1.3x admissions/s, p50 no worse: NOT met"));
        let queue = [
            row("queue-8", "raft-rm", 900.0, 100.0),
            row("queue-8", "etcd-ranked", 300.0, 150.0),
        ];
        assert_eq!(
            targets(&ratios(&queue)),
            vec![("queue-8: >= 3x admissions/s".to_string(), true)]
        );
        let mut slow = rows[..6].to_vec();
        slow[0].acquire_latency.as_mut().unwrap().p99_ms = 9.0;
        assert!(!targets(&ratios(&slow))[0].1, "p99 worse than etcd's");
    }

    #[test]
    fn loads_cover_a_hot_group_a_hundred_groups_and_one_client() {
        let l = loads(64);
        let shape: Vec<(&str, usize, usize)> = l
            .iter()
            .map(|l| (l.name, l.clients, l.groups.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("hot", 64, 1),
                ("100-groups", 64, 100),
                ("1-client", 1, 1),
                ("queue-8", 64, 1)
            ]
        );
        assert_eq!((l[3].limit, l[3].max_queued), (8, 1000));
    }

    #[test]
    fn an_absent_counter_is_zero_at_revision_zero() {
        assert_eq!(counter_of(&[]).unwrap(), (0, 0));
        assert_eq!(counter_key("hot"), "/count/hot");
        assert_eq!(slot_key("hot", "q1"), "/slots/hot/q1");
    }
}
