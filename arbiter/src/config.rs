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
pub const DEFAULT_TOML: &str = r#"# truce-arbiter configuration. Every key is optional; these are the defaults.

# UDP address the QUIC server binds.
listen = "0.0.0.0:7447"
# Written by `truce-arbiter certs init --dir DIR`: ca.pem, arbiter.pem, arbiter.key.
certs_dir = "/etc/truce/certs"
# Connections beyond this are refused before any TLS work.
max_connections = 10000
# A connection silent this long is closed; keep-alives count as traffic. QUIC uses the
# shorter of this and the agent's `arbiter.idle_timeout`: a vanished agent's session (and an
# agent's view of a vanished arbiter) ends after that much silence.
idle_timeout_ms = 3000
# How often an idle connection sends a keep-alive; below idle_timeout_ms.
keep_alive_ms = 1000
# Time an agent has to open its stream and say hello.
handshake_timeout_ms = 10000
# Shortest time between two market rounds of one host (a round runs only when bids wait).
round_period_ms = 1000
# Hard limit on one frame; checked before the body is read.
max_frame_bytes = 1048576
# Per-agent token bucket on inbound messages (an empty bucket stops reading that agent only).
agent_rate_per_s = 2000
agent_burst = 4000
# Bids held for one host's next round; more are refused with rate_limited.
max_pending_bids = 4096
# Frames queued to one agent; an agent that lets it overflow is disconnected.
outbound_queue = 1024
# Distinct workloads one host may name in a session; a bid or report naming one more is
# refused (error code too_many_workloads) and logged.
max_workloads_per_host = 16384
# Kernel receive and send buffer asked for the UDP socket all agents share. The kernel caps
# it at net.core.rmem_max / wmem_max (a smaller grant is logged); too small a buffer drops
# bursts from many agents, and every drop costs a QUIC loss-recovery timeout.
udp_buffer_bytes = 4194304

# Where the ledger (credits, leases, reputation, prices) is stored: ledger.redb.
state_dir = "/var/lib/truce-arbiter"
# Who resolves rounds: "market" (optimiser, ledger, lending pool, prices, reputation) or
# "proportional" (asks pro rata out of [capacity], no ledger; for testing the transport).
resolver = "market"

# Prometheus /metrics.
[metrics]
# Serve /metrics (plain HTTP, no authentication).
enabled = true
# Where /metrics listens; it names hosts and workloads, so keep it on loopback unless a
# firewall guards it.
listen = "127.0.0.1:9448"

# A host's capacity when its agent reports none (agents report their own), and the lease
# bounds. With resolver = "proportional", what each host may be granted per round.
[capacity]
# CPU in millicores and memory in bytes, per host.
cpu_millicores = 4000
memory_bytes = 8589934592
# Per device, bytes/s.
io_bps = 209715200
# Flat price on every lease, credits per unit per second.
price = 0.0
# A bid's lease length is clamped to [min_lease_ms, max_lease_ms].
min_lease_ms = 1000
max_lease_ms = 300000

[market]
# Credits each workload earns per second: the only way credits are created.
income_per_second = 1.0
# A workload's floor, as a fraction of its equal share, where its agent configures none.
floor_fraction = 0.25
# Lease length for workloads that did not bid (cut workloads, lenders).
default_lease_ms = 10000
# How a workload cut below its equal CPU share is held there: "quota" (cpu.max, a hard
# limit, even when CPUs idle), "weight" (cpu.weight below 100, in proportion: it yields under
# contention and keeps idle CPU) or "yield" (cpu.weight 1 while it uses more than its
# allocation: neighbours preempt it at once, it keeps idle CPU, and gets next to nothing
# under contention). See docs/market.md.
cpu_cut = "quota"
# A workload that asks for nothing wants what it used last period plus this fraction (up to
# its equal share), so a cut takes idle share first. 0 = exactly its use.
usage_headroom = 0.25
# A lease is kept while its allocation grows by at most this fraction of it (at least one
# unit), so an allocation creeping up does not close and reopen it every round.
lease_hysteresis = 0.05
"#;

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
mod tests {
    use super::*;

