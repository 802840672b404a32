//! QUIC between arbiter peers (replicas of one site, or sites of a federation): mutual TLS
//! with the agents' CA, a protocol-specific ALPN, and *peer certificates* (`truce-arbiter
//! certs peer`: one DNS name, both serverAuth and clientAuth). A host certificate (clientAuth
//! only) is refused, so an agent cannot speak raft or vote. The peer's name is its DNS SAN
//! and must be one of the configured peers.
//!
//! Two patterns: [`PeerEndpoint::send`] queues a message on one long-lived unidirectional
//! stream per peer (ordered, fire-and-forget), and [`PeerEndpoint::request`] opens a
//! bidirectional stream for one request and its reply.
//!
//! A peer may be reachable at several addresses ([`PeerAddrs`]: a replicated site answers at
//! its leader's). With [`PeerEndpoint::follow_inbound`], the connection a peer opened last is
//! where this endpoint sends to it: a site's new leader announces itself by speaking.

mod addrs;
mod streams;
mod tls;
pub use addrs::PeerAddrs;
pub use tls::{PeerTls, peer_name};

use crate::server::tls::TlsError;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use tls::quic_configs;
#[cfg(feature = "partition-drill")]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use truce_common::wire::{FrameError, Message, read_frame, write_frame};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("TLS setup failed")]
    Tls {
        #[source]
        source: TlsError,
    },
    #[error("TLS setup failed")]
    Rustls {
        #[source]
        source: rustls::Error,
    },
    #[error("failed to bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{peer} is not a configured peer")]
    UnknownPeer { peer: String },
    #[error("cannot connect to {peer}")]
    Connect {
        peer: String,
        #[source]
        source: quinn::ConnectError,
    },
    #[error("connection to {peer} failed")]
    Connection {
        peer: String,
        #[source]
        source: quinn::ConnectionError,
    },
    #[error("exchange with {peer} failed")]
    Frame {
        peer: String,
        #[source]
        source: FrameError,
    },
    #[cfg(feature = "partition-drill")]
    #[error("this endpoint is cut off from its peers (partition drill)")]
    CutOff,
    #[error("{peer} did not answer within {timeout:?}")]
    Timeout { peer: String, timeout: Duration },
    #[error("{peer} at {addr} did not answer the handshake within {timeout:?}")]
    Unreachable { peer: String, addr: SocketAddr, timeout: Duration },
}

/// How long one dial may take before the next address is tried. QUIC learns nothing from an
/// unanswered UDP port, so without it a dead replica's address would hold a peer until the
/// idle timeout (10 s); a handshake takes a few round trips. The last address gets the
/// caller's own time (a request's timeout), as a peer with one address always did.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// A message that arrived, with the authenticated peer name.
pub enum Inbound {
    OneWay { from: String, msg: Message },
    /// Answer on `reply` (one frame).
    Request { from: String, msg: Message, reply: quinn::SendStream },
}

pub struct PeerEndpoint {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    peers: RwLock<BTreeMap<String, PeerAddrs>>,
    conns: Mutex<HashMap<String, quinn::Connection>>,
    queues: Mutex<HashMap<String, mpsc::Sender<Message>>>,
    max_frame: u32,
    /// Where what peers send goes, and until when (set by [`PeerEndpoint::accept`]): streams
    /// a peer opens on a connection this endpoint dialled are served too, once inbound
    /// connections are adopted.
    inbound: Mutex<Option<(mpsc::Sender<Inbound>, CancellationToken)>>,
    /// Adopt a peer's newest inbound connection as the way to it ([`PeerEndpoint::follow_inbound`]).
    adopt_inbound: std::sync::atomic::AtomicBool,
    /// Drop all traffic to and from peers (a network partition, for tests and drills; only
    /// with the `partition-drill` feature, which production builds leave out).
    #[cfg(feature = "partition-drill")]
    cut_off: AtomicBool,
}

impl std::fmt::Debug for PeerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerEndpoint").field("addr", &self.endpoint.local_addr().ok()).finish()
    }
}

