//! Which capabilities the probes need, read from /proc/self/status, so a missing one is
//! named instead of surfacing as a bare EPERM from bpf().
use std::{fs, path::Path};

use super::ProbeError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Check that the process may load tracing programs and attach cgroup programs.
pub fn check() -> Result<(), ProbeError> {
    let path = Path::new("/proc/self/status");
    let status = fs::read_to_string(path).map_err(|source| ProbeError::ReadProcFile { path: path.into(), source })?;
    let effective = effective_caps(&status).unwrap_or(0);
    match missing(effective) {
        None => Ok(()),
        Some(missing) => Err(ProbeError::MissingPrivilege { missing }),
    }
}

/// The `CapEff:` mask.
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The capabilities missing from `effective`, or None when all are present.
/// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (kernels before 5.8 only know it).
pub fn missing(effective: u64) -> Option<String> {
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !(has(CAP_BPF) || admin) {
        missing.push("CAP_BPF (load eBPF programs and maps)");
    }
    if !(has(CAP_PERFMON) || admin) {
        missing.push("CAP_PERFMON (attach tracepoints, open perf counters)");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN (attach cgroup_skb programs)");
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_everything() {
        assert_eq!(missing(effective_caps("CapEff:\t000001ffffffffff\n").unwrap_or(0)), None);
    }

    #[test]
    fn an_unprivileged_user_is_told_every_capability() {
        let msg = missing(effective_caps("Name:\tx\nCapEff:\t0000000000000000\n").unwrap_or(u64::MAX));
        let msg = msg.unwrap_or_default();
        assert!(msg.contains("CAP_BPF") && msg.contains("CAP_PERFMON") && msg.contains("CAP_NET_ADMIN"), "{msg}");
    }

    #[test]
    fn cap_bpf_without_perfmon_names_perfmon_only() {
        let caps = (1u64 << CAP_BPF) | (1u64 << CAP_NET_ADMIN);
        assert_eq!(missing(caps).as_deref(), Some("CAP_PERFMON (attach tracepoints, open perf counters)"));
    }
}
