//! The server's validated settings (the TOML file maps onto this in `crate::config`).

use super::tls::TlsFiles;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: TlsFiles,
    /// Connections beyond this are refused at the QUIC layer before any TLS work.
    pub max_connections: usize,
    /// A connection silent for this long is closed (keep-alives count as traffic).
    pub idle_timeout: Duration,
    pub keep_alive: Duration,
    /// Time an agent has to open its stream and send `Hello`.
    pub handshake_timeout: Duration,
    /// Shortest time between two rounds of one host. A round runs only when bids wait: at
    /// once after a quiet spell, otherwise one period after the previous round.
    pub round_period: Duration,
    pub max_frame_bytes: u32,
    /// Per-agent token bucket on inbound messages. When it is empty the arbiter stops
    /// reading that agent's stream, so QUIC flow control pushes back on that agent alone.
    pub agent_rate_per_s: u32,
    pub agent_burst: u32,
    /// Bids held for one host's next round; more are refused with `rate_limited`.
    pub max_pending_bids: usize,
    /// Frames queued to one agent; an agent that lets this overflow is disconnected.
    pub outbound_queue: usize,
    /// Decisions per `Decisions` frame (a round's outcome is split to stay under the frame limit).
    pub decisions_per_frame: usize,
    /// Distinct workload ids one host may name in a session. Each named id is remembered for
    /// the session's life, so without a bound a hostile host could grow that set without end.
    pub max_workloads_per_host: usize,
    /// Kernel receive/send buffer asked for the UDP socket every agent shares (capped by
    /// `net.core.rmem_max`/`wmem_max`; a smaller grant is logged).
    pub udp_buffer_bytes: usize,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, tls: TlsFiles) -> ServerConfig {
        ServerConfig {
            listen,
            tls,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(3),
            keep_alive: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(10),
            round_period: Duration::from_secs(1),
            max_frame_bytes: truce_common::wire::MAX_FRAME_BYTES,
            agent_rate_per_s: 2_000,
            agent_burst: 4_000,
            max_pending_bids: 4_096,
            outbound_queue: 1_024,
            decisions_per_frame: 512,
            max_workloads_per_host: 16_384,
            udp_buffer_bytes: truce_common::wire::UDP_BUFFER_BYTES,
        }
    }
}
