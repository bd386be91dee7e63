//! Soft state: what this RM hears directly from workers and coordinators,
//! not replicated. As upstream, every worker and coordinator reports to
//! every RM, so each RM has the whole picture without Raft traffic.
//!
//! - announcements (discovery), each valid for its TTL;
//! - the latest heartbeat of each worker (its memory pool), which makes the
//!   cluster memory view.
//!
//! Time comes from the process clock (this is not the state machine).
//!
//! Every worker heartbeats every RM each second, so a heartbeat must cost
//! little even with thousands of workers: it replaces its worker's entry
//! (no scan of the others), expired entries are dropped at most once per
//! [`SWEEP_EVERY_MS`] (readers skip them anyway), and a reader holds the
//! lock only to take shared references to the entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use common::clock::SharedClock;

pub use common::api::{ClusterMemory, NodeView, WorkerMemory};
pub use common::wire::{Announcement, MemoryPool, WorkerHeartbeat};

/// Longest TTL an announcement may ask for.
pub const MAX_TTL_MS: u64 = 60_000;
/// Most nodes one RM tracks (a guard against a flood of made-up ids).
pub const MAX_NODES: usize = 10_000;
/// How often a table drops its expired entries: often enough that the
/// departed do not pile up, rarely enough that no heartbeat pays for a scan
/// of every node (perf: 39% of the RM's CPU in that scan at 10,000 workers).
pub const SWEEP_EVERY_MS: u64 = 1_000;

struct Entry<T> {
    /// Shared, so a reader copies it after letting go of the lock.
    value: Arc<T>,
    received_ms: u64,
    expires_ms: u64,
}

/// Entries by node id, and when expired ones were last dropped.
struct Table<T> {
    entries: BTreeMap<String, Entry<T>>,
    swept_ms: u64,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            swept_ms: 0,
        }
    }
}

impl<T> Table<T> {
    fn sweep(&mut self, now: u64) {
        self.entries.retain(|_, e| e.expires_ms > now);
        self.swept_ms = now;
    }

    /// The live entries (with when they were received), under the lock.
    fn live(&self, now: u64) -> Vec<(Arc<T>, u64, u64)> {
        self.entries
            .values()
            .filter(|e| e.expires_ms > now)
            .map(|e| (e.value.clone(), e.received_ms, e.expires_ms))
            .collect()
    }
}

