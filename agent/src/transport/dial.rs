//! Opening a connection and its control stream. [`ArbiterClient`](super::ArbiterClient) is
//! built on this; tests and diagnostics use [`RawSession`] to speak the protocol by hand.

use super::config::{ArbiterEndpoint, ClientConfig};
use super::io::{FrameError, read_frame, write_frame};
use super::tls::{TlsError, client_crypto};
use std::net::SocketAddr;
use std::sync::Arc;
use truce_common::wire::{ErrorCode, Hello, Message, Welcome};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("no arbiter endpoints configured")]
    NoEndpoints,
    #[error("TLS setup failed")]
    Tls {
        #[source]
        source: TlsError,
    },
    #[error("failed to bind a UDP socket")]
    Bind {
        #[source]
        source: std::io::Error,
    },
    #[error("invalid transport setting {setting}")]
    Setting { setting: &'static str },
    #[error("cannot connect to {endpoint}")]
    Connect {
        endpoint: SocketAddr,
        #[source]
        source: quinn::ConnectError,
    },
    #[error("connection to {endpoint} failed")]
    Connection {
        endpoint: SocketAddr,
        #[source]
        source: quinn::ConnectionError,
    },
    #[error("{endpoint} did not answer in time ({what})")]
    Timeout { endpoint: SocketAddr, what: &'static str },
    #[error("bad exchange with {endpoint}")]
    Frame {
        endpoint: SocketAddr,
        #[source]
        source: FrameError,
    },
    #[error("{endpoint} speaks protocol versions {supported_min}..={supported_max} only")]
    UnsupportedVersion { endpoint: SocketAddr, supported_min: u16, supported_max: u16 },
    #[error("{endpoint} refused the session: {code}: {message}")]
    Refused { endpoint: SocketAddr, code: ErrorCode, message: String },
    #[error("{endpoint} is not the leader of its arbiter group ({reason}); leader: {}", leader.as_deref().unwrap_or("unknown"))]
    Redirected { endpoint: SocketAddr, leader: Option<String>, reason: String },
    #[error("{endpoint} answered hello with {got}")]
    Unexpected { endpoint: SocketAddr, got: &'static str },
}

/// A QUIC client endpoint with the host's TLS identity.
pub struct Dialer {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    config: ClientConfig,
}

impl Dialer {
    /// A dialer with its own UDP socket.
    pub fn new(config: &ClientConfig) -> Result<Dialer, TransportError> {
        let any: SocketAddr = match config.endpoints.first().map(|e| e.addr) {
            Some(SocketAddr::V6(_)) => "[::]:0".parse().map_err(|_| TransportError::Setting { setting: "bind" })?,
            _ => "0.0.0.0:0".parse().map_err(|_| TransportError::Setting { setting: "bind" })?,
        };
        let endpoint = quinn::Endpoint::client(any).map_err(|source| TransportError::Bind { source })?;
        Dialer::on_endpoint(config, endpoint)
    }

    /// A dialer sharing `endpoint` (one UDP socket) with others; each connection still has
    /// its own TLS identity. For simulating many hosts in one process.
    pub fn on_endpoint(config: &ClientConfig, endpoint: quinn::Endpoint) -> Result<Dialer, TransportError> {
        let crypto = client_crypto(&config.ca_cert, &config.cert, &config.key).map_err(|source| TransportError::Tls { source })?;
        let mut transport = quinn::TransportConfig::default();
        let idle = quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|_| TransportError::Setting { setting: "idle_timeout" })?;
        transport.max_idle_timeout(Some(idle));
        transport.keep_alive_interval(Some(config.keep_alive));
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(Arc::new(transport));
        Ok(Dialer { endpoint, client, config: config.clone() })
    }

    /// Connect and open the control stream (TLS verified both ways).
    pub async fn open(&self, ep: &ArbiterEndpoint) -> Result<RawSession, TransportError> {
        let endpoint = ep.addr;
        let connecting = self.endpoint.connect_with(self.client.clone(), ep.addr, &ep.server_name).map_err(|source| TransportError::Connect { endpoint, source })?;
        let conn = connecting.await.map_err(|source| TransportError::Connection { endpoint, source })?;
        let (send, recv) = conn.open_bi().await.map_err(|source| TransportError::Connection { endpoint, source })?;
        Ok(RawSession { endpoint, conn, send, recv, max: self.config.max_frame_bytes })
    }

    /// Open and say `Hello` with the configured host and versions.
    pub async fn handshake(&self, ep: &ArbiterEndpoint) -> Result<(RawSession, Welcome), TransportError> {
        let mut raw = self.open(ep).await?;
        let (min, max) = self.config.versions;
        let hello = Hello { min, max, host: self.config.host.clone(), capabilities: self.config.capabilities.clone() };
        raw.send(&Message::Hello(hello)).await?;
        let endpoint = raw.endpoint;
        match raw.recv().await? {
            Message::Welcome(w) => Ok((raw, w)),
            Message::UnsupportedVersion(u) => {
                Err(TransportError::UnsupportedVersion { endpoint, supported_min: u.supported_min, supported_max: u.supported_max })
            }
            Message::Error(e) => Err(TransportError::Refused { endpoint, code: e.code, message: e.message }),
            Message::Redirect(r) => Err(TransportError::Redirected { endpoint, leader: r.leader, reason: r.reason }),
            other => Err(TransportError::Unexpected { endpoint, got: other.name() }),
        }
    }

    /// Wait (bounded) until every connection of this endpoint has closed, so the peer
    /// sees our close frames.
    pub async fn wait_idle(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.endpoint.wait_idle()).await;
    }
}

/// One connection's control stream, spoken frame by frame.
pub struct RawSession {
    pub endpoint: SocketAddr,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    max: u32,
}

impl RawSession {
    pub async fn send(&mut self, msg: &Message) -> Result<(), TransportError> {
        write_frame(&mut self.send, msg, self.max).await.map_err(|source| TransportError::Frame { endpoint: self.endpoint, source })
    }

    /// Write bytes as they are: for tests that must send what no encoder would.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let endpoint = self.endpoint;
        self.send.write_all(bytes).await.map_err(|source| TransportError::Frame { endpoint, source: FrameError::Write { source } })
    }

    pub async fn recv(&mut self) -> Result<Message, TransportError> {
        read_frame(&mut self.recv, self.max).await.map_err(|source| TransportError::Frame { endpoint: self.endpoint, source })
    }

    /// Finish our side and close with code 0 once the arbiter has seen the end (bounded wait).
    pub async fn close_cleanly(mut self, linger: std::time::Duration) {
        let _ = self.send.finish();
        let _ = tokio::time::timeout(linger, self.conn.closed()).await;
        self.conn.close(0u32.into(), b"bye");
    }

    /// How the arbiter closed the connection: its application code and reason, if it did.
    pub async fn closed_by_peer(&self) -> Option<(u64, String)> {
        match self.conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => Some((c.error_code.into_inner(), String::from_utf8_lossy(&c.reason).into_owned())),
            _ => None,
        }
    }
}
