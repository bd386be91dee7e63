//! Soft state: what this RM hears directly from workers and coordinators,
//! not replicated. As upstream, every worker and coordinator reports to
//! every RM, so each RM has the whole picture without Raft traffic.
//!
//! - announcements (discovery), each valid for its TTL;
//! - the latest heartbeat of each worker (its memory pool), which makes the
//!   cluster memory view.
//!
//! Time comes from the process clock (this is not the state machine).

use std::collections::BTreeMap;
use std::sync::Mutex;

use common::clock::SharedClock;
use serde::{Deserialize, Serialize};

pub use common::wire::{Announcement, MemoryPool, WorkerHeartbeat};

/// Longest TTL an announcement may ask for.
pub const MAX_TTL_MS: u64 = 60_000;
/// Most nodes one RM tracks (a guard against a flood of made-up ids).
pub const MAX_NODES: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub announcement: Announcement,
    pub last_seen_ms: u64,
    pub expires_in_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerMemory {
    /// How long ago this RM received the heartbeat.
    pub age_ms: u64,
    pub heartbeat: WorkerHeartbeat,
}

/// The cluster memory view: live workers' pools, summed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterMemory {
    pub workers: usize,
    pub total_bytes: u64,
    pub reserved_bytes: u64,
    pub free_bytes: u64,
    /// Workers whose pool is blocked: full, with tasks waiting.
    pub blocked_workers: usize,
    /// query id -> bytes reserved across the cluster.
    pub queries: BTreeMap<String, u64>,
    pub nodes: Vec<WorkerMemory>,
}

struct Entry<T> {
    value: T,
    received_ms: u64,
    expires_ms: u64,
}

pub struct SoftState {
    clock: SharedClock,
    nodes: Mutex<BTreeMap<String, Entry<Announcement>>>,
    heartbeats: Mutex<BTreeMap<String, Entry<WorkerHeartbeat>>>,
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
        map: &Mutex<BTreeMap<String, Entry<T>>>,
        id: &str,
        value: T,
        now: u64,
        ttl: u64,
    ) -> Result<(), SoftError> {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, e| e.expires_ms > now);
        if !map.contains_key(id) && map.len() >= MAX_NODES {
            return Err(SoftError::Full);
        }
        map.insert(
            id.to_string(),
            Entry {
                value,
                received_ms: now,
                expires_ms: now + ttl,
            },
        );
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
        let map = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|e| e.expires_ms > now && role.is_none_or(|r| e.value.role == r))
            .map(|e| NodeView {
                announcement: e.value.clone(),
                last_seen_ms: e.received_ms,
                expires_in_ms: e.expires_ms - now,
            })
            .collect()
    }

    pub fn memory(&self) -> ClusterMemory {
        let now = self.clock.now_ms();
        let map = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        let nodes: Vec<WorkerMemory> = map
            .values()
            .filter(|e| e.expires_ms > now)
            .map(|e| WorkerMemory {
                age_ms: now - e.received_ms,
                heartbeat: e.value.clone(),
            })
            .collect();
        let mut queries: BTreeMap<String, u64> = BTreeMap::new();
        for n in &nodes {
            for (q, bytes) in &n.heartbeat.memory.queries {
                *queries.entry(q.clone()).or_default() += bytes;
            }
        }
        let total: u64 = nodes.iter().map(|n| n.heartbeat.memory.total_bytes).sum();
        let reserved: u64 = nodes
            .iter()
            .map(|n| n.heartbeat.memory.reserved_bytes)
            .sum();
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
}
