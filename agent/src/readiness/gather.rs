//! Reading the host for the checks: the only I/O of the readiness module.
use super::HostFacts;
use crate::cgroupfs;
use crate::config::AgentConfig;
use crate::probes::{self, Capabilities, error_chain};
use std::path::{Path, PathBuf};

/// The daemon configuration as far as the checks need it.
#[derive(Clone, Debug)]
pub struct ConfigFacts {
    pub path: PathBuf,
    pub loaded: Result<LoadedConfig, String>,
}

#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub host: String,
    /// Each enforce root and whether it exists in the cgroup2 tree.
    pub roots: Vec<(String, bool)>,
    /// The TLS files the client opens, and whether each can be read.
    pub certs: Vec<(PathBuf, Result<(), String>)>,
    /// The optional probe groups the config asks for (`[probes]`).
    pub probes: probes::ProbeGroups,
}

/// Read everything but the probes, which the caller passes: the daemon has them loaded
/// already, `doctor` loads them itself.
pub fn gather(probes: Option<Result<Capabilities, String>>, config: Option<(&Path, Option<&str>)>) -> HostFacts {
    let kernel_release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let cgroup = cgroupfs::discover().map_err(|e| error_chain(&e));
    let pmu = match &probes {
        Some(Ok(caps)) => caps.perf.clone(),
        // Without loaded probes, try the counters directly (needs CAP_PERFMON too).
        _ => probes::hardware_status(),
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mount = cgroup.as_ref().ok().map(|h| h.mount.clone());
    HostFacts {
        kernel_release,
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        tracefs: probes::tracefs_mounted().map_err(|e| error_chain(&e)),
        psi: Path::new("/proc/pressure/cpu").exists(),
        effective_caps: probes::effective_caps(&status),
        perf_event_paranoid: std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").ok().and_then(|s| s.trim().parse().ok()),
        cgroup,
        probes,
        pmu,
        config: config.map(|(p, host)| config_facts(p, host, mount.as_deref())),
    }
}

fn config_facts(path: &Path, host: Option<&str>, mount: Option<&Path>) -> ConfigFacts {
    let loaded = AgentConfig::load_for(path, host).map_err(|e| error_chain(&e)).map(|cfg| {
        let roots = cfg
            .roots
            .iter()
            .map(|r| (r.clone(), mount.is_some_and(|m| m.join(r.trim_start_matches('/')).is_dir())))
            .collect();
        let hosts = cfg.certs_dir.join("hosts");
        let certs = [cfg.certs_dir.join("ca.pem"), hosts.join(format!("{}.pem", cfg.host)), hosts.join(format!("{}.key", cfg.host))]
            .into_iter()
            .map(|p| {
                let ok = std::fs::File::open(&p).map(|_| ()).map_err(|e| e.to_string());
                (p, ok)
            })
            .collect();
        LoadedConfig { host: cfg.host.clone(), roots, certs, probes: cfg.probes }
    });
    ConfigFacts { path: path.to_path_buf(), loaded }
}
