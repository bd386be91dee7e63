//! `jepsen bench heartbeats`: one RM ingesting worker heartbeats.
//!
//! Simulated workers (distinct node ids, memory pools of 32 to 128 GiB with
//! a few queries each, as a busy worker reports them) announce themselves
//! and send `POST /v1/heartbeat/worker` to one RM, the leader of a local
//! cluster (the leader also runs the memory killer, which reads the same
//! state), over a fixed set of keep-alive connections. Per worker count:
//!
//! - `max`: closed loop, every connection sending as fast as the RM acks;
//! - `offered`: open loop at a total rate, each worker heartbeating every
//!   `workers / rate` seconds; latency counts from the intended send time,
//!   so a generator or RM that falls behind shows it.
//!
//! Each phase reports heartbeats acked per second, latency, errors, and
//! CPU from `/proc/<pid>/stat` over the phase, in cores: the RM's and this
//! generator's own (both share the machine's cores). After the phases the
//! RM must hold every simulated worker in its memory view and discovery.
//!
//! Requests are encoded once per worker and reused, and each connection
//! writes them as they are and reads only the answer's status and length
//! ([`Conn`]). Through the project's HTTP client (reqwest, optimised even
//! in debug builds) this generator spent about 100 µs of CPU per request
//! (1.3 cores for 13,000/s) and could not offer 20,000/s on the 2-core
//! machine it shares with the RM; this way it spends about 20 µs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::auth::SharedSecret;
use common::cpu::CpuMeter;
use common::wire::{Announcement, MemoryPool, WorkerHeartbeat};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::bench::{closed_loop, Outcome};
use crate::cluster::{ClusterSpec, LocalCluster, Target};
use crate::stats::{summarize, Summary};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct HeartbeatSpec {
    /// Simulated worker counts, one after the other.
    pub workers: Vec<usize>,
    /// The open-loop phase's total heartbeats per second.
    pub rate: f64,
    /// Keep-alive connections to the RM.
    pub connections: usize,
    /// Seconds per phase.
    pub duration: Duration,
}

/// One measured phase.
#[derive(Debug, Serialize)]
pub struct Phase {
    pub workers: usize,
    /// `max` (closed loop) or `offered` (open loop at `offered_per_sec`).
    pub phase: String,
    pub offered_per_sec: Option<f64>,
    pub connections: usize,
    pub seconds: f64,
    pub acked: usize,
    pub errors: usize,
    pub acked_per_sec: f64,
    /// Open loop: from the intended send time; closed loop: from the send.
    pub latency: Option<Summary>,
    /// The RM's utime + stime over the phase, in cores.
    pub rm_cores: f64,
    /// This load generator's, in cores (it shares the machine).
    pub generator_cores: f64,
    /// The RM's CPU time per acked heartbeat, in µs.
    pub rm_cpu_us_per_heartbeat: Option<f64>,
}

/// What the RM holds after the phases of one worker count.
#[derive(Debug, Serialize)]
pub struct Held {
    pub workers: usize,
    /// `workers` of `GET /v1/memory` (live heartbeats).
    pub memory_workers: u64,
    /// Workers in `GET /v1/discovery/nodes?role=worker`.
    pub discovered: usize,
    /// Memory kills the RM decided (none expected: see [`heartbeat`]).
    pub kills: usize,
}

impl Held {
    pub fn ok(&self) -> bool {
        self.memory_workers == self.workers as u64
            && self.discovered == self.workers
            && self.kills == 0
    }
}

/// How long a simulated worker's heartbeat stays valid: longer than any
/// phase's gap, so the check after the phases sees every worker (the real
/// worker sends three of its intervals; the TTL costs the RM nothing per
/// heartbeat).
const HEARTBEAT_TTL_MS: u64 = 30_000;

/// Announcements live this long (the RM's maximum); every phase is
/// preceded by an unmeasured round that renews them.
const ANNOUNCEMENT_TTL_MS: u64 = 60_000;