    #[test]
    fn printed_default_parses_to_the_default() {
        let parsed: FileConfig = toml::from_str(&default_toml()).expect("default parses");
        assert_eq!(parsed, FileConfig::default());
        assert!(parsed.validate().is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        assert!(toml::from_str::<FileConfig>("listne = \"x\"").is_err());
        let bad = FileConfig { keep_alive_ms: 40_000, ..FileConfig::default() };
        let err = bad.validate().expect_err("keep-alive beyond idle timeout");
        assert!(err.to_string().contains("keep_alive_ms"), "{err}");
        let bad = FileConfig { listen: "nowhere".into(), ..FileConfig::default() };
        assert!(bad.validate().expect_err("bad listen").to_string().contains("listen"));
        let bad = FileConfig { market: MarketSection { floor_fraction: 2.0, ..MarketSection::default() }, ..FileConfig::default() };
        assert!(bad.validate().expect_err("bad fraction").to_string().contains("market.floor_fraction"));
        let bad = FileConfig { market: MarketSection { lease_hysteresis: f64::NAN, ..MarketSection::default() }, ..FileConfig::default() };
        assert!(bad.validate().expect_err("NaN hysteresis").to_string().contains("market.lease_hysteresis"));
        let bad = FileConfig { market: MarketSection { usage_headroom: -1.0, ..MarketSection::default() }, ..FileConfig::default() };
        assert!(bad.validate().expect_err("negative headroom").to_string().contains("market.usage_headroom"));
        let bad = FileConfig { metrics: MetricsSection { enabled: true, listen: "loopback".into() }, ..FileConfig::default() };
        assert!(bad.validate().expect_err("bad metrics.listen").to_string().contains("metrics.listen"));
        let off = FileConfig { metrics: MetricsSection { enabled: false, listen: "loopback".into() }, ..FileConfig::default() };
        assert_eq!(off.validate().expect("disabled is not parsed").metrics, None);
        let bad = FileConfig { udp_buffer_bytes: 1024, ..FileConfig::default() };
        assert!(bad.validate().expect_err("tiny buffer").to_string().contains("udp_buffer_bytes"));
        let bad = FileConfig { max_workloads_per_host: 0, ..FileConfig::default() };
        assert!(bad.validate().expect_err("no workloads").to_string().contains("max_workloads_per_host"));
        let set: FileConfig = toml::from_str("udp_buffer_bytes = 8388608\nmax_workloads_per_host = 5").expect("keys parse");
        let s = set.validate().expect("valid");
        assert_eq!((s.server.udp_buffer_bytes, s.server.max_workloads_per_host), (8_388_608, 5));
        let err = toml::from_str::<FileConfig>("resolver = \"auction\"").expect_err("unknown resolver");
        assert!(err.to_string().contains("resolver"), "{err}");
    }

    /// The printed default is the documentation (docs/operations.md is generated from it):
    /// a field missing from it would be an undocumented key.
    #[test]
    fn every_field_is_in_the_printed_default() {
        let value = toml::Value::try_from(FileConfig::default()).expect("the default serializes");
        let mut missing = Vec::new();
        for (key, v) in value.as_table().into_iter().flatten() {
            // A table inside a section is its own `[section.table]` header.
            let nested: Vec<String> = match v.as_table() {
                Some(t) => t.iter().map(|(k, inner)| if inner.is_table() { format!("[{key}.{k}]") } else { format!("{k} = ") }).collect(),
                None => vec![format!("{key} = ")],
            };
            let text = default_toml();
            missing.extend(nested.into_iter().filter(|line| !text.lines().any(|l| l.starts_with(line.as_str()))));
        }
        assert!(missing.is_empty(), "keys missing from DEFAULT_TOML: {missing:?}");
    }
}
