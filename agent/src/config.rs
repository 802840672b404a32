//! The daemon's configuration: TOML (unknown keys are errors) validated into typed fields.
//! `truce-agent config --print-default` prints [`DEFAULT_TOML`].

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_TOML: &str = r#"# truce-agent configuration.

# This host's name: must match the DNS name in its certificate (truce-arbiter certs issue --host NAME).
host = "node-1"
# How often the agent samples, estimates and bids.
period = "1s"
# Also sample at once, between periods, when a workload under enforce.roots starts to stall
# (50 ms of a 500 ms window waiting on CPU, memory or I/O: a PSI trigger), instead of up to a
# period later. Needs PSI (boot with psi=1 where the kernel has it off).
pressure_onset = true
# How the agent's own threads are scheduled: "batch" (SCHED_BATCH: the same CPU weight, but a
# waking agent thread never preempts a running workload; it runs when the CPU frees or at the
# scheduler's next tick) or "normal" (SCHED_OTHER: it preempts on wakeup like any task, a
# latency-sensitive neighbour waits for its slice). See docs/operations.md.
cpu_policy = "batch"
# Workload policies (priority, SLO, floors, ceilings, budget); optional.
# workloads = "/etc/truce/workloads.toml"

[arbiter]
# Replicas, tried in order; the agent fails over to the next on error. An address, or a
# DNS name and port (resolved when the agent starts; every address of a name is tried).
endpoints = ["127.0.0.1:7447"]
# The name in the arbiter's certificate.
server_name = "localhost"
# Holds ca.pem and hosts/<host>.pem, hosts/<host>.key.
certs_dir = "/etc/truce/certs"
# A replica that dies without closing (kill -9, power loss, a cut cable) is noticed only by
# silence: after idle_timeout without a packet the agent moves on to the next endpoint. The
# agent pings every keep_alive so a live but quiet session never looks dead; keep it well
# below idle_timeout. Failover takes about idle_timeout plus a round (docs/cluster.md).
keep_alive = "500ms"
idle_timeout = "1500ms"
# How long a connection attempt (QUIC and TLS handshake, hello) may take before the next
# endpoint is tried.
connect_timeout = "3s"

[enforce]
# Subtrees of the cgroup2 mount truce may write under; nothing else is ever touched. The
# agent's own cgroup and those above it are never managed, even below a root.
roots = ["/truce.slice"]
# Originals of every slot truce changed, fsync'd before the first write.
journal = "/var/lib/truce/journal.jsonl"
# memory.high is never set below current usage plus this margin.
memory_margin_bytes = 67108864
# Smallest CPU quota truce sets, in millicores.
cpu_floor_millicores = 50

[inspect]
# The unix socket `truce top --agent` reads; created 0600 (root only). "" serves none.
socket = "/run/truce/agent.sock"

[metrics]
# Serve Prometheus /metrics (plain HTTP, no authentication).
enabled = true
# Where /metrics listens; it names workloads, so keep it on loopback unless a firewall guards it.
listen = "127.0.0.1:9447"
# Turn on the kernel's per-program BPF run-time stats while the agent runs, for
# truce_agent_probe_run_time_seconds. Costs two clock reads per probe run; when off (and the
# sysctl kernel.bpf_stats_enabled is 0) probe run time is reported unavailable.
probe_run_time = false

