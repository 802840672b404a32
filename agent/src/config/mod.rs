//! The daemon's configuration: TOML (unknown keys are errors) validated into typed fields.
//! `truce-agent config --print-default` prints [`DEFAULT_TOML`].

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The commented default configuration (`config/default.toml`): every key, its default and
/// what it does. docs/operations.md's table is generated from it (`cargo xtask docs`).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: key `{key}`: {reason}")]
    Invalid { path: PathBuf, key: String, reason: String },
    #[error("config {path}: key `{key}`: cannot resolve {name:?}")]
    Resolve {
        path: PathBuf,
        key: String,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: String,
    period: String,
    #[serde(default = "yes")]
    pressure_onset: bool,
    #[serde(default)]
    cpu_policy: CpuPolicy,
    workloads: Option<PathBuf>,
    arbiter: FileArbiter,
    enforce: FileEnforce,
    #[serde(default)]
    forecast: FileForecast,
    #[serde(default)]
    probes: crate::probes::ProbeGroups,
    #[serde(default)]
    inspect: FileInspect,
    #[serde(default)]
    metrics: FileMetrics,
}

fn yes() -> bool {
    true
}

/// `cpu_policy`: the scheduling policy of the agent's own threads (`cmd::scheduling`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuPolicy {
    /// SCHED_BATCH: no wakeup preemption of running workloads.
    #[default]
    Batch,
    /// SCHED_OTHER.
    Normal,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct FileForecast {
    cpu_share: f64,
}

