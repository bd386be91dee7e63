//! The general memory pool. Reservations are granted first come, first
//! served: a request waits while an earlier one waits, even if it would
//! fit, so a large task is not starved by a stream of small ones.
//!
//! Memory is held two ways: reserved up front (a simulated task declares
//! it), or measured (a query's process, whose resident memory is sampled
//! as it runs). Both count against the pool and are reported per query.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use common::wire::MemoryPool;
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    reserved: u64,
    per_query: BTreeMap<String, u64>,
    /// Resident memory of query processes, by task (sampled).
    measured: BTreeMap<String, Measured>,
    /// Tickets of waiting reservations, in arrival order.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

pub struct Pool {
    total: u64,
    state: Mutex<State>,
    changed: Notify,
}

struct Measured {
    query_id: String,
    bytes: u64,
}

impl State {
    fn measured_total(&self) -> u64 {
        self.measured.values().map(|m| m.bytes).sum()
    }
}

/// Memory held for a query; released when dropped.
pub struct Reservation {
    pool: Arc<Pool>,
    query_id: String,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut s = self.pool.lock();
        s.reserved -= self.bytes;
        if let Some(q) = s.per_query.get_mut(&self.query_id) {
            *q -= self.bytes;
            if *q == 0 {
                s.per_query.remove(&self.query_id);
            }
        }
        drop(s);
        self.pool.changed.notify_waiters();
    }
}

/// A place in the queue; leaves it when dropped (a cancelled waiter).
struct Ticket {
    pool: Arc<Pool>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pool.lock().waiting.retain(|t| *t != self.id);
        self.pool.changed.notify_waiters();
    }
}

impl Pool {
    pub fn new(total_bytes: u64) -> Arc<Pool> {
        Arc::new(Pool {
            total: total_bytes,
            state: Mutex::default(),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Waits until `bytes` can be reserved for `query_id`, in arrival order.
    /// `bytes` must not exceed the pool (the caller checks).
    pub async fn reserve(self: &Arc<Self>, query_id: &str, bytes: u64) -> Reservation {
        let ticket = {
            let mut s = self.lock();
            let id = s.next_ticket;
            s.next_ticket += 1;
            s.waiting.push_back(id);
            Ticket {
                pool: self.clone(),
                id,
            }
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register interest before checking, so no release is missed.
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                let held = s.reserved + s.measured_total();
                if s.waiting.front() == Some(&ticket.id) && held + bytes <= self.total {
                    s.reserved += bytes;
                    *s.per_query.entry(query_id.to_string()).or_default() += bytes;
                    s.waiting.pop_front();
                    drop(s);
                    // Already out of the queue, so dropping it only wakes
                    // the others: the next waiter may fit too.
                    drop(ticket);
                    return Reservation {
                        pool: self.clone(),
                        query_id: query_id.to_string(),
                        bytes,
                    };
                }
            }
            notified.await;
        }
    }

    /// Records what `task_id`'s process holds now.
    pub fn set_measured(&self, task_id: &str, query_id: &str, bytes: u64) {
        let mut s = self.lock();
        let shrank = s.measured.get(task_id).is_some_and(|m| bytes < m.bytes);
        s.measured.insert(
            task_id.to_string(),
            Measured {
                query_id: query_id.to_string(),
                bytes,
            },
        );
        drop(s);
        if shrank {
            self.changed.notify_waiters();
        }
    }

    /// How many query processes are measured, and what they hold.
    pub fn measured(&self) -> (usize, u64) {
        let s = self.lock();
        (s.measured.len(), s.measured_total())
    }

    /// `task_id`'s process has ended: its memory is free.
    pub fn clear_measured(&self, task_id: &str) {
        let removed = self.lock().measured.remove(task_id).is_some();
        if removed {
            self.changed.notify_waiters();
        }
    }

    pub fn snapshot(&self) -> MemoryPool {
        let s = self.lock();
        let mut queries = s.per_query.clone();
        for m in s.measured.values() {
            *queries.entry(m.query_id.clone()).or_default() += m.bytes;
        }
        MemoryPool {
            total_bytes: self.total,
            reserved_bytes: s.reserved + s.measured_total(),
            blocked_tasks: s.waiting.len() as u32,
            queries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reservations_wait_in_order_and_free_on_drop() {
        let pool = Pool::new(100);
        let a = pool.reserve("q1", 60).await;
        let p2 = pool.clone();
        let big = tokio::spawn(async move { p2.reserve("q2", 70).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let p3 = pool.clone();
        // 30 would fit now, but the 70 came first: it waits behind it.
        let small = tokio::spawn(async move { p3.reserve("q3", 30).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pool.snapshot().blocked_tasks, 2);
        assert!(!small.is_finished());
        drop(a);
        let big = tokio::time::timeout(Duration::from_secs(1), big)
            .await
            .unwrap()
            .unwrap();
        let small = tokio::time::timeout(Duration::from_secs(1), small)
            .await
            .unwrap()
            .unwrap();
        let s = pool.snapshot();
        assert_eq!(
            (
                s.reserved_bytes,
                s.blocked_tasks,
                s.queries["q2"],
                s.queries["q3"]
            ),
            (100, 0, 70, 30)
        );
        drop((big, small));
        assert_eq!(
            pool.snapshot(),
            MemoryPool {
                total_bytes: 100,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn measured_memory_counts_and_its_release_lets_waiters_in() {
        let pool = Pool::new(100);
        pool.set_measured("t1", "q1", 90);
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move { p2.reserve("q2", 20).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let s = pool.snapshot();
        assert_eq!(
            (s.reserved_bytes, s.blocked_tasks, s.queries["q1"]),
            (90, 1, 90)
        );
        pool.set_measured("t1", "q1", 70);
        let r = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pool.snapshot().reserved_bytes, 90);
        pool.clear_measured("t1");
        drop(r);
        assert_eq!(
            pool.snapshot(),
            MemoryPool {
                total_bytes: 100,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let pool = Pool::new(100);
        let a = pool.reserve("q1", 100).await;
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move { p2.reserve("q2", 50).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pool.snapshot().blocked_tasks, 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(pool.snapshot().blocked_tasks, 0);
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(1), pool.reserve("q3", 100))
            .await
            .unwrap();
        assert_eq!(pool.snapshot().reserved_bytes, 100);
        drop(c);
    }
}
