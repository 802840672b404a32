//! The arbiter's configuration file (TOML) and its validation into a [`ServerConfig`].

use crate::server::tls::TlsFiles;
use crate::market::{CpuCut, HostDefaults, MarketConfig};
use crate::cluster::config::{ClusterConfigError, ClusterSection, ClusterSettings};
use crate::federation::section::{FederationConfigError, FederationSection, FederationSettings};
use crate::server::{HostCapacity, ServerConfig};
use std::collections::BTreeMap;
use truce_common::model::{Credits, Resource};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Printed by `truce-arbiter config --print-default`; parsing it gives [`FileConfig::default`].
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole default file: the main part above, the `[cluster]` and `[federation]` sections.
pub fn default_toml() -> String {
    format!("{DEFAULT_TOML}{}{}", crate::cluster::config::DEFAULT_SECTION, crate::federation::section::DEFAULT_SECTION)
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub listen: String,
    pub certs_dir: PathBuf,
    pub max_connections: usize,
    pub idle_timeout_ms: u64,
    pub keep_alive_ms: u64,
    pub handshake_timeout_ms: u64,
    pub round_period_ms: u64,
    pub max_frame_bytes: u32,
    pub agent_rate_per_s: u32,
    pub agent_burst: u32,
    pub max_pending_bids: usize,
    pub outbound_queue: usize,
    pub max_workloads_per_host: usize,
    pub udp_buffer_bytes: usize,
    pub state_dir: PathBuf,
    pub resolver: ResolverKind,
    pub metrics: MetricsSection,
    pub capacity: CapacityConfig,
    pub market: MarketSection,
    pub cluster: ClusterSection,
    pub federation: FederationSection,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    pub enabled: bool,
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { enabled: true, listen: "127.0.0.1:9448".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolverKind {
    Market,
    Proportional,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketSection {
    pub income_per_second: f64,
    pub floor_fraction: f64,
    pub default_lease_ms: u64,
    pub cpu_cut: CpuCutKind,
    pub usage_headroom: f64,
    pub lease_hysteresis: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuCutKind {
    Quota,
    Weight,
    Yield,
}

impl Default for MarketSection {
    fn default() -> Self {
        MarketSection { income_per_second: 1.0, floor_fraction: 0.25, default_lease_ms: 10_000, cpu_cut: CpuCutKind::Quota, usage_headroom: 0.25, lease_hysteresis: 0.05 }
    }
}

/// A validated configuration: everything `serve` needs, typed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerConfig,
    pub resolver: ResolverKind,
    pub capacity: HostCapacity,
    pub ledger_path: PathBuf,
    pub market: MarketConfig,
    pub defaults: HostDefaults,
    /// Where to serve `/metrics`; `None` when `metrics.enabled` is false.
    pub metrics: Option<SocketAddr>,
    /// This arbiter as a raft replica; `None` when `cluster.enabled` is false.
    pub cluster: Option<ClusterSettings>,
    /// This arbiter as a federation site; `None` when `federation.enabled` is false.
    pub federation: Option<FederationSettings>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub io_bps: u64,
    pub price: f64,
    pub min_lease_ms: u64,
    pub max_lease_ms: u64,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            listen: "0.0.0.0:7447".into(),
            certs_dir: PathBuf::from("/etc/truce/certs"),
            max_connections: 10_000,
            idle_timeout_ms: 3_000,
            keep_alive_ms: 1_000,
            handshake_timeout_ms: 10_000,
            round_period_ms: 1_000,
            max_frame_bytes: 1 << 20,
            agent_rate_per_s: 2_000,
            agent_burst: 4_000,
            max_pending_bids: 4_096,
            outbound_queue: 1_024,
            max_workloads_per_host: 16_384,
            udp_buffer_bytes: truce_common::wire::UDP_BUFFER_BYTES,
            state_dir: PathBuf::from("/var/lib/truce-arbiter"),
            resolver: ResolverKind::Market,
            metrics: MetricsSection::default(),
            capacity: CapacityConfig::default(),
            market: MarketSection::default(),
            cluster: ClusterSection::default(),
            federation: FederationSection::default(),
        }
    }
}

impl Default for CapacityConfig {
    fn default() -> Self {
        let c = HostCapacity::default();
        CapacityConfig {
            cpu_millicores: c.cpu_millicores,
            memory_bytes: c.memory_bytes,
            io_bps: c.io_bps,
            price: c.price,
            min_lease_ms: c.min_lease_ms,
            max_lease_ms: c.max_lease_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid arbiter configuration")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("`{key}` is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error(transparent)]
    Cluster(#[from] ClusterConfigError),
    #[error(transparent)]
    Federation(#[from] FederationConfigError),
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })
    }

    /// Check every field and produce the typed settings.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let invalid = |key, reason: &str| ConfigError::Invalid { key, reason: reason.to_string() };
        let listen: SocketAddr = self.listen.parse().map_err(|e: std::net::AddrParseError| invalid("listen", &e.to_string()))?;
        let positive = |key, v: u64| if v == 0 { Err(invalid(key, "must be greater than 0")) } else { Ok(v) };
        positive("max_connections", self.max_connections as u64)?;
        positive("round_period_ms", self.round_period_ms)?;
        positive("agent_rate_per_s", u64::from(self.agent_rate_per_s))?;
        positive("agent_burst", u64::from(self.agent_burst))?;
        positive("max_pending_bids", self.max_pending_bids as u64)?;
        positive("outbound_queue", self.outbound_queue as u64)?;
        positive("max_workloads_per_host", self.max_workloads_per_host as u64)?;
        if self.udp_buffer_bytes < 64 * 1024 {
            return Err(invalid("udp_buffer_bytes", "must be at least 65536 (the kernel's own minimum is about 208 KiB)"));
        }
        if self.keep_alive_ms == 0 || self.keep_alive_ms >= self.idle_timeout_ms {
            return Err(invalid("keep_alive_ms", "must be above 0 and below idle_timeout_ms, or idle connections are dropped"));
        }
        if self.max_frame_bytes < 1024 {
            return Err(invalid("max_frame_bytes", "must be at least 1024"));
        }
        let c = &self.capacity;
        if c.min_lease_ms == 0 || c.min_lease_ms > c.max_lease_ms {
            return Err(invalid("capacity.min_lease_ms", "must be above 0 and at most capacity.max_lease_ms"));
        }
        if !c.price.is_finite() || c.price < 0.0 {
            return Err(invalid("capacity.price", "must be a finite number >= 0"));
        }
        let mut s = ServerConfig::new(listen, TlsFiles::in_dir(&self.certs_dir));
        s.max_connections = self.max_connections;
        s.idle_timeout = Duration::from_millis(positive("idle_timeout_ms", self.idle_timeout_ms)?);
        s.keep_alive = Duration::from_millis(self.keep_alive_ms);
        s.handshake_timeout = Duration::from_millis(positive("handshake_timeout_ms", self.handshake_timeout_ms)?);
        s.round_period = Duration::from_millis(self.round_period_ms);
        s.max_frame_bytes = self.max_frame_bytes;
        s.agent_rate_per_s = self.agent_rate_per_s;
        s.agent_burst = self.agent_burst;
        s.max_pending_bids = self.max_pending_bids;
        s.outbound_queue = self.outbound_queue;
        s.max_workloads_per_host = self.max_workloads_per_host;
        s.udp_buffer_bytes = self.udp_buffer_bytes;
        let cap = HostCapacity {
            cpu_millicores: c.cpu_millicores,
            memory_bytes: c.memory_bytes,
            io_bps: c.io_bps,
            price: c.price,
            min_lease_ms: c.min_lease_ms,
            max_lease_ms: c.max_lease_ms,
        };
        let m = &self.market;
        if !m.income_per_second.is_finite() || m.income_per_second < 0.0 {
            return Err(invalid("market.income_per_second", "must be a finite number >= 0"));
        }
        if !(0.0..=1.0).contains(&m.floor_fraction) {
            return Err(invalid("market.floor_fraction", "must be between 0 and 1"));
        }
        if !m.usage_headroom.is_finite() || !(0.0..=10.0).contains(&m.usage_headroom) {
            return Err(invalid("market.usage_headroom", "must be a fraction between 0 and 10"));
        }
        if !m.lease_hysteresis.is_finite() || !(0.0..=1.0).contains(&m.lease_hysteresis) {
            return Err(invalid("market.lease_hysteresis", "must be between 0 and 1"));
        }
        if m.default_lease_ms < c.min_lease_ms || m.default_lease_ms > c.max_lease_ms {
            return Err(invalid("market.default_lease_ms", "must lie within capacity.min_lease_ms..=capacity.max_lease_ms"));
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err(invalid("state_dir", "must name a directory"));
        }
        let market = MarketConfig {
            default_lease_ms: m.default_lease_ms,
            cpu_cut: match m.cpu_cut {
                CpuCutKind::Quota => CpuCut::Quota,
                CpuCutKind::Weight => CpuCut::Weight,
                CpuCutKind::Yield => CpuCut::Yield,
            },
            min_lease_ms: c.min_lease_ms,
            max_lease_ms: c.max_lease_ms,
            usage_headroom: m.usage_headroom,
            lease_hysteresis: m.lease_hysteresis,
            ..MarketConfig::default()
        };
        let mut capacity = BTreeMap::from([(Resource::Cpu, c.cpu_millicores), (Resource::Memory, c.memory_bytes)]);
        capacity.retain(|_, v| *v > 0);
        let defaults = HostDefaults { capacity, floor_fraction: m.floor_fraction, income_per_second: Credits::from_credits(m.income_per_second) };
        let metrics = if self.metrics.enabled {
            Some(self.metrics.listen.parse().map_err(|e: std::net::AddrParseError| invalid("metrics.listen", &e.to_string()))?)
        } else {
            None
        };
        let cluster = self.cluster.validate(&self.certs_dir, &self.state_dir)?;
        if cluster.is_some() && self.resolver != ResolverKind::Market {
            return Err(invalid("resolver", "must be \"market\" with cluster.enabled (replicas share the market's ledger)"));
        }
        let federation = self.federation.validate(&self.certs_dir)?;
        if federation.is_some() && self.resolver != ResolverKind::Market {
            return Err(invalid("resolver", "must be \"market\" with federation.enabled (the site forecasts from the market's hosts)"));
        }
        Ok(Settings { server: s, resolver: self.resolver, capacity: cap, ledger_path: self.state_dir.join("ledger.redb"), market, defaults, metrics, cluster, federation })
    }
}

#[cfg(test)]
mod tests;
