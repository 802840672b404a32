//! Reading the probes in the privileged tests: load them, snapshot them, snapshot a frozen
//! cgroup once every count of it is in, and compare a measurement with its reference.
use crate::cgroups::TestCgroup;
use anyhow::{Context, Result, bail};
use std::{fs, thread, time::Duration};
use truce_agent::probes::{PerfMode, ProbeConfig, ProbeSnapshot, Probes, error_chain};

pub fn load(perf: PerfMode) -> Result<Probes> {
    load_with(&ProbeConfig { perf, ..Default::default() })
}

/// [`load`] with every setting of the loader.
pub fn load_with(config: &ProbeConfig) -> Result<Probes> {
    Probes::load(config).map_err(|e| anyhow::anyhow!("loading probes: {}", error_chain(&e)))
}

pub fn snapshot(probes: &Probes) -> Result<ProbeSnapshot> {
    probes.snapshot().map_err(|e| anyhow::anyhow!("snapshot: {}", error_chain(&e)))
}

/// Freeze `cgroup`, wait until the kernel reports it frozen, then snapshot. A frozen task has
/// switched out, so every switch-time charge (the last on-CPU stretch, the perf delta) is in.
/// Killing the burner instead gives no such point: `wait()` returns when the task turns
/// zombie, before its final switch-out, and on a loaded machine that switch came late enough
/// to lose 37 % of a burner's cpu-clock (6.1 under TCG) and 23 % of its on-CPU time (the
/// host, during a CI run on a loaded machine), even after polling until the counters held
/// still for 50 ms.
/// Several cgroups matter when one snapshot compares maps charged at the same switch (the
/// who-delayed-whom row against the total wait): a switch between reading the two maps once
/// made the row exceed the total (6.12, CI).
///
/// One snapshot can still miss a CPU's unflushed batch: it reads the maps, then the
/// per-CPU batches, and a flush in between (another cgroup's task switching out there)
/// moves the batch out of the second read after the first (documented in the agent's
/// `probes::batch`; its floor makes the next snapshot whole). That is how CI once saw a
/// frozen burner 9.7 % short of cpu.stat. A frozen cgroup adds nothing new, so each CPU's
/// batch of it can be flushed, and missed, at most once: of `CPUs + 1` snapshots one is
/// whole, and the probes' floor makes the last one the per-counter maximum, i.e. that one.
pub fn frozen_snapshot(probes: &Probes, cgroups: &[&TestCgroup]) -> Result<ProbeSnapshot> {
    for cgroup in cgroups {
        fs::write(cgroup.path.join("cgroup.freeze"), "1").context("writing cgroup.freeze")?;
    }
    for cgroup in cgroups {
        let mut frozen = false;
        for _ in 0..400 {
            let events = fs::read_to_string(cgroup.path.join("cgroup.events")).context("reading cgroup.events")?;
            if events.lines().any(|l| l.trim() == "frozen 1") {
                frozen = true;
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        if !frozen {
            bail!("{} was not frozen 10 s after cgroup.freeze", cgroup.path.display());
        }
    }
    // Possible CPUs, as many as the per-CPU batch array has (not this thread's affinity).
    let cpus = aya::util::nr_cpus().map_err(|(path, e)| anyhow::anyhow!("reading {path}: {e}"))?;
    for _ in 0..cpus {
        snapshot(probes)?;
    }
    snapshot(probes)
}

/// `measured` is within `rel` (fraction) plus `abs` of `reference`.
pub fn assert_close(what: &str, measured: f64, reference: f64, rel: f64, abs: f64) {
    let diff = (measured - reference).abs();
    println!("{what}: measured {measured:.0}, reference {reference:.0}, diff {:.1}%", 100.0 * diff / reference.max(1.0));
    assert!(diff <= reference * rel + abs, "{what}: measured {measured} vs reference {reference} (tolerance {rel} + {abs})");
}
