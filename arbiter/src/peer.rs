//! QUIC between arbiter peers (replicas of one site, or sites of a federation): mutual TLS
//! with the agents' CA, a protocol-specific ALPN, and *peer certificates* (`truce-arbiter
//! certs peer`: one DNS name, both serverAuth and clientAuth). A host certificate (clientAuth
//! only) is refused, so an agent cannot speak raft or vote. The peer's name is its DNS SAN
//! and must be one of the configured peers.
//!
//! Two patterns: [`PeerEndpoint::send`] queues a message on one long-lived unidirectional
//! stream per peer (ordered, fire-and-forget), and [`PeerEndpoint::request`] opens a
//! bidirectional stream for one request and its reply.

use crate::server::tls::{TlsError, load_certs, load_key};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
#[cfg(feature = "partition-drill")]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use truce_common::wire::{FrameError, Message, read_frame, write_frame};

#[derive(Debug, Clone)]
pub struct PeerTls {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PeerTls {
    /// The layout `truce-arbiter certs peer --dir DIR --name NAME` writes.
    pub fn in_dir(dir: &std::path::Path, name: &str) -> PeerTls {
        let (cert, key) = crate::server::certs::peer_paths(dir, name);
        PeerTls { ca_cert: dir.join(crate::server::certs::CA_CERT), cert, key }
    }
}

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
}

/// A message that arrived, with the authenticated peer name.
pub enum Inbound {
    OneWay { from: String, msg: Message },
    /// Answer on `reply` (one frame).
    Request { from: String, msg: Message, reply: quinn::SendStream },
}

