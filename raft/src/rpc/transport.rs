//! The quorum's RPC over TCP on glommio: each request is one frame ([`super::frame`])
//! carrying openraft's request as JSON; the answer is one `Response` frame with the
//! same correlation id carrying `Result<response, RaftError>` as JSON. One
//! connection per peer, one request at a time on it, reconnected after an error;
//! every call has openraft's deadline. A `Forward` frame carries a proposal to the
//! leader, answered once committed (see [`crate::quorum::node`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::frame::{self, Frame, Kind, HEADER_BYTES};
use crate::command::Command;
use crate::quorum::TypeConfig;

type C = TypeConfig;

/// Largest frame a peer may send (a snapshot chunk fits).
pub const FRAME_LIMIT: u32 = 64 << 20;

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Frame> {
    let mut buf = vec![0u8; HEADER_BYTES];
    s.read_exact(&mut buf).await?;
    // The header alone says whether the frame is acceptable.
    let bad = |e: frame::FrameError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    if let Err(e) = frame::decode(&buf, FRAME_LIMIT) {
        return Err(bad(e));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&buf[12..16]);
    let len = u64::from(u32::from_le_bytes(len));
    // Memory grows with the bytes that arrive, not with what the header claims.
    let got = s.take(len).read_to_end(&mut buf).await?;
    if got as u64 != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
    }
    match frame::decode(&buf, FRAME_LIMIT) {
        Ok(Some((f, _))) => Ok(f),
        Ok(None) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        Err(e) => Err(bad(e)),
    }
}

/// A connection to one peer.
pub(crate) struct Peer {
    addr: String,
    conn: futures::lock::Mutex<Option<TcpStream>>,
    next_id: Cell<u64>,
}

impl Peer {
    pub(crate) fn new(addr: &str) -> Peer {
        Peer {
            addr: addr.to_string(),
            conn: futures::lock::Mutex::new(None),
            next_id: Cell::new(0),
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) async fn call(
        &self,
        kind: Kind,
        payload: Vec<u8>,
        ttl: Duration,
    ) -> std::io::Result<Vec<u8>> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut conn = self.conn.lock().await;
        let exchange = async {
            if conn.is_none() {
                let s = TcpStream::connect_timeout(self.addr.as_str(), ttl)
                    .await
                    .map_err(std::io::Error::from)?;
                s.set_nodelay(true).map_err(std::io::Error::from)?;
                *conn = Some(s);
            }
            let s = conn
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no connection"))?;
            s.write_all(&Frame { kind, id, payload }.encode()).await?;
            let answer = read_frame(s).await?;
            if answer.id != id || answer.kind != Kind::Response {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("answer {:?} {} to request {id}", answer.kind, answer.id),
                ));
            }
            Ok(answer.payload)
        };
        let r = glommio::timer::timeout(ttl, async { exchange.await.map_err(Into::into) })
            .await
            .map_err(std::io::Error::from);
        if r.is_err() {
            // Its state is unknown: the next call connects again.
            *conn = None;
        }
        r
    }
}

/// The network factory: one [`Peer`] per node id, shared by the clients openraft
/// asks for.
#[derive(Default, Clone)]
pub struct Network {
    peers: Rc<std::cell::RefCell<HashMap<u64, Rc<Peer>>>>,
}

/// The client for one target.
pub struct PeerClient {
    target: u64,
    peer: Rc<Peer>,
}

impl RaftNetworkFactory<C> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let mut peers = self.peers.borrow_mut();
        let peer = peers
            .entry(target)
            .and_modify(|p| {
                if p.addr != node.addr {
                    *p = Rc::new(Peer::new(&node.addr));
                }
            })
            .or_insert_with(|| Rc::new(Peer::new(&node.addr)))
            .clone();
        PeerClient { target, peer }
    }
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        kind: Kind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, E>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |e: &dyn std::error::Error| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.to_string())))
        };
        let payload = serde_json::to_vec(req).map_err(|e| unreachable(&e))?;
        let answer = self
            .peer
            .call(kind, payload, option.hard_ttl())
            .await
            .map_err(|e| unreachable(&e))?;
        let r: Result<Resp, E> = serde_json::from_slice(&answer).map_err(|e| unreachable(&e))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<C> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(Kind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(Kind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(Kind::Vote, &rpc, &option).await
    }
}

