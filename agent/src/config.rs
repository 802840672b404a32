//! The daemon's configuration: TOML (unknown keys are errors) validated into typed fields.
//! `truce-agent config --print-default` prints [`DEFAULT_TOML`].

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_TOML: &str = r#"# truce-agent configuration.
# This host's name: must match the DNS name in its certificate (truce-arbiter certs issue --host NAME).
host = "node-1"
# How often the agent samples, estimates and bids.
period = "1s"
# Workload policies (priority, SLO, floors, ceilings, budget); optional.
# workloads = "/etc/truce/workloads.toml"

[arbiter]
# Replicas, tried in order; the agent fails over to the next on error.
endpoints = ["127.0.0.1:7447"]
# The name in the arbiter's certificate.
server_name = "localhost"
# Holds ca.pem and hosts/<host>.pem, hosts/<host>.key.
certs_dir = "/etc/truce/certs"

[enforce]
# Subtrees of the cgroup2 mount truce may write under; nothing else is ever touched.
roots = ["/truce.slice"]
# Originals of every slot truce changed, fsync'd before the first write.
journal = "/var/lib/truce/journal.jsonl"
# memory.high is never set below current usage plus this margin.
memory_margin_bytes = 67108864
# Smallest CPU quota truce sets, in millicores.
cpu_floor_millicores = 50
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: String,
    period: String,
    workloads: Option<PathBuf>,
    arbiter: FileArbiter,
    enforce: FileEnforce,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileArbiter {
    endpoints: Vec<String>,
    server_name: String,
    certs_dir: PathBuf,
}

#[derive(Deserialize)]
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
    pub workloads: Option<PathBuf>,
    pub endpoints: Vec<SocketAddr>,
    pub server_name: String,
    pub certs_dir: PathBuf,
    pub roots: Vec<String>,
    pub journal: PathBuf,
    pub memory_margin_bytes: u64,
    pub cpu_floor_millicores: u64,
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        let invalid = |key: &str, reason: String| ConfigError::Invalid { path: path.into(), key: key.into(), reason };
        if f.host.is_empty() || f.host.contains(['/', ' ']) {
            return Err(invalid("host", format!("{:?} is not a host name", f.host)));
        }
        let period = humantime::parse_duration(&f.period).map_err(|e| invalid("period", e.to_string()))?;
        if period < Duration::from_millis(100) {
            return Err(invalid("period", "must be at least 100ms".into()));
        }
        if f.arbiter.endpoints.is_empty() {
            return Err(invalid("arbiter.endpoints", "needs at least one address".into()));
        }
        let endpoints = f
            .arbiter
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| e.parse::<SocketAddr>().map_err(|err| invalid(&format!("arbiter.endpoints[{i}]"), format!("{e:?}: {err}"))))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, r) in f.enforce.roots.iter().enumerate() {
            if !r.starts_with('/') || r == "/" || r.split('/').any(|c| c == ".." || c == ".") {
                return Err(invalid(&format!("enforce.roots[{i}]"), format!("{r:?} must be an absolute subtree of the cgroup2 mount, not `/`, without `..`")));
            }
        }
        Ok(AgentConfig {
            host: f.host,
            period,
            workloads: f.workloads,
            endpoints,
            server_name: f.arbiter.server_name,
            certs_dir: f.arbiter.certs_dir,
            roots: f.enforce.roots,
            journal: f.enforce.journal,
            memory_margin_bytes: f.enforce.memory_margin_bytes,
            cpu_floor_millicores: f.enforce.cpu_floor_millicores,
        })
    }
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
    }

    #[test]
    fn errors_name_the_key() {
        let bad = DEFAULT_TOML.replace("127.0.0.1:7447", "nowhere");
        assert!(parse(&bad).map(|_| ()).unwrap_err().to_string().contains("arbiter.endpoints[0]"));
        let bad = DEFAULT_TOML.replace("\"/truce.slice\"", "\"/a/../b\"");
        assert!(parse(&bad).map(|_| ()).unwrap_err().to_string().contains("enforce.roots[0]"));
        let bad = DEFAULT_TOML.replace("period = \"1s\"", "period = \"soon\"");
        assert!(parse(&bad).map(|_| ()).unwrap_err().to_string().contains("period"));
        let bad = format!("{DEFAULT_TOML}\nbogus = 1\n");
        assert!(parse(&bad).map(|_| ()).unwrap_err().to_string().contains("bogus"));
    }
}
