//! Workload policies from TOML: which cgroups get which priority, SLO, bounds and budget.
//!
//! Two stages (ripgrep's): serde structs with `deny_unknown_fields` mirror the file; `validate`
//! turns them into a typed [`Config`] whose rules hold [`WorkloadPolicy`]s, with errors that
//! name the key. Rules match a cgroup path (relative to the cgroup2 mount) exactly or by glob;
//! an exact match wins, otherwise the first matching glob in file order.

use crate::brain::policy::{Bounds, PsiResource, SloCeiling, WorkloadPolicy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

mod glob;
#[cfg(test)]
mod tests;

/// The commented example printed by `truce-agent config` and used in docs.
pub const EXAMPLE: &str = include_str!("workload_config/example.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read workload config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid workload config {origin}")]
    Parse {
        origin: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid workload config {origin}: `{key}` {reason}")]
    Invalid { origin: String, key: String, reason: String },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    workload: Vec<RawWorkload>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    priority: Option<u32>,
    budget_credits_per_hour: Option<f64>,
    lease_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    #[serde(rename = "match")]
    pattern: String,
    priority: Option<u32>,
    budget_credits_per_hour: Option<f64>,
    lease_ms: Option<u64>,
    #[serde(default)]
    slo: RawSlo,
    #[serde(default)]
    cpu: RawCpu,
    #[serde(default)]
    memory: RawMemory,
    #[serde(default)]
    io: RawRate,
    #[serde(default)]
    net: RawRate,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    rq_wait_p99_ms: Option<f64>,
    psi_cpu_some_avg10: Option<f64>,
    psi_cpu_full_avg10: Option<f64>,
    psi_memory_some_avg10: Option<f64>,
    psi_memory_full_avg10: Option<f64>,
    psi_io_some_avg10: Option<f64>,
    psi_io_full_avg10: Option<f64>,
    latency_file: Option<PathBuf>,
    latency_ceiling_ms: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCpu {
    floor_millicores: Option<u64>,
    ceiling_millicores: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    floor_bytes: Option<u64>,
    ceiling_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRate {
    floor_bytes_per_s: Option<u64>,
    ceiling_bytes_per_s: Option<u64>,
}

/// How a rule picks its cgroups.
#[derive(Clone, Debug, PartialEq)]
pub enum Matcher {
    Exact(String),
    /// `*` and `?` stay within one path segment; `**` crosses segments.
    Glob(String),
}

impl Matcher {
    pub fn matches(&self, cgroup_path: &str) -> bool {
        match self {
            Matcher::Exact(p) => p == cgroup_path,
            Matcher::Glob(g) => glob::matches(g.as_bytes(), cgroup_path.as_bytes()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadRule {
    pub matcher: Matcher,
    pub policy: WorkloadPolicy,
    /// The file the service writes its latency into (ms, one number); the daemon reads it
    /// each period and hands the value to the pure core.
    pub latency_file: Option<PathBuf>,
}

/// A validated workload config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub rules: Vec<WorkloadRule>,
    /// Policy for workloads no rule matches.
    pub default_policy: WorkloadPolicy,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Parse and validate; `origin` names the source in errors (a path, or `<example>`).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text)
            .map_err(|source| ConfigError::Parse { origin: origin.to_string(), source: Box::new(source) })?;
        validate(raw, origin)
    }

    /// The rule for a cgroup path: an exact match first, else the first matching glob.
    pub fn rule_for(&self, cgroup_path: &str) -> Option<&WorkloadRule> {
        self.rules
            .iter()
            .find(|r| matches!(&r.matcher, Matcher::Exact(p) if p == cgroup_path))
            .or_else(|| self.rules.iter().find(|r| r.matcher.matches(cgroup_path)))
    }

    pub fn policy_for(&self, cgroup_path: &str) -> &WorkloadPolicy {
        self.rule_for(cgroup_path).map(|r| &r.policy).unwrap_or(&self.default_policy)
    }
}

struct Checker<'a> {
    origin: &'a str,
}

impl Checker<'_> {
    fn err(&self, key: String, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { origin: self.origin.to_string(), key, reason: reason.into() }
    }

    fn priority(&self, key: String, v: u32) -> Result<u32, ConfigError> {
        if (1..=1000).contains(&v) { Ok(v) } else { Err(self.err(key, format!("must be in 1..=1000, got {v}"))) }
    }

    fn budget(&self, key: String, v: f64) -> Result<f64, ConfigError> {
        if v.is_finite() && v >= 0.0 { Ok(v) } else { Err(self.err(key, format!("must be a finite number >= 0, got {v}"))) }
    }

    fn lease(&self, key: String, v: u64) -> Result<u64, ConfigError> {
        if (1_000..=3_600_000).contains(&v) {
            Ok(v)
        } else {
            Err(self.err(key, format!("must be between 1000 ms and one hour, got {v}")))
        }
    }

    fn percent(&self, key: String, v: f64) -> Result<f64, ConfigError> {
        if (0.0..=100.0).contains(&v) { Ok(v) } else { Err(self.err(key, format!("is a percentage in 0..=100, got {v}"))) }
    }

    fn bounds(&self, key: &str, floor: Option<u64>, ceiling: Option<u64>) -> Result<Bounds, ConfigError> {
        if let (Some(f), Some(c)) = (floor, ceiling)
            && f > c
        {
            return Err(self.err(key.to_string(), format!("floor {f} is above ceiling {c}")));
        }
        Ok(Bounds { floor, ceiling })
    }
}

fn validate(raw: RawFile, origin: &str) -> Result<Config, ConfigError> {
    let ck = Checker { origin };
    let base = WorkloadPolicy::default();
    let default_policy = WorkloadPolicy {
        priority: raw.defaults.priority.map(|v| ck.priority("defaults.priority".into(), v)).transpose()?.unwrap_or(base.priority),
        budget_credits_per_hour: raw
            .defaults
            .budget_credits_per_hour
            .map(|v| ck.budget("defaults.budget_credits_per_hour".into(), v))
            .transpose()?
            .unwrap_or(base.budget_credits_per_hour),
        lease_ms: raw.defaults.lease_ms.map(|v| ck.lease("defaults.lease_ms".into(), v)).transpose()?.unwrap_or(base.lease_ms),
        ..base
    };
    let mut rules = Vec::with_capacity(raw.workload.len());
    for (i, w) in raw.workload.into_iter().enumerate() {
        let key = |k: &str| format!("workload[{i}].{k}");
        let pattern = w.pattern.trim().to_string();
        if !pattern.starts_with('/') {
            return Err(ck.err(key("match"), format!("must be a cgroup path from the cgroup2 root starting with `/`, got {pattern:?}")));
        }
        let matcher =
            if pattern.contains(['*', '?']) { Matcher::Glob(pattern) } else { Matcher::Exact(pattern) };
        let mut slo = Vec::new();
        if let Some(ms) = w.slo.rq_wait_p99_ms {
            if !(ms.is_finite() && ms > 0.0) {
                return Err(ck.err(key("slo.rq_wait_p99_ms"), format!("must be a positive number of ms, got {ms}")));
            }
            slo.push(SloCeiling::RqWaitP99 { ns: (ms * 1e6) as u64 });
        }
        let psi = [
            (w.slo.psi_cpu_some_avg10, PsiResource::Cpu, false, "slo.psi_cpu_some_avg10"),
            (w.slo.psi_cpu_full_avg10, PsiResource::Cpu, true, "slo.psi_cpu_full_avg10"),
            (w.slo.psi_memory_some_avg10, PsiResource::Memory, false, "slo.psi_memory_some_avg10"),
            (w.slo.psi_memory_full_avg10, PsiResource::Memory, true, "slo.psi_memory_full_avg10"),
            (w.slo.psi_io_some_avg10, PsiResource::Io, false, "slo.psi_io_some_avg10"),
            (w.slo.psi_io_full_avg10, PsiResource::Io, true, "slo.psi_io_full_avg10"),
        ];
        for (v, resource, full, k) in psi {
            if let Some(v) = v {
                slo.push(SloCeiling::Psi { resource, full, avg10: ck.percent(key(k), v)? });
            }
        }
        let latency_file = match (w.slo.latency_file, w.slo.latency_ceiling_ms) {
            (Some(f), Some(ms)) if ms.is_finite() && ms > 0.0 => {
                slo.push(SloCeiling::ExternalLatency { ceiling_ms: ms });
                Some(f)
            }
            (Some(_), Some(ms)) => {
                return Err(ck.err(key("slo.latency_ceiling_ms"), format!("must be a positive number of ms, got {ms}")));
            }
            (Some(_), None) => return Err(ck.err(key("slo.latency_ceiling_ms"), "is required with slo.latency_file")),
            (None, Some(_)) => return Err(ck.err(key("slo.latency_file"), "is required with slo.latency_ceiling_ms")),
            (None, None) => None,
        };
        let policy = WorkloadPolicy {
            priority: w.priority.map(|v| ck.priority(key("priority"), v)).transpose()?.unwrap_or(default_policy.priority),
            slo,
            cpu: ck.bounds(&key("cpu"), w.cpu.floor_millicores, w.cpu.ceiling_millicores)?,
            memory: ck.bounds(&key("memory"), w.memory.floor_bytes, w.memory.ceiling_bytes)?,
            io: ck.bounds(&key("io"), w.io.floor_bytes_per_s, w.io.ceiling_bytes_per_s)?,
            net: ck.bounds(&key("net"), w.net.floor_bytes_per_s, w.net.ceiling_bytes_per_s)?,
            budget_credits_per_hour: w
                .budget_credits_per_hour
                .map(|v| ck.budget(key("budget_credits_per_hour"), v))
                .transpose()?
                .unwrap_or(default_policy.budget_credits_per_hour),
            lease_ms: w.lease_ms.map(|v| ck.lease(key("lease_ms"), v)).transpose()?.unwrap_or(default_policy.lease_ms),
        };
        rules.push(WorkloadRule { matcher, policy, latency_file });
    }
    Ok(Config { rules, default_policy })
}