/// Peer connections answered at once; more are closed as they arrive (a quorum has
/// a handful of peers, each with one connection).
pub const CONNECTIONS_MAX: usize = 64;

/// When each broker was last heard from (its heartbeats), as the controller
/// needs it to fence brokers that missed their session.
#[derive(Debug, Default)]
pub struct Sessions {
    seen: std::cell::RefCell<HashMap<i32, (u64, std::time::Instant)>>,
}

/// A broker's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Heartbeat {
    pub id: i32,
    pub incarnation: u64,
}

impl Sessions {
    pub fn beat(&self, hb: Heartbeat) {
        self.seen
            .borrow_mut()
            .insert(hb.id, (hb.incarnation, std::time::Instant::now()));
    }

    /// When broker `id` was last heard from as `incarnation`.
    pub fn last(&self, id: i32, incarnation: u64) -> Option<std::time::Instant> {
        self.seen
            .borrow()
            .get(&id)
            .filter(|(i, _)| *i == incarnation)
            .map(|(_, t)| *t)
    }
}

/// What `serve` answers besides Raft's own requests.
#[derive(Default)]
pub struct Served {
    pub sessions: Rc<Sessions>,
    /// The quorum as this node sees it, for `Status` requests.
    pub status: Option<Box<dyn Fn() -> Vec<u8>>>,
}

/// Answers peers on `listener` with `raft` until the listener fails.
pub async fn serve(listener: TcpListener, raft: Raft<C>, served: Rc<Served>) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let Ok(stream) = listener.accept().await else {
            return;
        };
        if open.get() >= CONNECTIONS_MAX {
            tracing::warn!(
                limit = CONNECTIONS_MAX,
                "refusing a peer connection: too many open"
            );
            continue;
        }
        open.set(open.get() + 1);
        let (raft, open, served) = (raft.clone(), open.clone(), served.clone());
        glommio::spawn_local(async move {
            if let Err(e) = answer(stream, &raft, &served).await {
                tracing::debug!(error = %e, "a peer connection ended");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

fn to_json<T: Serialize>(v: &T) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(std::io::Error::other)
}

fn from_json<T: DeserializeOwned>(b: &[u8]) -> std::io::Result<T> {
    serde_json::from_slice(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

async fn answer(mut s: TcpStream, raft: &Raft<C>, served: &Served) -> std::io::Result<()> {
    loop {
        let req = read_frame(&mut s).await?;
        let payload = match req.kind {
            Kind::Vote => to_json(&raft.vote(from_json(&req.payload)?).await)?,
            Kind::Append => to_json(&raft.append_entries(from_json(&req.payload)?).await)?,
            Kind::Snapshot => to_json(&raft.install_snapshot(from_json(&req.payload)?).await)?,
            // A proposal from a node that is not the leader: committed here if this
            // node leads, else refused with where the leader is.
            Kind::Forward => {
                let cmd: Command = from_json(&req.payload)?;
                to_json(&raft.client_write(cmd).await.map(|w| w.data))?
            }
            Kind::Heartbeat => {
                served.sessions.beat(from_json(&req.payload)?);
                to_json(&())?
            }
            Kind::Membership => {
                let change = from_json(&req.payload)?;
                to_json(&crate::quorum::node::change_here(raft, &change).await)?
            }
            Kind::Status => match &served.status {
                Some(status) => status(),
                None => to_json(&Option::<()>::None)?,
            },
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a {other:?} frame is not a request this node answers"),
                ))
            }
        };
        let answer = Frame {
            kind: Kind::Response,
            id: req.id,
            payload,
        };
        s.write_all(&answer.encode()).await?;
    }
}