impl Default for FileForecast {
    fn default() -> Self {
        FileForecast { cpu_share: 0.01 }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct FileInspect {
    socket: String,
}

impl Default for FileInspect {
    fn default() -> Self {
        FileInspect { socket: "/run/truce/agent.sock".into() }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct FileMetrics {
    enabled: bool,
    listen: String,
    probe_run_time: bool,
}

impl Default for FileMetrics {
    fn default() -> Self {
        FileMetrics { enabled: true, listen: "127.0.0.1:9447".into(), probe_run_time: false }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileArbiter {
    endpoints: Vec<String>,
    server_name: String,
    certs_dir: PathBuf,
    #[serde(default = "default_keep_alive")]
    keep_alive: String,
    #[serde(default = "default_idle_timeout")]
    idle_timeout: String,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: String,
}

fn default_keep_alive() -> String {
    "500ms".into()
}

fn default_idle_timeout() -> String {
    "1500ms".into()
}

fn default_connect_timeout() -> String {
    "3s".into()
}

/// How the agent's sessions with the arbiter notice silence and give up on a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTiming {
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileEnforce {
    roots: Vec<String>,
    journal: PathBuf,
    memory_margin_bytes: u64,
    cpu_floor_millicores: u64,
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub host: String,
    pub period: Duration,
    /// Sample early when a managed workload's PSI trigger fires (`cmd::pressure`).
    pub pressure_onset: bool,
    pub cpu_policy: CpuPolicy,
    pub workloads: Option<PathBuf>,
    /// Resolved addresses, in the configured order (names are resolved by [`AgentConfig::load`]).
    pub endpoints: Vec<SocketAddr>,
    /// `arbiter.endpoints` as written.
    pub endpoint_specs: Vec<String>,
    pub server_name: String,
    pub certs_dir: PathBuf,
    /// `arbiter.keep_alive`, `arbiter.idle_timeout`, `arbiter.connect_timeout`.
    pub timing: SessionTiming,
    pub roots: Vec<String>,
    pub journal: PathBuf,
    pub memory_margin_bytes: u64,
    pub cpu_floor_millicores: u64,
    /// `forecast.cpu_share`: the forecaster thread's CPU budget, a share of one CPU (0 to 1).
    pub forecast_cpu_share: f64,
    /// `probes.block`, `probes.net`: the optional probe groups to attach.
    pub probes: crate::probes::ProbeGroups,
    /// The host view socket and `/metrics`.
    pub telemetry: crate::inspect::TelemetryConfig,
}

impl AgentConfig {
    /// Read, validate, and resolve endpoint names.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        Self::load_for(path, None)
    }

    /// As [`AgentConfig::load`], with `host` replacing the file's `host` (one config for a
    /// fleet: Kubernetes passes the node name, `--host` / `TRUCE_AGENT_HOST`).
    pub fn load_for(path: &Path, host: Option<&str>) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg = Self::parse(&text, path)?;
        if let Some(h) = host {
            check_host(h).map_err(|reason| ConfigError::Invalid { path: path.into(), key: "host (--host, TRUCE_AGENT_HOST)".into(), reason })?;
            cfg.host = h.to_string();
        }
        if cfg.endpoints.len() < cfg.endpoint_specs.len() {
            cfg.endpoints = resolve(&cfg.endpoint_specs, path)?;
        }
        Ok(cfg)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        let invalid = |key: &str, reason: String| ConfigError::Invalid { path: path.into(), key: key.into(), reason };
        check_host(&f.host).map_err(|reason| invalid("host", reason))?;
        let period = humantime::parse_duration(&f.period).map_err(|e| invalid("period", e.to_string()))?;
        if period < Duration::from_millis(100) {
            return Err(invalid("period", "must be at least 100ms".into()));
        }
        if f.arbiter.endpoints.is_empty() {
            return Err(invalid("arbiter.endpoints", "needs at least one address".into()));
        }
        let duration = |key: &str, v: &str| humantime::parse_duration(v).map_err(|e| invalid(key, format!("{v:?}: {e}")));
        let timing = SessionTiming {
            keep_alive: duration("arbiter.keep_alive", &f.arbiter.keep_alive)?,
            idle_timeout: duration("arbiter.idle_timeout", &f.arbiter.idle_timeout)?,
            connect_timeout: duration("arbiter.connect_timeout", &f.arbiter.connect_timeout)?,
        };
        if timing.keep_alive.is_zero() || timing.keep_alive >= timing.idle_timeout {
            return Err(invalid("arbiter.keep_alive", "must be above 0 and below arbiter.idle_timeout, or quiet sessions are dropped".into()));
        }
        // QUIC carries the idle timeout in whole milliseconds below 2^62.
        if timing.idle_timeout < Duration::from_millis(100) || timing.idle_timeout > Duration::from_secs(3600) {
            return Err(invalid("arbiter.idle_timeout", "must be between 100ms and 1h".into()));
        }
        if timing.connect_timeout < Duration::from_millis(100) {
            return Err(invalid("arbiter.connect_timeout", "must be at least 100ms".into()));
        }
        // Literal addresses now; names wait for `load` (parsing does no I/O).
        let mut endpoints = Vec::new();
        for (i, e) in f.arbiter.endpoints.iter().enumerate() {
            match e.parse::<SocketAddr>() {
                Ok(addr) => endpoints.push(addr),
                Err(err) if !is_name_and_port(e) => {
                    return Err(invalid(&format!("arbiter.endpoints[{i}]"), format!("{e:?} is neither an address ({err}) nor name:port")));
                }
                Err(_) => {}
            }
        }
        for (i, r) in f.enforce.roots.iter().enumerate() {
            if !r.starts_with('/') || r == "/" || r.split('/').any(|c| c == ".." || c == ".") {
                return Err(invalid(&format!("enforce.roots[{i}]"), format!("{r:?} must be an absolute subtree of the cgroup2 mount, not `/`, without `..`")));
            }
        }
        let share = f.forecast.cpu_share;
        if !(0.0..=1.0).contains(&share) {
            return Err(invalid("forecast.cpu_share", format!("{share} must be a share of one CPU, from 0 to 1")));
        }
        let socket = (!f.inspect.socket.is_empty()).then(|| PathBuf::from(&f.inspect.socket));
        if let Some(p) = &socket
            && !p.is_absolute()
        {
            return Err(invalid("inspect.socket", format!("{p:?} must be an absolute path")));
        }
        let metrics_listen = if f.metrics.enabled {
            Some(f.metrics.listen.parse::<SocketAddr>().map_err(|e| invalid("metrics.listen", format!("{:?}: {e}", f.metrics.listen)))?)
        } else {
            None
        };
        Ok(AgentConfig {
            telemetry: crate::inspect::TelemetryConfig { socket, metrics_listen, probe_run_time: f.metrics.probe_run_time },
            host: f.host,
            period,
            pressure_onset: f.pressure_onset,
            cpu_policy: f.cpu_policy,
            workloads: f.workloads,
            endpoints,
            endpoint_specs: f.arbiter.endpoints,
            server_name: f.arbiter.server_name,
            certs_dir: f.arbiter.certs_dir,
            timing,
            roots: f.enforce.roots,
            journal: f.enforce.journal,
            memory_margin_bytes: f.enforce.memory_margin_bytes,
            cpu_floor_millicores: f.enforce.cpu_floor_millicores,
            forecast_cpu_share: share,
            probes: f.probes,
        })
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(())
}

/// `name:port` with a DNS name (letters, digits, `-`, `.`) and a port number.
fn is_name_and_port(spec: &str) -> bool {
    let Some((name, port)) = spec.rsplit_once(':') else { return false };
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') && port.parse::<u16>().is_ok()
}

/// Every address of every endpoint, in the configured order.
fn resolve(specs: &[String], path: &Path) -> Result<Vec<SocketAddr>, ConfigError> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let addrs = spec.to_socket_addrs().map_err(|source| ConfigError::Resolve {
            path: path.into(),
            key: format!("arbiter.endpoints[{i}]"),
            name: spec.clone(),
            source,
        })?;
        out.extend(addrs.filter(|a| !out.contains(a)).collect::<Vec<_>>());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