/// Pre-encoded requests of the simulated workers.
struct Requests {
    announcements: Arc<Vec<Vec<u8>>>,
    heartbeats: Arc<Vec<Vec<u8>>>,
}

/// A worker's heartbeat: a pool of 32, 64 or 128 GiB, 0 to 4 running
/// queries holding 16 to 256 MiB each, some CPU. The queries come from a
/// pool of `workers / 10` (each runs on about 20 workers), so none comes
/// near the RMs' default `query.max-memory` (20 GiB): a kill would never
/// settle here (nothing stops the simulated queries) and every answer
/// would carry it. Seeded, so every run sends the same.
fn heartbeat(i: usize, workers: usize, rng: &mut impl Rng) -> WorkerHeartbeat {
    const MIB: u64 = 1 << 20;
    let total_bytes = [32, 64, 128][i % 3] * 1024 * MIB;
    let mut queries = std::collections::BTreeMap::new();
    for _ in 0..rng.gen_range(0..=4) {
        let q = rng.gen_range(0..(workers / 10).max(1));
        queries.insert(
            format!("20250101_000000_{q:05}_bench"),
            rng.gen_range(16 * MIB..=256 * MIB),
        );
    }
    WorkerHeartbeat {
        node_id: worker_id(i),
        memory: MemoryPool {
            total_bytes,
            reserved_bytes: queries.values().sum(),
            blocked_tasks: 0,
            queries,
        },
        cpu_cores: rng.gen_range(0.0..16.0),
        running_tasks: rng.gen_range(0..64),
        ttl_ms: HEARTBEAT_TTL_MS,
        queries: Default::default(),
    }
}

fn worker_id(i: usize) -> String {
    format!("bench-worker-{i:05}")
}

/// One encoded body or request per simulated worker.
type PerWorker = Vec<Vec<u8>>;

/// The simulated workers' JSON bodies: (announcements, heartbeats).
fn bodies(workers: usize) -> Result<(PerWorker, PerWorker)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let (mut announcements, mut heartbeats) = (Vec::new(), Vec::new());
    for i in 0..workers {
        announcements.push(serde_json::to_vec(&Announcement {
            node_id: worker_id(i),
            role: "worker".into(),
            // Nothing listens there: the RM only records it.
            addr: format!("127.0.0.{}:{}", 2 + i / 60_000, 1024 + i % 60_000),
            ttl_ms: ANNOUNCEMENT_TTL_MS,
        })?);
        heartbeats.push(serde_json::to_vec(&heartbeat(i, workers, &mut rng))?);
    }
    Ok((announcements, heartbeats))
}