pub struct SoftState {
    clock: SharedClock,
    nodes: Mutex<Table<Announcement>>,
    heartbeats: Mutex<Table<WorkerHeartbeat>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SoftError {
    #[error("ttl_ms: must be 1 to {MAX_TTL_MS}")]
    Ttl,
    #[error("this RM already tracks {MAX_NODES} nodes")]
    Full,
}

impl SoftState {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            nodes: Mutex::default(),
            heartbeats: Mutex::default(),
        }
    }

    fn upsert<T>(
        table: &Mutex<Table<T>>,
        id: &str,
        value: T,
        now: u64,
        ttl: u64,
    ) -> Result<(), SoftError> {
        let entry = Entry {
            value: Arc::new(value),
            received_ms: now,
            expires_ms: now.saturating_add(ttl),
        };
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        // `now` may go back (a clock step): then wait for it to pass again.
        if now >= t.swept_ms.saturating_add(SWEEP_EVERY_MS) {
            t.sweep(now);
        }
        if let Some(e) = t.entries.get_mut(id) {
            *e = entry;
            return Ok(());
        }
        if t.entries.len() >= MAX_NODES {
            // Only the live count: make room from the expired first.
            t.sweep(now);
            if t.entries.len() >= MAX_NODES {
                return Err(SoftError::Full);
            }
        }
        t.entries.insert(id.to_string(), entry);
        Ok(())
    }

    pub fn announce(&self, a: Announcement) -> Result<(), SoftError> {
        if a.ttl_ms == 0 || a.ttl_ms > MAX_TTL_MS {
            return Err(SoftError::Ttl);
        }
        let (id, ttl) = (a.node_id.clone(), a.ttl_ms);
        Self::upsert(&self.nodes, &id, a, self.clock.now_ms(), ttl)
    }

    /// A heartbeat stays in the memory view for its `ttl_ms`.
    pub fn heartbeat(&self, hb: WorkerHeartbeat) -> Result<(), SoftError> {
        if hb.ttl_ms == 0 || hb.ttl_ms > MAX_TTL_MS {
            return Err(SoftError::Ttl);
        }
        let (id, ttl) = (hb.node_id.clone(), hb.ttl_ms);
        Self::upsert(&self.heartbeats, &id, hb, self.clock.now_ms(), ttl)
    }

    /// Live announcements, optionally of one role.
    pub fn nodes(&self, role: Option<&str>) -> Vec<NodeView> {
        let now = self.clock.now_ms();
        let live = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live(now);
        live.into_iter()
            .filter(|(a, _, _)| role.is_none() || role == Some(a.role.as_str()))
            .map(|(a, received_ms, expires_ms)| NodeView {
                announcement: Announcement::clone(&a),
                last_seen_ms: received_ms,
                expires_in_ms: expires_ms - now,
            })
            .collect()
    }

    pub fn memory(&self) -> ClusterMemory {
        let now = self.clock.now_ms();
        let live = self
            .heartbeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live(now);
        let nodes: Vec<WorkerMemory> = live
            .into_iter()
            .map(|(heartbeat, received_ms, _)| WorkerMemory {
                // Zero, not an underflow, after the clock stepped back.
                age_ms: now.saturating_sub(received_ms),
                heartbeat,
            })
            .collect();
        // Sums saturate: the API bounds each worker's figures, but an
        // overflow here must not panic (debug) or wrap (release).
        // Summed by reference in a hash map, so each query's id is copied
        // once (not once per worker that runs it) and compared once per
        // worker, not once per tree level (ids share long prefixes).
        let mut per_query: HashMap<&str, u64> = HashMap::new();
        for n in &nodes {
            for (q, bytes) in &n.heartbeat.memory.queries {
                let sum = per_query.entry(q.as_str()).or_default();
                *sum = sum.saturating_add(*bytes);
            }
        }
        let queries: BTreeMap<String, u64> = per_query
            .into_iter()
            .map(|(q, bytes)| (q.to_string(), bytes))
            .collect();
        let total = saturating_sum(nodes.iter().map(|n| n.heartbeat.memory.total_bytes));
        let reserved = saturating_sum(nodes.iter().map(|n| n.heartbeat.memory.reserved_bytes));
        ClusterMemory {
            workers: nodes.len(),
            total_bytes: total,
            reserved_bytes: reserved,
            free_bytes: total.saturating_sub(reserved),
            blocked_workers: nodes
                .iter()
                .filter(|n| n.heartbeat.memory.is_blocked())
                .count(),
            queries,
            nodes,
        }
    }
}

