//! The client's settings: where the arbiters are, who we are, how patiently to retry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use truce_common::model::HostId;

/// One arbiter replica: its address and the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbiterEndpoint {
    pub addr: SocketAddr,
    pub server_name: String,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Tried in order; on failure the client moves to the next one.
    pub endpoints: Vec<ArbiterEndpoint>,
    /// The host we claim in `Hello`; must match our certificate's DNS name.
    pub host: HostId,
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub capabilities: Vec<String>,
    /// Versions offered in `Hello` (the build's range unless testing).
    pub versions: (u16, u16),
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub keep_alive: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Messages held while disconnected or slow; beyond this the oldest is dropped.
    pub outbox_capacity: usize,
    /// Inbound messages not yet taken by the caller.
    pub inbound_capacity: usize,
    pub max_frame_bytes: u32,
}

impl ClientConfig {
    /// Defaults for a host whose certificate was minted by `truce-arbiter certs issue`
    /// into `dir/hosts/<host>.{pem,key}` next to `dir/ca.pem`.
    pub fn new(host: HostId, certs_dir: &std::path::Path, endpoints: Vec<ArbiterEndpoint>) -> ClientConfig {
        ClientConfig {
            endpoints,
            ca_cert: certs_dir.join("ca.pem"),
            cert: certs_dir.join("hosts").join(format!("{host}.pem")),
            key: certs_dir.join("hosts").join(format!("{host}.key")),
            host,
            capabilities: Vec::new(),
            versions: (truce_common::wire::VERSION_MIN, truce_common::wire::VERSION_MAX),
            // The agent.toml defaults (`arbiter.connect_timeout`, `idle_timeout`, `keep_alive`):
            // a replica killed without a close is noticed after 1.5 s of silence.
            connect_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_millis(1500),
            keep_alive: Duration::from_millis(500),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            outbox_capacity: 4096,
            inbound_capacity: 1024,
            max_frame_bytes: truce_common::wire::MAX_FRAME_BYTES,
        }
    }
}
