//! The arbiter's QUIC server: mutual TLS (ALPN `truce/1`), one session per host bound to the
//! host in its client certificate, per-agent rate limits, market rounds per host, and
//! graceful shutdown. The wire format is `truce_common::wire`; docs/protocol.md has the rules.
//!
//! ```no_run
//! # async fn f(cfg: truce_arbiter::server::ServerConfig) -> Result<(), truce_arbiter::server::ServerError> {
//! use std::sync::Arc;
//! use truce_arbiter::server::{ProportionalResolver, Server};
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let server = Server::bind(cfg, Arc::new(ProportionalResolver::default()))?;
//! server.run(cancel).await;
//! # Ok(()) }
//! ```

pub mod certs;
mod config;
mod io;
mod leases;
mod metrics;
mod rate;
mod resolver;
mod round;
mod session;
mod state;
pub mod tls;

pub use config::ServerConfig;
pub use io::{FrameError, read_frame, write_frame};
pub use rate::TokenBucket;
pub use resolver::{HostCapacity, Leadership, MarketView, ProportionalResolver, RoundInput, RoundResolver};
pub use state::ServerStats;
pub use tokio_util::sync::CancellationToken;

use state::{Shared, bump};
use truce_common::wire;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS setup failed")]
    Tls {
        #[source]
        source: tls::TlsError,
    },
    #[error("invalid transport setting {setting}")]
    Transport { setting: &'static str },
    #[error("failed to bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct Server {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
}

impl Server {
    /// Load the TLS material, bind the UDP socket and get ready to accept (call [`Server::run`]).
    pub fn bind(config: ServerConfig, resolver: Arc<dyn RoundResolver>) -> Result<Server, ServerError> {
        let crypto = tls::server_crypto(&config.tls).map_err(|source| ServerError::Tls { source })?;
        let mut transport = quinn::TransportConfig::default();
        let idle = quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|_| ServerError::Transport { setting: "idle_timeout" })?;
        transport.max_idle_timeout(Some(idle));
        transport.keep_alive_interval(Some(config.keep_alive));
        // One control stream per agent; refuse extra streams rather than buffer them.
        transport.max_concurrent_bidi_streams(1u32.into());
        transport.max_concurrent_uni_streams(0u32.into());
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(transport));
        let bound = wire::bind_endpoint_socket(config.listen, config.udp_buffer_bytes)
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        // Every agent's datagrams land in this one socket: a small buffer drops bursts.
        if bound.recv_buffer < config.udp_buffer_bytes {
            warn!(
                asked = config.udp_buffer_bytes,
                granted = bound.recv_buffer,
                "UDP receive buffer smaller than asked; raise net.core.rmem_max to avoid drops under bursts from many agents"
            );
        }
        let endpoint = wire::endpoint_on(bound.socket, Some(server_config))
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        Ok(Server { endpoint, shared: Arc::new(Shared::new(config, resolver)) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap_or(self.shared.config.listen)
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.shared.stats.clone()
    }

    /// The Prometheus registry to serve on `/metrics` (`truce_common::metrics::MetricsServer`).
    pub fn metrics_registry(&self) -> Arc<prometheus_client::registry::Registry> {
        self.shared.metrics.registry()
    }

    /// Carry a federation site's messages (`site` is its name) on the inspection stream, for
    /// `truce top`'s cluster view; the kind is opt-in (`InspectKind::Federation`).
    pub fn show_federation(&self, site: String, mut messages: tokio::sync::broadcast::Receiver<wire::FederationMessage>) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(message) => shared.publish_federation(wire::InspectEvent::Federation { site: site.clone(), at: state::now(), message: Box::new(message) }),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => warn!(skipped = n, "federation messages skipped on the inspection stream"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Accept agents until `cancel`, then stop accepting, tell every session to close
    /// (`shutting_down`), wait for them and for the endpoint to drain.
    pub async fn run(self, cancel: CancellationToken) {
        let tracker = TaskTracker::new();
        let max = self.shared.config.max_connections;
        info!(addr = %self.local_addr(), max_connections = max, "arbiter listening");
        loop {
            let incoming = tokio::select! {
                _ = cancel.cancelled() => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break,
                },
            };
            // Counted per live task, so handshakes in flight count against the limit too.
            if tracker.len() >= max {
                bump(&self.shared.stats.connections_refused);
                warn!(peer = %incoming.remote_address(), limit = max, "connection limit reached; refused");
                incoming.refuse();
                continue;
            }
            bump(&self.shared.stats.connections_accepted);
            tracker.spawn(session::serve_connection(incoming, self.shared.clone(), cancel.clone()));
        }
        info!(sessions = self.shared.stats.sessions_active.load(Ordering::Relaxed), "shutting down: draining sessions");
        tracker.close();
        tracker.wait().await;
        self.endpoint.close(quinn::VarInt::from_u32(u32::from(truce_common::wire::ErrorCode::SHUTTING_DOWN.0)), b"arbiter shutting down");
        if tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await.is_err() {
            warn!("endpoint did not drain within 3 s");
        }
        info!("arbiter stopped");
    }
}
