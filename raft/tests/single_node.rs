//! A single-voter quorum on glommio: openraft with the glommio runtime, the log on
//! real files, the state machine over the metadata image. Commands commit and apply
//! in order, a refused command is answered with its refusal, and after a restart on
//! the same directory the image is rebuilt from the log.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft};
use sluice_raft::quorum::{LogStore, StateMachine, TypeConfig};
use sluice_raft::{Applied, Command, Refusal};
use uuid::Uuid;

/// A single voter sends no RPC; any attempt is answered as unreachable.
struct Alone;

fn unreachable<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
        "a single voter has no peers",
    )))
}

impl RaftNetwork<TypeConfig> for Alone {
    async fn append_entries(
        &mut self,
        _: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _: InstallSnapshotRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _: VoteRequest<u64>,
        _: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }
}

impl RaftNetworkFactory<TypeConfig> for Alone {
    type Network = Alone;
    async fn new_client(&mut self, _: u64, _: &BasicNode) -> Alone {
        Alone
    }
}

fn create(name: &str, id: u128) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: Uuid::from_u128(id),
        partitions: 3,
        configs: BTreeMap::new(),
        replication_factor: 1,
    }
}

async fn start(dir: &std::path::Path, sm: StateMachine) -> Raft<TypeConfig> {
    start_with(dir, sm, Config::default()).await
}

async fn start_with(dir: &std::path::Path, sm: StateMachine, config: Config) -> Raft<TypeConfig> {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..config
    };
    let log = LogStore::open(dir).expect("open the log");
    Raft::new(1, Arc::new(config.validate().unwrap()), Alone, log, sm)
        .await
        .expect("raft")
}

async fn leads(raft: &Raft<TypeConfig>) {
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(1, "the single voter leads")
        .await
        .expect("a leader");
}

#[test]
fn a_single_voter_commits_applies_and_rebuilds_after_a_restart_on_glommio() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let sm = StateMachine::open(&path).await.expect("state machine");
            let raft = start(&path, sm.clone()).await;
            raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:9095"))]))
                .await
                .expect("initialize");
            leads(&raft).await;
            let w = raft
                .client_write(Command::InitCluster {
                    cluster_id: "c1".into(),
                })
                .await
                .expect("commit");
            assert_eq!(w.data.result, Ok(Applied::Done));
            assert_eq!(w.data.version, w.log_id.index);
            raft.client_write(create("a", 1)).await.expect("commit");
            let refused = raft.client_write(create("a", 2)).await.expect("commit");
            assert_eq!(refused.data.result, Err(Refusal::TopicExists("a".into())));
            let ids = raft
                .client_write(Command::ReserveProducerIds { count: 10 })
                .await
                .expect("commit");
            assert_eq!(ids.data.result, Ok(Applied::ProducerIds { first: 0 }));
            let image = sm.image();
            assert_eq!(image.cluster_id, "c1");
            assert_eq!(image.topic("a").map(|t| t.id), Some(Uuid::from_u128(1)));
            assert_eq!(image.version, ids.log_id.index);
            raft.shutdown().await.expect("shutdown");
            drop(raft);

            // Again on the same files, with an empty state machine.
            let sm = StateMachine::open(&path).await.expect("state machine");
            let raft = start(&path, sm.clone()).await;
            leads(&raft).await;
            raft.client_write(create("b", 3)).await.expect("commit");
            let image = sm.image();
            assert_eq!(image.cluster_id, "c1");
            assert_eq!(
                image.topics.keys().cloned().collect::<Vec<_>>(),
                vec!["a".to_string(), "b".to_string()]
            );
            assert_eq!(image.producer_ids_reserved, 10);
            raft.shutdown().await.expect("shutdown");
        })
        .expect("executor")
        .join()
        .expect("the test's executor");
}

/// With a snapshot every 5 entries and nothing kept behind it, the log is purged;
/// after a restart the state machine comes back from the snapshot on disk plus the
/// entries after it.
#[test]
fn snapshots_are_on_disk_before_the_log_behind_them_is_purged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let config = || Config {
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5),
                max_in_snapshot_log_to_keep: 0,
                purge_batch_size: 1,
                ..Config::default()
            };
            let sm = StateMachine::open(&path).await.expect("state machine");
            let raft = start_with(&path, sm.clone(), config()).await;
            raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:9095"))]))
                .await
                .expect("initialize");
            leads(&raft).await;
            let mut last = None;
            for i in 0..23u128 {
                let w = raft
                    .client_write(create(&format!("t{i}"), i + 1))
                    .await
                    .expect("commit");
                last = Some(w.log_id);
            }
            // The policy starts a snapshot when an entry is applied, but not while
            // one is being built: the last entries may come while the one at 19
            // is built and none follows them. Ask for one more so the log up to
            // the last entry is snapshotted and purged.
            raft.trigger().snapshot().await.expect("snapshot");
            let m = raft
                .wait(Some(Duration::from_secs(10)))
                .metrics(|m| m.purged.is_some_and(|p| p.index >= 20), "purged")
                .await
                .expect("a snapshot and a purge");
            assert!(m.snapshot.is_some());
            assert!(path.join("raft-snapshot").exists());
            raft.shutdown().await.expect("shutdown");
            drop(raft);

            let sm = StateMachine::open(&path).await.expect("state machine");
            let raft = start_with(&path, sm.clone(), config()).await;
            leads(&raft).await;
            raft.wait(Some(Duration::from_secs(10)))
                .metrics(|m| m.last_applied >= last, "applied again")
                .await
                .expect("applied");
            let image = sm.image();
            assert_eq!(image.topics.len(), 23);
            assert!((0..23).all(|i| image.topic(&format!("t{i}")).is_some()));
            raft.shutdown().await.expect("shutdown");
        })
        .expect("executor")
        .join()
        .expect("the test's executor");
}