// A panic while a lock was held leaves plain data (queues, addresses), still usable: the
// locks below take it back instead of poisoning every later call.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl PeerEndpoint {
    pub fn bind(listen: SocketAddr, tls: &PeerTls, alpn: &[u8], peers: BTreeMap<String, SocketAddr>) -> Result<Arc<PeerEndpoint>, PeerError> {
        PeerEndpoint::bind_reaching(listen, tls, alpn, peers.into_iter().map(|(n, a)| (n, PeerAddrs::one(a))).collect())
    }

    /// [`PeerEndpoint::bind`], with every address each peer may answer at.
    pub fn bind_reaching(listen: SocketAddr, tls: &PeerTls, alpn: &[u8], peers: BTreeMap<String, PeerAddrs>) -> Result<Arc<PeerEndpoint>, PeerError> {
        let (server_cfg, client_cfg) = quic_configs(tls, alpn)?;
        let mut endpoint = quinn::Endpoint::server(server_cfg, listen).map_err(|source| PeerError::Bind { addr: listen, source })?;
        endpoint.set_default_client_config(client_cfg.clone());
        Ok(Arc::new(PeerEndpoint {
            endpoint,
            client: client_cfg,
            peers: RwLock::new(peers),
            conns: Mutex::default(),
            queues: Mutex::default(),
            max_frame: truce_common::wire::MAX_FRAME_BYTES,
            inbound: Mutex::default(),
            adopt_inbound: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "partition-drill")]
            cut_off: AtomicBool::new(false),
        }))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Add or move a peer (membership changes).
    pub fn set_peer(&self, name: String, addr: SocketAddr) {
        let mut peers = write(&self.peers);
        if peers.get(&name).map(PeerAddrs::addrs) != Some(&[addr][..]) {
            peers.insert(name.clone(), PeerAddrs::one(addr));
            lock(&self.conns).remove(&name);
        }
    }

    /// From now on, a peer's newest authenticated inbound connection replaces the way this
    /// endpoint sends to it, and streams the peer opens on connections dialled from here are
    /// served. For federation: a replicated site's new leader dials its peers to publish its
    /// status, and their votes then reach it, not the dead leader's connection (which would
    /// swallow them until the idle timeout).
    pub fn follow_inbound(&self) {
        self.adopt_inbound.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn adopts_inbound(&self) -> bool {
        self.adopt_inbound.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn is_peer(&self, peer: &str) -> bool {
        read(&self.peers).contains_key(peer)
    }

    fn dial_order(&self, peer: &str) -> Result<Vec<SocketAddr>, PeerError> {
        let peers = read(&self.peers);
        peers.get(peer).map(PeerAddrs::dial_order).ok_or_else(|| PeerError::UnknownPeer { peer: peer.to_string() })
    }

    /// The live connection to `peer`, or a new one: its addresses are dialled in turn
    /// ([`PeerAddrs::dial_order`]), each but the last for at most [`CONNECT_TIMEOUT`].
    async fn connection(self: &Arc<Self>, peer: &str) -> Result<quinn::Connection, PeerError> {
        if let Some(c) = self.live_connection(peer) {
            return Ok(c);
        }
        let mut last = None;
        let order = self.dial_order(peer)?;
        let n = order.len();
        for (i, addr) in order.into_iter().enumerate() {
            let limit = (i + 1 < n).then_some(CONNECT_TIMEOUT);
            match self.dial(peer, addr, limit).await {
                Ok(conn) => {
                    if let Some(p) = write(&self.peers).get_mut(peer) {
                        p.answered(addr);
                    }
                    lock(&self.conns).insert(peer.to_string(), conn.clone());
                    self.serve_dialled(&conn, peer);
                    return Ok(conn);
                }
                Err(e) => {
                    debug!(peer, %addr, cause = %e, "peer address did not answer");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| PeerError::UnknownPeer { peer: peer.to_string() }))
    }

    fn live_connection(&self, peer: &str) -> Option<quinn::Connection> {
        lock(&self.conns).get(peer).filter(|c| c.close_reason().is_none()).cloned()
    }

    /// Drop the connection `id` to `peer` if it is still the one in use (a newer one may have
    /// been adopted meanwhile).
    fn forget_connection(&self, peer: &str, id: usize) {
        let mut conns = lock(&self.conns);
        if conns.get(peer).is_some_and(|c| c.stable_id() == id) {
            conns.remove(peer);
        }
    }

    async fn dial(&self, peer: &str, addr: SocketAddr, limit: Option<Duration>) -> Result<quinn::Connection, PeerError> {
        let connecting = self.endpoint.connect_with(self.client.clone(), addr, peer).map_err(|source| PeerError::Connect { peer: peer.to_string(), source })?;
        let connected = |c: Result<quinn::Connection, quinn::ConnectionError>| c.map_err(|source| PeerError::Connection { peer: peer.to_string(), source });
        let Some(limit) = limit else { return connected(connecting.await) };
        match tokio::time::timeout(limit, connecting).await {
            Ok(conn) => connected(conn),
            Err(_) => Err(PeerError::Unreachable { peer: peer.to_string(), addr, timeout: limit }),
        }
    }

    /// Serve what `peer` sends on a connection dialled from here (when inbound connections
    /// are adopted, the peer may send on it too).
    fn serve_dialled(self: &Arc<Self>, conn: &quinn::Connection, peer: &str) {
        if !self.adopts_inbound() {
            return;
        }
        if let Some((tx, cancel)) = lock(&self.inbound).clone() {
            tokio::spawn(self.clone().serve(conn.clone(), peer.to_string(), tx, cancel));
        }
    }

    /// Queue `msg` for `peer` (in order; dropped with a log line while the peer is unreachable
    /// and the queue is full).
    pub fn send(self: &Arc<Self>, peer: &str, msg: Message) {
        let mut queues = lock(&self.queues);
        let tx = queues.entry(peer.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(streams::sender(self.clone(), peer.to_string(), rx));
            tx
        });
        if let Err(e) = tx.try_send(msg) {
            warn!(peer, cause = %e, "peer queue full or closed; message dropped");
        }
    }

    /// Drop everything sent and received from now on (`true`) or resume (`false`): what a
    /// network partition does to this endpoint, without touching the host's network. For the
    /// partition tests (cluster_partition, cluster_jepsen): only with the `partition-drill`
    /// feature, so no production build carries a switch that silences a replica.
    #[cfg(feature = "partition-drill")]
    pub fn cut_off(&self, on: bool) {
        self.cut_off.store(on, Ordering::Relaxed);
        if on {
            lock(&self.conns).clear();
        }
    }

    #[cfg(feature = "partition-drill")]
    pub fn is_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::Relaxed)
    }

    /// Without the drill nothing is ever cut off.
    #[cfg(not(feature = "partition-drill"))]
    pub fn is_cut_off(&self) -> bool {
        false
    }

    /// One request, one reply, bounded by `timeout`.
    pub async fn request(self: &Arc<Self>, peer: &str, msg: &Message, timeout: Duration) -> Result<Message, PeerError> {
        #[cfg(feature = "partition-drill")]
        if self.is_cut_off() {
            // As a partition would: nothing comes back before the timeout.
            tokio::time::sleep(timeout).await;
            return Err(PeerError::CutOff);
        }
        let exchange = async {
            let conn = self.connection(peer).await?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|source| {
                self.forget_connection(peer, conn.stable_id());
                PeerError::Connection { peer: peer.to_string(), source }
            })?;
            let frame_err = |source| PeerError::Frame { peer: peer.to_string(), source };
            write_frame(&mut send, msg, self.max_frame).await.map_err(frame_err)?;
            let _ = send.finish();
            read_frame(&mut recv, self.max_frame).await.map_err(frame_err)
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| PeerError::Timeout { peer: peer.to_string(), timeout })?
    }

    /// Accept peers until `cancel`, delivering what they send to `tx`.
    ///
    /// Where inbound messages go is set at the call, not when the task first runs, so a
    /// connection dialled right after is served too.
    pub fn accept(self: Arc<Self>, tx: mpsc::Sender<Inbound>, cancel: CancellationToken) -> impl std::future::Future<Output = ()> + Send {
        *lock(&self.inbound) = Some((tx.clone(), cancel.clone()));
        self.accept_until_cancelled(tx, cancel)
    }

    async fn accept_until_cancelled(self: Arc<Self>, tx: mpsc::Sender<Inbound>, cancel: CancellationToken) {
        loop {
            let incoming = tokio::select! {
                _ = cancel.cancelled() => break,
                i = self.endpoint.accept() => match i { Some(i) => i, None => break },
            };
            let (me, tx, cancel) = (self.clone(), tx.clone(), cancel.clone());
            tokio::spawn(async move {
                let peer = incoming.remote_address();
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(cause) => return debug!(%peer, %cause, "peer handshake failed"),
                };
                let name = match peer_name(&conn) {
                    Ok(n) if me.is_peer(&n) => n,
                    Ok(n) => {
                        warn!(%peer, name = %n, "refused: not a configured peer");
                        return conn.close(1u32.into(), b"not a configured peer");
                    }
                    Err(reason) => {
                        warn!(%peer, %reason, "refused: not a peer certificate");
                        return conn.close(1u32.into(), reason.as_bytes());
                    }
                };
                if me.adopts_inbound() {
                    debug!(%peer, name = %name, "peer connected; sending to it on this connection from now on");
                    lock(&me.conns).insert(name.clone(), conn.clone());
                }
                me.serve(conn, name, tx, cancel).await;
            });
        }
        self.endpoint.close(0u32.into(), b"bye");
    }

    /// Answer a request.
    pub async fn reply(mut stream: quinn::SendStream, msg: &Message) {
        if let Err(e) = write_frame(&mut stream, msg, truce_common::wire::MAX_FRAME_BYTES).await {
            debug!(cause = %e, "reply not delivered");
        }
        let _ = stream.finish();
    }

    /// Close every connection and end the per-peer senders, so the socket is released once
    /// the tasks holding this endpoint end (a site's leader may bind it again later).
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"bye");
        lock(&self.queues).clear();
        lock(&self.conns).clear();
        *lock(&self.inbound) = None;
    }
}
