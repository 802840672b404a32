//! Host-wide readings from procfs, and the per-cgroup file readings for one period.

use super::HostReading;
use crate::cgroupfs::{CgroupCounters, CgroupEntry, CgroupError, read_counters, read_pressure};
use std::collections::HashMap;
use procfs::{Current, CurrentSI};
use std::path::Path;
use truce_common::signal::PsiSignals;

/// Read /proc/stat, /proc/meminfo and /proc/pressure. A missing file (no PSI) leaves that
/// part empty; a broken /proc/stat is an error, since every CPU figure depends on it.
pub fn read_host() -> Result<HostReading, procfs::ProcError> {
    let ks = procfs::KernelStats::current()?;
    let tps = procfs::ticks_per_second().max(1);
    let t = &ks.total;
    let busy_ticks = t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0) + t.steal.unwrap_or(0);
    let mem = procfs::Meminfo::current()?;
    let psi = read_pressure(Path::new("/proc/pressure")).unwrap_or_default();
    Ok(HostReading {
        cpus: ks.cpu_time.len() as u32,
        cpu_busy_ns: busy_ticks.saturating_mul(1_000_000_000 / tps),
        mem_total_bytes: mem.mem_total,
        mem_available_bytes: mem.mem_available.unwrap_or(mem.mem_free),
        psi,
    })
}

/// Read every listed cgroup's counters and pressure. Cgroups that vanished meanwhile are
/// left out; other failures are logged once per cgroup and left out too, so one broken
/// cgroup cannot stop the period.
pub fn read_cgroup_files(cgroups: &[CgroupEntry]) -> HashMap<u64, (CgroupCounters, PsiSignals)> {
    let mut out = HashMap::with_capacity(cgroups.len());
    for c in cgroups {
        let read = read_counters(&c.dir).and_then(|k| Ok((k, read_pressure(&c.dir)?)));
        match read {
            Ok(v) => {
                out.insert(c.id, v);
            }
            Err(CgroupError::Vanished { .. }) => {}
            Err(err) => tracing::debug!(cgroup = %c.path, cause = %err, "skipping cgroup files this period"),
        }
    }
    out
}
