//! Raft RPC, client side: each call is one HTTP POST with a bincode body to
//! the peer's `/raft/*` route (served by `http::raft`).
//!
//! Every call carries the sender's cluster id and incarnation, and the
//! incarnation the sender's membership records for the receiver (when it
//! records one): the receiver refuses a call meant for another incarnation
//! of itself, and a vote from a candidate that is not the incarnation its
//! membership records (see `store::identity`).
//!
//! Error mapping, which drives openraft's retry behaviour:
//! - could not connect, reset, timed out -> `Unreachable` (openraft backs off);
//! - the peer refused us (401 wrong secret, 409 other cluster or another
//!   incarnation) -> `Unreachable`
//!   too: retrying at full speed cannot help, and the reason is logged;
//! - the peer's Raft answered with an error -> `RemoteError`;
//! - anything else (5xx, an undecodable answer) -> `NetworkError`.

pub mod early;
mod faults;

use std::sync::Arc;
use std::time::Duration;

use common::http::{HttpClient, HttpError, CONTENT_BINCODE};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use early::EarlyReplication;
pub use faults::LinkFaults;

use crate::store::ClusterIdentity;
use crate::{Node, NodeId, TypeConfig};

/// Header carrying the sender's cluster id on every Raft RPC.
pub const CLUSTER_HEADER: &str = "x-rm-cluster";
/// Header carrying the sender's own incarnation (hex).
pub const INCARNATION_HEADER: &str = "x-rm-incarnation";
/// Header carrying the incarnation the sender's membership records for the
/// receiver (hex); absent when it records none.
pub const TO_INCARNATION_HEADER: &str = "x-rm-to-incarnation";

pub const APPEND_PATH: &str = "/raft/append";
pub const VOTE_PATH: &str = "/raft/vote";
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";

#[derive(Clone)]
pub struct NetworkFactory {
    http: HttpClient,
    identity: ClusterIdentity,
    faults: LinkFaults,
    /// What vote answers tell the election timer.
    elections: Arc<crate::election::Signals>,
}

impl NetworkFactory {
    pub fn new(
        http: HttpClient,
        identity: ClusterIdentity,
        faults: LinkFaults,
        elections: Arc<crate::election::Signals>,
    ) -> Self {
        Self {
            http,
            identity,
            elections,
            faults,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            factory: self.clone(),
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    node: Node,
    factory: NetworkFactory,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.factory.faults.is_cut(self.target) {
            let e = std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "link cut by fault injection",
            );
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let body =
            common::codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = self.factory.http.url(&self.node.addr, path);
        let cluster = self.factory.identity.cluster_id();
        let own = format!("{:016x}", self.factory.identity.incarnation());
        let to = self
            .node
            .recorded_incarnation()
            .map(|i| format!("{i:016x}"));
        let mut headers: Vec<(&str, &str)> = vec![(INCARNATION_HEADER, own.as_str())];
        if let Some(c) = cluster.as_deref() {
            headers.push((CLUSTER_HEADER, c));
        }
        if let Some(to) = to.as_deref() {
            headers.push((TO_INCARNATION_HEADER, to));
        }
        let answer = self
            .factory
            .http
            .post_bytes(&url, CONTENT_BINCODE, body, Some(timeout), &headers)
            .await;
        let bytes = match answer {
            Ok(bytes) => bytes,
            // A slow peer is not an unreachable one: openraft backs off
            // 500 ms after `Unreachable`, and a follower whose fsync is
            // slower than the heartbeat-long append timeout would then hear
            // nothing for that long and campaign.
            Err(e) if e.timed_out() => return Err(RPCError::Network(NetworkError::new(&e))),
            Err(e @ HttpError::Unreachable { .. }) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(
                e @ HttpError::Status {
                    status: 401 | 409, ..
                },
            ) => {
                tracing::warn!(target_node = self.target, error = %e, "peer refused Raft RPC");
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            common::codec::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(APPEND_PATH, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(SNAPSHOT_PATH, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let candidate_log = rpc.last_log_id;
        let answer: VoteResponse<NodeId> = self.call(VOTE_PATH, &rpc, option.hard_ttl()).await?;
        if !answer.vote_granted && answer.last_log_id > candidate_log {
            self.factory.elections.saw_greater_log();
        }
        Ok(answer)
    }
}