pub struct PeerEndpoint {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    peers: RwLock<BTreeMap<String, SocketAddr>>,
    conns: Mutex<HashMap<String, quinn::Connection>>,
    queues: Mutex<HashMap<String, mpsc::Sender<Message>>>,
    max_frame: u32,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeerEndpoint {
    pub fn bind(listen: SocketAddr, tls: &PeerTls, alpn: &[u8], peers: BTreeMap<String, SocketAddr>) -> Result<Arc<PeerEndpoint>, PeerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in load_certs(&tls.ca_cert).map_err(|source| PeerError::Tls { source })? {
            roots.add(ca).map_err(|source| PeerError::Rustls { source })?;
        }
        let roots = Arc::new(roots);
        let certs = load_certs(&tls.cert).map_err(|source| PeerError::Tls { source })?;
        let key = load_key(&tls.key).map_err(|source| PeerError::Tls { source })?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| PeerError::Rustls { source: rustls::Error::General(e.to_string()) })?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| PeerError::Rustls { source })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|source| PeerError::Rustls { source })?;
        server.alpn_protocols = vec![alpn.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| PeerError::Rustls { source })?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|source| PeerError::Rustls { source })?;
        client.alpn_protocols = vec![alpn.to_vec()];
        let quic_err = |e: quinn::crypto::rustls::NoInitialCipherSuite| PeerError::Rustls { source: rustls::Error::General(e.to_string()) };
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(2)));
        transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(10_000))));
        let transport = Arc::new(transport);
        let mut server_cfg = quinn::ServerConfig::with_crypto(Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(quic_err)?));
        server_cfg.transport_config(transport.clone());
        let mut client_cfg = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(quic_err)?));
        client_cfg.transport_config(transport);
        let mut endpoint = quinn::Endpoint::server(server_cfg, listen).map_err(|source| PeerError::Bind { addr: listen, source })?;
        endpoint.set_default_client_config(client_cfg.clone());
        Ok(Arc::new(PeerEndpoint {
            endpoint,
            client: client_cfg,
            peers: RwLock::new(peers),
            conns: Mutex::default(),
            queues: Mutex::default(),
            max_frame: truce_common::wire::MAX_FRAME_BYTES,
            #[cfg(feature = "partition-drill")]
            cut_off: AtomicBool::new(false),
        }))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Add or move a peer (membership changes).
    pub fn set_peer(&self, name: String, addr: SocketAddr) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        if peers.insert(name.clone(), addr) != Some(addr) {
            lock(&self.conns).remove(&name);
        }
    }

    fn addr_of(&self, peer: &str) -> Result<SocketAddr, PeerError> {
        let peers = self.peers.read().unwrap_or_else(|p| p.into_inner());
        peers.get(peer).copied().ok_or_else(|| PeerError::UnknownPeer { peer: peer.to_string() })
    }

    async fn connection(&self, peer: &str) -> Result<quinn::Connection, PeerError> {
        if let Some(c) = lock(&self.conns).get(peer).filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let addr = self.addr_of(peer)?;
        let connecting = self.endpoint.connect_with(self.client.clone(), addr, peer).map_err(|source| PeerError::Connect { peer: peer.to_string(), source })?;
        let conn = connecting.await.map_err(|source| PeerError::Connection { peer: peer.to_string(), source })?;
        lock(&self.conns).insert(peer.to_string(), conn.clone());
        Ok(conn)
    }

    /// Queue `msg` for `peer` (in order; dropped with a log line while the peer is unreachable
    /// and the queue is full).
    pub fn send(self: &Arc<Self>, peer: &str, msg: Message) {
        let mut queues = lock(&self.queues);
        let tx = queues.entry(peer.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(sender(self.clone(), peer.to_string(), rx));
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
    pub async fn request(&self, peer: &str, msg: &Message, timeout: Duration) -> Result<Message, PeerError> {
        #[cfg(feature = "partition-drill")]
        if self.is_cut_off() {
            // As a partition would: nothing comes back before the timeout.
            tokio::time::sleep(timeout).await;
            return Err(PeerError::CutOff);
        }
        let exchange = async {
            let conn = self.connection(peer).await?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|source| {
                lock(&self.conns).remove(peer);
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
    pub async fn accept(self: Arc<Self>, tx: mpsc::Sender<Inbound>, cancel: CancellationToken) {
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
                    Ok(n) if me.addr_of(&n).is_ok() => n,
                    Ok(n) => {
                        warn!(%peer, name = %n, "refused: not a configured peer");
                        return conn.close(1u32.into(), b"not a configured peer");
                    }
                    Err(reason) => {
                        warn!(%peer, %reason, "refused: not a peer certificate");
                        return conn.close(1u32.into(), reason.as_bytes());
                    }
                };
                me.serve(conn, name, tx, cancel).await;
            });
        }
        self.endpoint.close(0u32.into(), b"bye");
    }

    async fn serve(self: Arc<Self>, conn: quinn::Connection, from: String, tx: mpsc::Sender<Inbound>, cancel: CancellationToken) {
        let max = self.max_frame;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                uni = conn.accept_uni() => match uni {
                    Ok(mut recv) => {
                        let (tx, from, me) = (tx.clone(), from.clone(), self.clone());
                        tokio::spawn(async move {
                            loop {
                                match read_frame(&mut recv, max).await {
                                    Ok(_) if me.is_cut_off() => continue,
                                    Ok(msg) => if tx.send(Inbound::OneWay { from: from.clone(), msg }).await.is_err() { return },
                                    Err(FrameError::Finished) => return,
                                    Err(e) => return debug!(peer = %from, cause = %e, "peer stream ended"),
                                }
                            }
                        });
                    }
                    Err(_) => return,
                },
                bi = conn.accept_bi() => match bi {
                    Ok((reply, mut recv)) => {
                        let (tx, from, me) = (tx.clone(), from.clone(), self.clone());
                        tokio::spawn(async move {
                            match read_frame(&mut recv, max).await {
                                Ok(_) if me.is_cut_off() => drop(reply),
                                Ok(msg) => { let _ = tx.send(Inbound::Request { from, msg, reply }).await; }
                                Err(e) => debug!(peer = %from, cause = %e, "bad peer request"),
                            }
                        });
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// Answer a request.
    pub async fn reply(mut stream: quinn::SendStream, msg: &Message) {
        if let Err(e) = write_frame(&mut stream, msg, truce_common::wire::MAX_FRAME_BYTES).await {
            debug!(cause = %e, "reply not delivered");
        }
        let _ = stream.finish();
    }

    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"bye");
    }
}

/// One ordered stream per peer; reconnects (after a pause) when the peer goes away.
async fn sender(me: Arc<PeerEndpoint>, peer: String, mut rx: mpsc::Receiver<Message>) {
    let mut stream: Option<quinn::SendStream> = None;
    while let Some(msg) = rx.recv().await {
        if me.is_cut_off() {
            continue;
        }
        for attempt in 0..2 {
            if stream.is_none() {
                match me.connection(&peer).await {
                    Ok(conn) => match conn.open_uni().await {
                        Ok(s) => stream = Some(s),
                        Err(e) => {
                            lock(&me.conns).remove(&peer);
                            debug!(peer, cause = %e, "cannot open a stream to the peer");
                        }
                    },
                    Err(e) => debug!(peer, cause = %e, "peer unreachable"),
                }
            }
            let Some(s) = stream.as_mut() else { break };
            match write_frame(s, &msg, me.max_frame).await {
                Ok(()) => break,
                Err(e) => {
                    debug!(peer, attempt, cause = %e, "write to peer failed; reconnecting");
                    stream = None;
                    lock(&me.conns).remove(&peer);
                }
            }
        }
    }
}

/// The peer's name: the single DNS SAN of a certificate that carries both serverAuth and
/// clientAuth (a peer certificate; host certificates carry clientAuth only).
pub fn peer_name(conn: &quinn::Connection) -> Result<String, String> {
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("no certificate")?;
    let leaf = certs.first().ok_or("no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| e.to_string())?;
    let eku = cert.extended_key_usage().map_err(|e| e.to_string())?.ok_or("no extended key usage")?;
    if !(eku.value.server_auth && eku.value.client_auth) {
        return Err("a peer certificate needs both serverAuth and clientAuth".into());
    }
    crate::server::tls::host_of_certificate(leaf).map(|h| h.0).map_err(|e| e.to_string())
}