/// An HTTP/1.1 `POST` of a JSON body, encoded whole.
fn encode_post(addr: &str, path: &str, authorization: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(a) = authorization {
        head.push_str(&format!("{}: {a}\r\n", common::auth::AUTHORIZATION));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// An answer's status and `content-length` from its head (up to the blank
/// line). `None` if it is not HTTP/1.1 or has no length (a chunked body).
fn parse_head(head: &[u8]) -> Option<(u16, usize)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let length = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    Some((status, length))
}

/// One keep-alive connection of the generator. It sends one request at a
/// time (as a worker does), reconnecting after any error.
struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: &str) -> Self {
        Conn {
            addr: addr.to_string(),
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends `request`; true on a 2xx answer.
    async fn send(&mut self, request: &[u8]) -> bool {
        match self.exchange(request).await {
            Ok(status) => (200..300).contains(&status),
            Err(_) => {
                self.stream = None;
                false
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<u16> {
        use std::io::{Error, ErrorKind};
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                self.stream.insert(s)
            }
        };
        stream.write_all(request).await?;
        self.buf.clear();
        let bad = |what: &str| Error::new(ErrorKind::InvalidData, what.to_string());
        loop {
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let (status, length) =
                parse_head(&self.buf[..end]).ok_or_else(|| bad("answer head"))?;
            let whole = end + 4 + length;
            while self.buf.len() < whole {
                if stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
            }
            // One request at a time: nothing may follow the answer.
            if self.buf.len() > whole {
                return Err(bad("bytes after the answer"));
            }
            return Ok(status);
        }
    }
}

/// The generator's connections to the RM; connection `k` is used by one
/// task at a time (the lock is never contended).
type Conns = Arc<Vec<Mutex<Conn>>>;

/// Every worker sends its request of `requests` once, spread over the
/// connections; not measured. Fails on any error.
async fn round(conns: &Conns, requests: &Arc<Vec<Vec<u8>>>) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let c = conns.len();
    for k in 0..c {
        let (conns, requests) = (conns.clone(), requests.clone());
        tasks.spawn(async move {
            let mut conn = conns[k].lock().await;
            let mut failed = 0;
            for r in requests.iter().skip(k).step_by(c) {
                failed += usize::from(!conn.send(r).await);
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(f) = tasks.join_next().await {
        failed += f?;
    }
    if failed > 0 {
        bail!("{failed} requests of an unmeasured round failed");
    }
    Ok(())
}

/// The open loop: connection `k` sends at `start + j * connections / rate`
/// for j = 0, 1, ... until `duration` has passed, cycling over its share
/// of the workers; each latency counts from the intended send time.
async fn open_loop(
    conns: &Conns,
    requests: &Arc<Vec<Vec<u8>>>,
    rate: f64,
    duration: Duration,
) -> Result<(f64, Vec<Duration>, usize)> {
    let c = conns.len();
    let gap = Duration::from_secs_f64(c as f64 / rate);
    let start = Instant::now() + Duration::from_millis(10);
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..c {
        let (conns, requests) = (conns.clone(), requests.clone());
        // Connections start spread over one gap, not all at once.
        let first = start + gap.mul_f64(k as f64 / c as f64);
        tasks.spawn(async move {
            let mut conn = conns[k].lock().await;
            let mine: Vec<usize> = (k..requests.len()).step_by(c).collect();
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut due = first;
            let mut j = 0usize;
            // Behind schedule, it sends back to back, but never past the
            // deadline: what it could not send counts as not acked.
            while due < deadline && Instant::now() < deadline && !mine.is_empty() {
                tokio::time::sleep_until(due.into()).await;
                if conn.send(&requests[mine[j % mine.len()]]).await {
                    latencies.push(due.elapsed());
                } else {
                    errors += 1;
                }
                j += 1;
                due += gap;
            }
            (latencies, errors)
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(r) = tasks.join_next().await {
        let (l, e) = r?;
        latencies.extend(l);
        errors += e;
    }
    // Over the intended window, or longer if the last answers came late.
    let seconds = start.elapsed().as_secs_f64().max(duration.as_secs_f64());
    Ok((seconds, latencies, errors))
}

/// Runs the phases for each worker count against the leader of `c`.
pub async fn run(c: &LocalCluster, spec: &HeartbeatSpec) -> Result<(Vec<Phase>, Vec<Held>)> {
    let leader = c
        .client
        .wait_leader(&c.addr_list(), Duration::from_secs(20))
        .await
        .ok_or_else(|| anyhow::anyhow!("no leader within 20 s"))?;
    let addr = c.addrs[&leader].clone();
    let Some(pid) = c.pid(&Target::Rm(leader)) else {
        bail!("the leader n{leader} has no process");
    };
    let secret = SharedSecret::from_file(&c.dir().join("secret"))
        .context("the cluster's secret")?
        .header_value();
    let conns: Conns = Arc::new(
        (0..spec.connections)
            .map(|_| Mutex::new(Conn::new(&addr)))
            .collect(),
    );
    let (mut phases, mut held) = (Vec::new(), Vec::new());
    for &n in &spec.workers {
        let (announcements, heartbeats) = bodies(n)?;
        let encode = |path: &str, bodies: Vec<Vec<u8>>| {
            Arc::new(
                bodies
                    .iter()
                    .map(|b| encode_post(&addr, path, Some(&secret), b))
                    .collect::<Vec<_>>(),
            )
        };
        let requests = Requests {
            announcements: encode("/v1/announce", announcements),
            heartbeats: encode("/v1/heartbeat/worker", heartbeats),
        };
        for offered in [None, Some(spec.rate)] {
            round(&conns, &requests.announcements).await?;
            round(&conns, &requests.heartbeats).await?;
            let (mut rm, mut me) = (CpuMeter::new(Some(pid as u32)), CpuMeter::new(None));
            let (seconds, latencies, errors) = match offered {
                Some(rate) => open_loop(&conns, &requests.heartbeats, rate, spec.duration).await?,
                None => {
                    let (conns, requests) = (conns.clone(), requests.heartbeats.clone());
                    let c = spec.connections;
                    let l = closed_loop(c, spec.duration, move |k, j| {
                        let (conns, requests) = (conns.clone(), requests.clone());
                        async move {
                            let i = (k + (j as usize - 1) * c) % requests.len();
                            let mut conn = conns[k].lock().await;
                            let t = Instant::now();
                            let ok = conn.send(&requests[i]).await;
                            Outcome {
                                first: ok.then(|| t.elapsed()),
                                second: None,
                                errors: usize::from(!ok),
                            }
                        }
                    })
                    .await?;
                    (l.seconds, l.first, l.errors)
                }
            };
            let (rm_cores, generator_cores) = (rm.cores_since_last(), me.cores_since_last());
            let acked = latencies.len();
            phases.push(Phase {
                workers: n,
                phase: if offered.is_some() { "offered" } else { "max" }.into(),
                offered_per_sec: offered,
                connections: spec.connections,
                seconds,
                acked,
                errors,
                acked_per_sec: acked as f64 / seconds,
                latency: summarize(&latencies),
                rm_cores,
                generator_cores,
                rm_cpu_us_per_heartbeat: (acked > 0)
                    .then(|| rm_cores * seconds * 1e6 / acked as f64),
            });
        }
        held.push(check(c, &addr, n).await?);
    }
    Ok((phases, held))
}

/// What the RM at `addr` holds, right after the phases for `n` workers.
async fn check(c: &LocalCluster, addr: &str, n: usize) -> Result<Held> {
    let memory = c.client.memory(addr).await?;
    let nodes = c
        .client
        .at(addr)
        .with_timeout(Duration::from_secs(30))
        .with_policy(common::rm::RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(50),
        })
        .nodes(Some("worker"))
        .await?;
    Ok(Held {
        workers: n,
        memory_workers: memory.pool.workers as u64,
        discovered: nodes.len(),
        kills: memory.kills.len(),
    })
}

/// The bench's table, as Markdown.
pub fn table(phases: &[Phase]) -> String {
    let mut out = String::from(
        "| workers | phase | offered/s | acked/s | p50 | p99 | errors | RM cores | RM µs/heartbeat | generator cores |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    for p in phases {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.2} | {} | {:.2} |\n",
            p.workers,
            p.phase,
            p.offered_per_sec
                .map_or("max".to_string(), |r| format!("{r:.0}")),
            p.acked_per_sec,
            ms(p.latency.as_ref().map(|s| s.p50_ms)),
            ms(p.latency.as_ref().map(|s| s.p99_ms)),
            p.errors,
            p.rm_cores,
            p.rm_cpu_us_per_heartbeat
                .map_or("-".to_string(), |u| format!("{u:.0}")),
            p.generator_cores,
        ));
    }
    out
}

/// The target, per offered phase: the RM acked at least 99% of
/// the offered rate (and at least 20,000/s) using under one core.
pub fn target_met(phases: &[Phase]) -> bool {
    let offered: Vec<&Phase> = phases
        .iter()
        .filter(|p| p.offered_per_sec.is_some())
        .collect();
    !offered.is_empty()
        && offered.iter().all(|p| {
            let rate = p.offered_per_sec.unwrap_or(0.0);
            rate >= 20_000.0 && p.acked_per_sec >= 0.99 * rate && p.errors == 0 && p.rm_cores < 1.0
        })
}

/// `jepsen bench heartbeats`: every phase on plain RMs (no resource
/// groups), the table, and whether the RM holds every simulated worker.
pub async fn command(template: &ClusterSpec, spec: &HeartbeatSpec) -> Result<()> {
    let b = super::start_cluster(template, "bench-heartbeats", None, &[])?;
    let (phases, held) = run(&b.cluster, spec).await?;
    print!("{}", table(&phases));
    for h in &held {
        println!(
            "after {} workers: the RM's memory view holds {}, discovery {}, kills {}{}",
            h.workers,
            h.memory_workers,
            h.discovered,
            h.kills,
            if h.ok() { "" } else { "  <- WRONG" }
        );
    }
    let met = target_met(&phases);
    println!(
        "target (20,000 heartbeats/s acked on one RM using under one core): {}",
        if met { "met" } else { "not met" }
    );
    let ok = held.iter().all(|h| h.ok());
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "heartbeats", "nodes": template.nodes,
            "phases": phases, "held": held, "target_met": met, "valid": ok}),
    )?;
    if !ok {
        anyhow::bail!("the RM does not hold every simulated worker");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_heartbeats_are_valid_and_distinct() {
        let (announcements, heartbeats) = bodies(300).unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for body in &heartbeats {
            let hb: WorkerHeartbeat = serde_json::from_slice(body).unwrap();
            assert!(hb.memory.reserved_bytes <= hb.memory.total_bytes);
            assert_eq!(
                hb.memory.queries.values().sum::<u64>(),
                hb.memory.reserved_bytes
            );
            assert!(!hb.memory.is_blocked());
            ids.insert(hb.node_id);
        }
        assert_eq!(ids.len(), 300);
        // No simulated query comes near the RMs' default query.max-memory.
        let mut per_query = std::collections::BTreeMap::<String, u64>::new();
        for body in &bodies(10_000).unwrap().1 {
            let hb: WorkerHeartbeat = serde_json::from_slice(body).unwrap();
            for (q, bytes) in hb.memory.queries {
                *per_query.entry(q).or_default() += bytes;
            }
        }
        assert!(
            per_query.values().all(|b| *b < 15 << 30),
            "{:?}",
            per_query.values().max()
        );
        let a: Announcement = serde_json::from_slice(&announcements[7]).unwrap();
        assert_eq!(a.node_id, worker_id(7));
        // Seeded: the same bodies every run.
        assert_eq!(bodies(300).unwrap().1, heartbeats);
    }

    #[test]
    fn requests_are_whole_http_posts_and_answers_are_read_by_length() {
        let r = encode_post("127.0.0.1:9", "/v1/x", Some("Bearer s"), b"{}");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1:9\r\ncontent-type: application/json\r\n\
             content-length: 2\r\nauthorization: Bearer s\r\n\r\n{}"
        );
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 12\r\ndate: x";
        assert_eq!(parse_head(head), Some((200, 12)));
        assert_eq!(
            parse_head(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0"),
            Some((503, 0))
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked"),
            None
        );
        assert_eq!(parse_head(b"garbage"), None);
    }

    #[tokio::test]
    async fn a_connection_is_kept_alive_and_survives_a_close() {
        // A server that answers two requests on its first connection and
        // closes it, then one on its second.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let mut connections = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                connections += 1;
                for _ in 0..(3 - connections) {
                    let mut buf = vec![0u8; 1024];
                    let mut got = 0;
                    while !buf[..got].ends_with(b"{}") {
                        got += s.read(&mut buf[got..]).await.unwrap();
                    }
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"kills\":[]}")
                        .await
                        .unwrap();
                }
                if connections == 2 {
                    return connections;
                }
            }
            connections
        });
        let mut conn = Conn::new(&addr);
        let request = encode_post(&addr, "/v1/x", None, b"{}");
        assert!(conn.send(&request).await && conn.send(&request).await);
        // The server closed: this one fails, the next reconnects.
        assert!(!conn.send(&request).await);
        assert!(conn.send(&request).await);
        assert_eq!(server.await.unwrap(), 2);
    }
}
