//! The sampling pipeline shared by `observe`, `record` and the daemon: probes snapshot,
//! cgroup walk, cgroup files, procfs, then the pure collector.

use super::cpu_cost::CpuSpan;
use crate::cgroupfs::{self, CgroupFiles, CgroupHost, walk};
use crate::collect::{Collector, Reading, host};
use crate::probes::{self, GroupStatus, PerfMode, PerfStatus, ProbeConfig, ProbeGroups, ProbeHandle};
use anyhow::{Context, Result};
use std::time::{SystemTime, UNIX_EPOCH};
use truce_common::model::Timestamp;
use truce_common::signal::{HostSample, Unavailable};

/// Cgroups deeper or more numerous than this are not listed in one period.
const MAX_DEPTH: usize = 16;
const MAX_CGROUPS: usize = 10_000;

pub struct Sampler {
    probes: ProbeHandle,
    cgroups: CgroupHost,
    collector: Collector,
    /// Taken by the reader task each period and handed back (`None` only while it runs, or
    /// after it panicked: then the next period starts with fresh descriptors).
    files: Option<CgroupFiles>,
    unavailable: Vec<Unavailable>,
    cost: SampleCost,
}

/// The last sample's CPU time by stage, in µs (see [`super::cpu_cost`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SampleCost {
    /// Listing the cgroups and reading their files and /proc (the reader thread).
    pub read_us: u64,
    /// Turning the reading into a sample (the caller's thread).
    pub observe_us: u64,
}

pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

impl Sampler {
    /// Discover cgroup v2 and load the probes (blocking; call before the hot loop).
    pub fn start(perf: PerfMode, groups: ProbeGroups) -> Result<Sampler> {
        let cgroups = cgroupfs::discover().context("cgroup v2 discovery failed")?;
        let probes = probes::spawn(ProbeConfig { perf, cgroup2_root: Some(cgroups.mount.clone()), groups, block_completion: Default::default() })
            .map_err(|e| anyhow::anyhow!("{}", probes::error_chain(&e)))
            .context("loading the eBPF probes failed")?;
        let caps = probes.capabilities().clone();
        let mut unavailable = Vec::new();
        for (signal, status) in [(probes::BLOCK_SIGNAL, &caps.block), (probes::NET_SIGNAL, &caps.net)] {
            if let GroupStatus::Unavailable { reason } = status {
                unavailable.push(Unavailable { signal: signal.into(), reason: reason.clone() });
            }
        }
        if let PerfStatus::Unavailable { reason } = &caps.perf {
            unavailable.push(Unavailable { signal: "perf (CPI, LLC misses)".into(), reason: reason.clone() });
        }
        if !std::path::Path::new("/proc/pressure/cpu").exists() {
            unavailable.push(Unavailable { signal: "psi".into(), reason: "kernel has no /proc/pressure (boot with psi=1)".into() });
        }
        tracing::info!(cgroup = %cgroups.summary(), sched = ?caps.sched, block = ?caps.block, net = ?caps.net, perf = ?caps.perf, "probes ready");
        Ok(Sampler { probes, cgroups, collector: Collector::new(), files: Some(CgroupFiles::new()), unavailable, cost: SampleCost::default() })
    }

    pub fn cgroups(&self) -> &CgroupHost {
        &self.cgroups
    }

    /// Which probe groups attached and whether perf counters opened.
    pub fn capabilities(&self) -> &probes::Capabilities {
        self.probes.capabilities()
    }

    pub fn last_cost(&self) -> SampleCost {
        self.cost
    }

    pub fn unavailable(&self) -> &[Unavailable] {
        &self.unavailable
    }

    /// Take one reading. The first call only sets the baseline and returns `None`.
    pub async fn tick(&mut self) -> Result<Option<HostSample>> {
        let probes = self.probes.snapshot().await.map_err(|e| anyhow::anyhow!("{}", probes::error_chain(&e)))?;
        let mount = self.cgroups.mount.clone();
        let mut reader = self.files.take().unwrap_or_default();
        let (cgroups, files, host, reader, read_us) = tokio::task::spawn_blocking(move || -> Result<_> {
            let cost = CpuSpan::start();
            let cgroups = walk(&mount, MAX_DEPTH, MAX_CGROUPS).context("listing cgroups")?;
            let files = reader.read(&cgroups);
            let host = host::read_host().context("reading /proc")?;
            Ok((cgroups, files, host, reader, cost.micros()))
        })
        .await
        .context("reader task panicked")??;
        self.files = Some(reader);
        let reading = Reading { at: now(), probes, cgroups, files, host, unavailable: self.unavailable.clone() };
        let observing = CpuSpan::start();
        let out = self.collector.observe(reading);
        self.cost = SampleCost { read_us, observe_us: observing.micros() };
        if !out.vanished.is_empty() {
            match self.probes.forget(out.vanished.clone()).await {
                Ok(n) => tracing::debug!(cgroups = out.vanished.len(), entries = n, "forgot vanished cgroups"),
                Err(e) => tracing::warn!(cause = %probes::error_chain(&e), "could not forget vanished cgroups"),
            }
        }
        Ok(out.sample)
    }

    /// The kernel's run time and count per probe program; empty if the probe owner is gone.
    pub async fn probe_run_stats(&self) -> Vec<probes::ProgramRunStats> {
        self.probes.run_stats().await.unwrap_or_default()
    }

    /// Detach every probe.
    pub async fn shutdown(self) {
        if let Err(e) = self.probes.shutdown().await {
            tracing::warn!(cause = %probes::error_chain(&e), "probe shutdown failed");
        }
    }
}