/// The sum of `values`, `u64::MAX` if it would overflow.
pub fn saturating_sum(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::clock::ManualClock;

    fn worker(id: &str, reserved: u64, blocked: u32) -> WorkerHeartbeat {
        WorkerHeartbeat {
            node_id: id.into(),
            memory: MemoryPool {
                total_bytes: 1000,
                reserved_bytes: reserved,
                blocked_tasks: blocked,
                queries: BTreeMap::from([("q1".to_string(), reserved)]),
            },
            cpu_cores: 0.5,
            running_tasks: 1,
            ttl_ms: 3_000,
            queries: Default::default(),
        }
    }

    #[test]
    fn announcements_live_for_their_ttl() {
        let clock = ManualClock::new(1_000);
        let soft = SoftState::new(clock.clone());
        let a = |id: &str, role: &str| Announcement {
            node_id: id.into(),
            role: role.into(),
            addr: "127.0.0.1:1".into(),
            ttl_ms: 3_000,
        };
        soft.announce(a("w1", "worker")).unwrap();
        soft.announce(a("c1", "coordinator")).unwrap();
        assert_eq!(soft.nodes(None).len(), 2);
        assert_eq!(soft.nodes(Some("worker"))[0].announcement.node_id, "w1");
        clock.advance_ms(2_000);
        soft.announce(a("w1", "worker")).unwrap(); // renewed
        clock.advance_ms(1_500);
        let live: Vec<String> = soft
            .nodes(None)
            .into_iter()
            .map(|n| n.announcement.node_id)
            .collect();
        assert_eq!(live, ["w1"]);
        assert_eq!(
            soft.announce(Announcement {
                ttl_ms: 0,
                ..a("x", "worker")
            }),
            Err(SoftError::Ttl)
        );
    }

    #[test]
    fn expired_entries_are_dropped_in_sweeps_and_never_block_a_newcomer() {
        let clock = ManualClock::new(10_000);
        let soft = SoftState::new(clock.clone());
        let len = |soft: &SoftState| soft.heartbeats.lock().unwrap().entries.len();
        for i in 0..MAX_NODES {
            soft.heartbeat(worker(&format!("w{i}"), 0, 0)).unwrap();
        }
        let extra = worker("extra", 0, 0);
        assert_eq!(soft.heartbeat(extra.clone()), Err(SoftError::Full));
        // A renewal of a known worker is not refused, even when full.
        soft.heartbeat(worker("w7", 0, 0)).unwrap();
        clock.advance_ms(3_001);
        // Expired: out of the view at once, and out of the way of a
        // newcomer though no sweep was due.
        assert_eq!(soft.memory().workers, 0);
        soft.heartbeat(extra).unwrap();
        assert_eq!(len(&soft), 1);
        // Departed workers linger at most until the next sweep.
        soft.heartbeat(worker("a", 0, 0)).unwrap();
        clock.advance_ms(3_001);
        soft.heartbeat(worker("b", 0, 0)).unwrap();
        assert_eq!(len(&soft), 1, "swept: only b is left");
        clock.advance_ms(SWEEP_EVERY_MS / 2);
        soft.heartbeat(worker("c", 0, 0)).unwrap();
        assert_eq!(len(&soft), 2);
    }

    #[test]
    fn the_memory_view_sums_live_workers() {
        let clock = ManualClock::new(0);
        let soft = SoftState::new(clock.clone());
        soft.heartbeat(worker("w1", 300, 0)).unwrap();
        // Waiting with memory free: not blocked. Full with waiters: blocked.
        soft.heartbeat(worker("w2", 500, 2)).unwrap();
        soft.heartbeat(worker("w3", 1000, 1)).unwrap();
        let m = soft.memory();
        assert_eq!(
            (m.workers, m.total_bytes, m.reserved_bytes, m.free_bytes),
            (3, 3000, 1800, 1200)
        );
        assert_eq!((m.blocked_workers, m.queries["q1"]), (1, 1800));
        // The view survives its own wire format (what clients decode).
        let json = serde_json::to_string(&m).unwrap();
        let back: ClusterMemory = serde_json::from_str(&json).unwrap();
        assert_eq!(back.nodes[1].heartbeat, m.nodes[1].heartbeat);
        let nodes = serde_json::to_string(&soft.nodes(None)).unwrap();
        let _: Vec<NodeView> = serde_json::from_str(&nodes).unwrap();
        clock.advance_ms(3_001);
        assert_eq!(soft.memory().workers, 0);
    }

    /// Figures no worker can hold (the API refuses them) and a clock
    /// stepped back after a heartbeat: the view saturates instead of
    /// overflowing (a panic in debug, a wrapped sum in release).
    #[test]
    fn the_memory_view_neither_overflows_nor_underflows() {
        let clock = ManualClock::new(10_000);
        let soft = SoftState::new(clock.clone());
        for id in ["w1", "w2"] {
            let mut hb = worker(id, u64::MAX, 1);
            hb.memory.total_bytes = u64::MAX;
            soft.heartbeat(hb).unwrap();
        }
        clock.set_ms(9_000);
        let m = soft.memory();
        assert_eq!(
            (m.total_bytes, m.reserved_bytes, m.queries["q1"]),
            (u64::MAX, u64::MAX, u64::MAX)
        );
        assert!(m.nodes.iter().all(|n| n.age_ms == 0), "{:?}", m.nodes);
    }
}