[forecast]
# The forecaster's CPU budget, as a share of one CPU, measured on its own thread. While it is
# spent, periods are only recorded (each value joins its history, no model runs) and the last
# forecasts serve (counted in truce_agent_forecast_periods_recorded). A costly refit (ets,
# mstl, blend) runs only once the budget holds what one costs; until then ewma and seasonal
# naive serve (waits counted in truce_agent_forecast_refits_deferred). 0 turns forecasting off.
# Kept small because a refit runs as one burst on a CPU the workloads share: in a one-vCPU
# VM the agent alone left a latency-sensitive neighbour's p99 at 19x its isolated value at
# 0.05, 8.5x at 0.01 (docs/benchmarks.md, mitigation run 18).
cpu_share = 0.01
"#;

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
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(t, Path::new("agent.toml"))
    }

    #[test]
    fn default_parses() {
        let c = parse(DEFAULT_TOML).expect("the printed default must load");
        assert_eq!(c.period, Duration::from_secs(1));
        assert_eq!(c.roots, vec!["/truce.slice".to_string()]);
        assert_eq!(c.telemetry.socket.as_deref(), Some(Path::new("/run/truce/agent.sock")));
        assert_eq!(c.telemetry.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9447))));
        assert_eq!(c.timing, SessionTiming { keep_alive: Duration::from_millis(500), idle_timeout: Duration::from_millis(1500), connect_timeout: Duration::from_secs(3) });
        assert_eq!(c.forecast_cpu_share, 0.01);
    }

    #[test]
    fn a_config_without_session_timing_gets_the_defaults() {
        let old: String = DEFAULT_TOML.lines().filter(|l| !l.starts_with("keep_alive") && !l.starts_with("idle_timeout") && !l.starts_with("connect_timeout")).collect::<Vec<_>>().join("\n");
        assert_eq!(parse(&old).expect("older configs keep working").timing, parse(DEFAULT_TOML).expect("default").timing);
    }

    #[test]
    fn a_config_without_the_newer_sections_still_loads() {
        let old = DEFAULT_TOML.split("\n[inspect]").next().expect("prefix");
        let c = parse(old).expect("older configs keep working");
        assert!(c.telemetry.socket.is_some() && c.telemetry.metrics_listen.is_some());
        assert_eq!(c.forecast_cpu_share, 0.01);
    }

    #[test]
    fn errors_name_the_key() {
        let bad = DEFAULT_TOML.replace("127.0.0.1:7447", "no where");
        assert!(parse(&bad).map(|_| ()).expect_err("must be refused").to_string().contains("arbiter.endpoints[0]"));
        let bad = DEFAULT_TOML.replace("\"/truce.slice\"", "\"/a/../b\"");
        assert!(parse(&bad).map(|_| ()).expect_err("must be refused").to_string().contains("enforce.roots[0]"));
        let bad = DEFAULT_TOML.replace("period = \"1s\"", "period = \"soon\"");
        assert!(parse(&bad).map(|_| ()).expect_err("must be refused").to_string().contains("period"));
        let bad = DEFAULT_TOML.replace("127.0.0.1:9447", "localhost");
        assert!(parse(&bad).map(|_| ()).expect_err("bad metrics.listen").to_string().contains("metrics.listen"));
        let bad = DEFAULT_TOML.replace("/run/truce/agent.sock", "agent.sock");
        assert!(parse(&bad).map(|_| ()).expect_err("relative inspect.socket").to_string().contains("inspect.socket"));
        let bad = DEFAULT_TOML.replace("keep_alive = \"500ms\"", "keep_alive = \"5s\"");
        assert!(parse(&bad).map(|_| ()).expect_err("keep-alive above the idle timeout").to_string().contains("arbiter.keep_alive"));
        let bad = DEFAULT_TOML.replace("idle_timeout = \"1500ms\"", "idle_timeout = \"two\"");
        assert!(parse(&bad).map(|_| ()).expect_err("unparsable").to_string().contains("arbiter.idle_timeout"));
        let bad = DEFAULT_TOML.replace("connect_timeout = \"3s\"", "connect_timeout = \"1ms\"");
        assert!(parse(&bad).map(|_| ()).expect_err("too short").to_string().contains("arbiter.connect_timeout"));
        for share in ["1.5", "-0.1", "nan"] {
            let bad = DEFAULT_TOML.replace("cpu_share = 0.01", &format!("cpu_share = {share}"));
            assert!(parse(&bad).map(|_| ()).expect_err("not a share").to_string().contains("forecast.cpu_share"), "{share}");
        }
        let bad = format!("{DEFAULT_TOML}\nbogus = 1\n");
        assert!(parse(&bad).map(|_| ()).expect_err("must be refused").to_string().contains("bogus"));
    }

    #[test]
    fn endpoint_names_resolve_at_load_in_order() {
        let dir = std::env::temp_dir().join(format!("truce-agent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("agent.toml");
        let text = DEFAULT_TOML.replace("[\"127.0.0.1:7447\"]", "[\"127.0.0.2:7000\", \"localhost:7447\"]");
        let parsed = parse(&text).expect("a name:port endpoint parses");
        assert_eq!(parsed.endpoints, vec!["127.0.0.2:7000".parse::<SocketAddr>().expect("addr")], "parse does no DNS");
        std::fs::write(&path, &text).expect("write");
        let loaded = AgentConfig::load_for(&path, Some("node-7")).expect("localhost resolves");
        assert_eq!(loaded.endpoints[0], "127.0.0.2:7000".parse::<SocketAddr>().expect("addr"));
        assert!(loaded.endpoints[1..].iter().all(|a| a.ip().is_loopback() && a.port() == 7447), "{:?}", loaded.endpoints);
        assert_eq!(loaded.host, "node-7");
        let err = AgentConfig::load_for(&path, Some("bad host")).map(|_| ()).expect_err("must be refused").to_string();
        assert!(err.contains("TRUCE_AGENT_HOST"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The printed default is the documentation (docs/operations.md is generated from it):
    /// every field of the file types must appear in it, set or as a commented example.
    #[test]
    fn every_field_is_in_the_printed_default() {
        let all_set: String = DEFAULT_TOML.lines().map(|l| l.strip_prefix("# workloads = ").map_or(l.to_string(), |v| format!("workloads = {v}"))).collect::<Vec<_>>().join("\n");
        let file: FileConfig = toml::from_str(&all_set).expect("the default with its optional keys set parses");
        let value = toml::Value::try_from(&file).expect("serializes");
        let mut missing = Vec::new();
        for (key, v) in value.as_table().into_iter().flatten() {
            let names: Vec<String> = match v.as_table() {
                Some(t) => t.keys().cloned().collect(),
                None => vec![key.clone()],
            };
            for n in names {
                let set = format!("{n} = ");
                let example = format!("# {n} = ");
                if !DEFAULT_TOML.lines().any(|l| l.starts_with(&set) || l.starts_with(&example)) {
                    missing.push(n);
                }
            }
        }
        assert!(missing.is_empty(), "keys missing from DEFAULT_TOML: {missing:?}");
    }
}
