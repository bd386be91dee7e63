//! etcd's strongest admission recipe we know: a counting semaphore ranked
//! by creation revision, the way etcd's own `concurrency.Mutex` orders its
//! waiters, generalised from "the first key" to "the first `limit` keys".
//! It has no compare to lose, so no conflicts, and slots of dead clients
//! free themselves when their lease expires.
//!
//! - One key per client lease and group, `/sem/<group>/<lease hex>`,
//!   reused across acquisitions (a fresh key per query would slow every
//!   range as deleted keys pile up until compaction).
//! - acquire = one transaction: if the key does not exist, put it (under
//!   the lease) and count the group's keys. The count, read after the put
//!   in the same transaction, is the caller's 1-based rank: every other
//!   live key was created before. Otherwise (a retry) read the key, and
//!   count the keys created up to its revision. Then [`decide`]: admitted
//!   within `limit`, queued within `limit + max_queued`, else rejected (the
//!   key is deleted). A queued caller watches the deletions of the keys
//!   ahead of it until fewer than `limit` remain.
//! - release = delete the key.

use std::collections::HashSet;

use anyhow::{bail, Context, Result};
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchClient, WatchFilterType, WatchOptions,
};

/// Where a caller of rank `rank` stands in a group of `limit` slots and
/// `max_queued` queue places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    /// `ahead` keys are before it; it runs once fewer than `limit` remain.
    Queued {
        ahead: i64,
    },
    Rejected,
}

pub fn decide(rank: i64, limit: i64, max_queued: i64) -> Decision {
    if rank <= limit {
        Decision::Admitted
    } else if rank <= limit.saturating_add(max_queued) {
        Decision::Queued { ahead: rank - 1 }
    } else {
        Decision::Rejected
    }
}

/// The keys of `group`'s holders and waiters.
pub fn prefix(group: &str) -> String {
    format!("/sem/{group}/")
}

/// The key a client holding `lease` uses in `group`.
pub fn key(group: &str, lease: i64) -> String {
    format!("{}{lease:016x}", prefix(group))
}

/// How an acquire ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// Admitted, at once or after waiting in the queue.
    Admitted {
        waited: bool,
    },
    Rejected,
}

/// Takes a slot of `group` for the client holding `lease`.
pub async fn acquire(
    kv: &mut KvClient,
    watch: &mut WatchClient,
    group: &str,
    lease: i64,
    query_id: &str,
    limit: i64,
    max_queued: i64,
) -> Result<Acquired> {
    let (key, prefix) = (key(group, lease), prefix(group));
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.as_str(),
                query_id,
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            ),
        ])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = kv.txn(txn).await?;
    let (created, rank) = if response.succeeded() {
        let revision = response.header().context("no header")?.revision();
        match response.op_responses().get(1) {
            Some(TxnOpResponse::Get(get)) => (revision, get.count()),
            other => bail!("unexpected count response {other:?}"),
        }
    } else {
        let created = match response.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => get
                .kvs()
                .first()
                .context("the key vanished")?
                .create_revision(),
            other => bail!("unexpected else-branch response {other:?}"),
        };
        // `count` ignores a create-revision bound: count the keys.
        let upto = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_max_create_revision(created);
        (
            created,
            kv.get(prefix.as_str(), Some(upto)).await?.kvs().len() as i64,
        )
    };
    match decide(rank, limit, max_queued) {
        Decision::Admitted => Ok(Acquired::Admitted { waited: false }),
        Decision::Rejected => {
            kv.delete(key.as_str(), None).await?;
            Ok(Acquired::Rejected)
        }
        Decision::Queued { .. } => {
            wait_turn(kv, watch, &prefix, created, limit).await?;
            Ok(Acquired::Admitted { waited: true })
        }
    }
}

/// Waits until fewer than `limit` keys of `prefix` were created before
/// revision `created`: reads them, then watches their deletions.
async fn wait_turn(
    kv: &mut KvClient,
    watch: &mut WatchClient,
    prefix: &str,
    created: i64,
    limit: i64,
) -> Result<()> {
    let before = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_max_create_revision(created - 1);
    let ahead = kv.get(prefix, Some(before)).await?;
    let revision = ahead.header().context("no header")?.revision();
    let mut remaining: HashSet<Vec<u8>> = ahead.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    if (remaining.len() as i64) < limit {
        return Ok(());
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        .with_filters([WatchFilterType::NoPut]);
    let mut stream = watch.watch(prefix, Some(options)).await?;
    while remaining.len() as i64 >= limit {
        let Some(message) = stream.message().await? else {
            bail!("the watch on {prefix} ended");
        };
        for event in message.events() {
            if event.event_type() == EventType::Delete {
                if let Some(kv) = event.kv() {
                    remaining.remove(kv.key());
                }
            }
        }
    }
    Ok(())
}

/// Gives back the slot (or queue place) of the client holding `lease`.
pub async fn release(kv: &mut KvClient, group: &str, lease: i64) -> Result<()> {
    kv.delete(key(group, lease), None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_within_the_limit_run_then_queue_then_are_refused() {
        assert_eq!(decide(1, 8, 1000), Decision::Admitted);
        assert_eq!(decide(8, 8, 1000), Decision::Admitted);
        assert_eq!(decide(9, 8, 1000), Decision::Queued { ahead: 8 });
        assert_eq!(decide(1008, 8, 1000), Decision::Queued { ahead: 1007 });
        assert_eq!(decide(1009, 8, 1000), Decision::Rejected);
        assert_eq!(decide(2, 1, 0), Decision::Rejected, "no queue");
        assert_eq!(decide(i64::MAX, i64::MAX, i64::MAX), Decision::Admitted);
    }

    #[test]
    fn one_key_per_lease_and_group() {
        assert_eq!(key("hot", 0x1f), "/sem/hot/000000000000001f");
        assert!(key("hot", 7).starts_with(&prefix("hot")));
        assert!(!key("hot2", 7).starts_with(&prefix("hot")));
    }
}
