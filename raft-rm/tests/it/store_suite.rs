//! openraft's own storage test suite, run over our sled store.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raft_rm::metrics::Metrics;
use raft_rm::store::{self, LogStore, StateMachineStore};
use raft_rm::{NodeId, TypeConfig};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        // The suite purges logs no snapshot covers; a node never does.
        let stores = store::open(dir.path(), 1, Arc::new(Metrics::new()))
            .expect("open store")
            .with_unbounded_purges();
        Ok((dir, stores.log, stores.state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(SledBuilder).unwrap();
}

mod recovery {
    use super::*;
    use openraft::storage::{
        RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine,
    };
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use raft_rm::machine::{Command, Request};

    fn entry(index: u64, seq: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request {
                leader_time_ms: 1000 + index,
                command: Command::Canary {
                    client: "c".into(),
                    seq,
                },
            }),
        }
    }

    fn open(dir: &std::path::Path, id: NodeId) -> store::Stores {
        store::open(dir, id, Arc::new(Metrics::new())).unwrap()
    }

    /// Log, vote, committed id and snapshot all come back after reopening,
    /// and a snapshot replaces the state wholesale.
    #[tokio::test]
    async fn reopen_recovers_everything_and_snapshots_replace_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path(), 1);
            s.log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
            let entries: Vec<_> = (1..=5).map(|i| entry(i, i)).collect();
            s.log.blocking_append(entries.clone()).await.unwrap();
            s.log.save_committed(Some(entries[4].log_id)).await.unwrap();
            s.state_machine.apply(entries).await.unwrap();
            s.state_machine.build_snapshot().await.unwrap();
        }
        let mut s = open(dir.path(), 1);
        assert_eq!(
            s.log.read_vote().await.unwrap(),
            Some(Vote::new_committed(1, 1))
        );
        assert_eq!(
            s.log.read_committed().await.unwrap().map(|l| l.index),
            Some(5)
        );
        assert_eq!(s.log.try_get_log_entries(1..=5).await.unwrap().len(), 5);
        let (applied, _) = s.state_machine.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(5));
        assert_eq!(s.state_machine.reader().read().state.canaries["c"].count, 5);

        // Install a snapshot of a different state: nothing of the old survives.
        let other = tempfile::tempdir().unwrap();
        let mut o = open(other.path(), 1);
        o.state_machine
            .apply(vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(2, 1), 9),
                payload: EntryPayload::Normal(Request {
                    leader_time_ms: 5,
                    command: Command::Canary {
                        client: "z".into(),
                        seq: 1,
                    },
                }),
            }])
            .await
            .unwrap();
        let snap = o.state_machine.build_snapshot().await.unwrap();
        s.state_machine
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        {
            let r = s.state_machine.reader();
            let a = r.read();
            assert_eq!(a.state.canaries.keys().collect::<Vec<_>>(), vec!["z"]);
            assert_eq!(a.last_applied.map(|l| l.index), Some(9));
        }
        drop(s);
        let s = open(dir.path(), 1);
        assert_eq!(
            s.state_machine
                .reader()
                .read()
                .state
                .canaries
                .keys()
                .collect::<Vec<_>>(),
            vec!["z"]
        );
    }

    #[test]
    fn a_data_dir_of_another_node_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), 1));
        let err = store::open(dir.path(), 2, Arc::new(Metrics::new()))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("belongs to node 1, not node 2"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_is_refused_and_the_state_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1);
        s.state_machine.apply(vec![entry(1, 1)]).await.unwrap();
        let snap = s.state_machine.build_snapshot().await.unwrap();
        let mut bytes = snap.snapshot.into_inner();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let r = s
            .state_machine
            .install_snapshot(&snap.meta, Box::new(std::io::Cursor::new(bytes)))
            .await;
        assert!(r.is_err());
        assert_eq!(s.state_machine.reader().read().state.canaries["c"].count, 1);
    }
}
