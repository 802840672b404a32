//! The scheduler counters the kernel has not flushed yet, and keeping snapshots monotonic.
//!
//! sched_switch charges each CPU's running cgroup into a per-CPU batch (`CPU_SCHED`) and
//! moves it into `SCHED_STATS` only when another cgroup's task switches out there; wakeups
//! and migrations of another cgroup wait in the CPU's event slot likewise. So a snapshot
//! adds every CPU's batch and event slot to the map totals. A flush can land between reading the
//! map and reading the batches; then that batch's counts are missing from one snapshot
//! (the map was read before the flush, the batch after). The next snapshot has them again,
//! so a cgroup's totals would step back and forth. The collector reads a step back as a
//! restarted counter (the whole value as delta), so [`Floor`] never lets a value fall
//! below what an earlier snapshot reported.
use std::collections::{HashMap, HashSet};

use aya::maps::{MapData, PerCpuArray};
use truce_common::{
    abi::{CpuSched, DelayKey, DelayStats, SchedStats},
    names,
};

use super::{ProbeError, load::Probes};

/// Every CPU's unflushed batch (cgroup, counters, waits behind its own tasks) and event
/// slot (cgroup, wakeups, migrations).
pub(super) fn read_batches(probes: &Probes) -> Result<Vec<CpuSched>, ProbeError> {
    let name = names::CPU_SCHED;
    let map = probes.ebpf.map(name).ok_or(ProbeError::MissingMap { name })?;
    let array: PerCpuArray<&MapData, CpuSched> = PerCpuArray::try_from(map).map_err(ProbeError::map(name))?;
    let values = array.get(&0, 0).map_err(ProbeError::map(name))?;
    Ok(values.iter().copied().filter(|cpu| cpu.batch_cgroup != 0 || cpu.events_cgroup != 0).collect())
}

/// The cgroups a CPU's batch or event slot holds (they may still be flushed into the maps).
pub(super) fn held(batches: &[CpuSched]) -> impl Iterator<Item = u64> + '_ {
    batches.iter().flat_map(|cpu| [cpu.batch_cgroup, cpu.events_cgroup]).filter(|&c| c != 0)
}

/// Add the batches and event slots to the map totals. Cgroups already forgotten are left
/// out: their batch is flushed (and forgotten again) later, but they no longer exist.
pub(super) fn fold(
    batches: &[CpuSched],
    forgotten: &HashSet<u64>,
    sched: &mut HashMap<u64, SchedStats>,
    delay: &mut HashMap<DelayKey, DelayStats>,
) {
    for cpu in batches {
        let events = cpu.events_cgroup;
        if events != 0 && !forgotten.contains(&events) && (cpu.events_wakeups | cpu.events_migrations) != 0 {
            let total = sched.entry(events).or_default();
            total.wakeups = total.wakeups.wrapping_add(cpu.events_wakeups);
            total.migrations = total.migrations.wrapping_add(cpu.events_migrations);
        }
        let cgroup = cpu.batch_cgroup;
        if cgroup == 0 || forgotten.contains(&cgroup) {
            continue;
        }
        add_sched(sched.entry(cgroup).or_default(), &cpu.batch);
        if cpu.batch_self_delay.count != 0 {
            let cell = delay.entry(DelayKey { victim: cgroup, delayer: cgroup }).or_default();
            cell.wait_ns = cell.wait_ns.wrapping_add(cpu.batch_self_delay.wait_ns);
            cell.count = cell.count.wrapping_add(cpu.batch_self_delay.count);
        }
    }
}

pub(super) fn add_sched(total: &mut SchedStats, o: &SchedStats) {
    total.on_cpu_ns = total.on_cpu_ns.wrapping_add(o.on_cpu_ns);
    total.rq_wait_ns = total.rq_wait_ns.wrapping_add(o.rq_wait_ns);
    total.rq_waits = total.rq_waits.wrapping_add(o.rq_waits);
    total.voluntary_switches = total.voluntary_switches.wrapping_add(o.voluntary_switches);
    total.involuntary_switches = total.involuntary_switches.wrapping_add(o.involuntary_switches);
    total.wakeups = total.wakeups.wrapping_add(o.wakeups);
    total.migrations = total.migrations.wrapping_add(o.migrations);
    for (x, y) in total.rq_wait_hist.iter_mut().zip(&o.rq_wait_hist) {
        *x = x.wrapping_add(*y);
    }
}

/// The highest value each scheduler counter has been reported at, per key.
#[derive(Debug, Default)]
pub(super) struct Floor {
    sched: HashMap<u64, SchedStats>,
    delay: HashMap<DelayKey, DelayStats>,
}

impl Floor {
    /// Raise every value to at least its last reported value, then remember the result.
    /// A key reported before is reported again even when this read missed it (a new
    /// cgroup's first batch flushed between the two reads): map entries only go away
    /// through [`Probes::forget`], which calls [`Floor::forget`].
    pub(super) fn apply(&mut self, sched: &mut HashMap<u64, SchedStats>, delay: &mut HashMap<DelayKey, DelayStats>) {
        for (key, before) in &self.sched {
            raise_sched(sched.entry(*key).or_default(), before);
        }
        for (key, before) in &self.delay {
            let now = delay.entry(*key).or_default();
            now.wait_ns = now.wait_ns.max(before.wait_ns);
            now.count = now.count.max(before.count);
        }
        self.sched.clone_from(sched);
        self.delay.clone_from(delay);
    }

    /// Forget these cgroups: their entries were deleted, so they restart from zero.
    pub(super) fn forget(&mut self, cgroups: &HashSet<u64>) {
        self.sched.retain(|k, _| !cgroups.contains(k));
        self.delay.retain(|k, _| !cgroups.contains(&k.victim) && !cgroups.contains(&k.delayer));
    }
}

fn raise_sched(now: &mut SchedStats, before: &SchedStats) {
    now.on_cpu_ns = now.on_cpu_ns.max(before.on_cpu_ns);
    now.rq_wait_ns = now.rq_wait_ns.max(before.rq_wait_ns);
    now.rq_waits = now.rq_waits.max(before.rq_waits);
    now.voluntary_switches = now.voluntary_switches.max(before.voluntary_switches);
    now.involuntary_switches = now.involuntary_switches.max(before.involuntary_switches);
    now.wakeups = now.wakeups.max(before.wakeups);
    now.migrations = now.migrations.max(before.migrations);
    for (x, y) in now.rq_wait_hist.iter_mut().zip(&before.rq_wait_hist) {
        *x = (*x).max(*y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(cgroup: u64, on_cpu_ns: u64, self_wait: u64) -> CpuSched {
        let mut cpu = CpuSched { batch_cgroup: cgroup, ..Default::default() };
        cpu.batch.on_cpu_ns = on_cpu_ns;
        cpu.batch.rq_waits = u64::from(self_wait != 0);
        cpu.batch.rq_wait_ns = self_wait;
        cpu.batch_self_delay = DelayStats { wait_ns: self_wait, count: u64::from(self_wait != 0) };
        cpu
    }

    #[test]
    fn batches_add_to_flushed_totals_and_to_the_diagonal_cell() {
        let mut sched = HashMap::from([(7, SchedStats { on_cpu_ns: 100, ..Default::default() })]);
        let mut delay = HashMap::new();
        fold(&[batch(7, 5, 3), batch(7, 1, 0), batch(9, 2, 0)], &HashSet::new(), &mut sched, &mut delay);
        assert_eq!(sched[&7].on_cpu_ns, 106);
        assert_eq!((sched[&7].rq_waits, sched[&7].rq_wait_ns), (1, 3));
        assert_eq!(sched[&9].on_cpu_ns, 2, "a cgroup seen only in a batch still shows up");
        assert_eq!(delay[&DelayKey { victim: 7, delayer: 7 }], DelayStats { wait_ns: 3, count: 1 });
        assert!(!delay.contains_key(&DelayKey { victim: 9, delayer: 9 }), "no empty diagonal cells");
    }

    #[test]
    fn event_slots_add_wakeups_and_migrations_of_another_cgroup() {
        let mut with_events = batch(7, 5, 0);
        with_events.batch.wakeups = 1;
        (with_events.events_cgroup, with_events.events_wakeups, with_events.events_migrations) = (9, 4, 2);
        let only_events = CpuSched { events_cgroup: 7, events_wakeups: 3, ..Default::default() };
        let mut sched = HashMap::from([(9, SchedStats { wakeups: 10, ..Default::default() })]);
        let mut delay = HashMap::new();
        fold(&[with_events, only_events], &HashSet::new(), &mut sched, &mut delay);
        assert_eq!((sched[&7].wakeups, sched[&7].on_cpu_ns), (4, 5));
        assert_eq!((sched[&9].wakeups, sched[&9].migrations), (14, 2));
        assert_eq!(held(&[with_events, only_events]).collect::<Vec<_>>(), [7, 9, 7]);
    }

    #[test]
    fn forgotten_cgroups_stay_out_of_snapshots() {
        let (mut sched, mut delay) = (HashMap::new(), HashMap::new());
        let mut cpu = batch(7, 5, 3);
        (cpu.events_cgroup, cpu.events_wakeups) = (8, 1);
        fold(&[cpu], &HashSet::from([7, 8]), &mut sched, &mut delay);
        assert!(sched.is_empty() && delay.is_empty());
    }

    #[test]
    fn floor_hides_a_flush_raced_by_the_reader_and_restarts_forgotten_keys() {
        let mut floor = Floor::default();
        let (mut sched, mut delay) = (HashMap::from([(7, SchedStats { on_cpu_ns: 50, ..Default::default() })]), HashMap::new());
        floor.apply(&mut sched, &mut delay);
        // The batch holding 20 ns was flushed between the two reads: 30 seen, not 50.
        let mut sched = HashMap::from([(7, SchedStats { on_cpu_ns: 30, wakeups: 2, ..Default::default() })]);
        floor.apply(&mut sched, &mut delay);
        assert_eq!((sched[&7].on_cpu_ns, sched[&7].wakeups), (50, 2));
        // Both reads missed a cgroup whose only batch was flushed in between.
        let mut sched = HashMap::new();
        floor.apply(&mut sched, &mut delay);
        assert_eq!(sched[&7].on_cpu_ns, 50, "a reported key never disappears by itself");
        floor.forget(&HashSet::from([7]));
        let mut sched = HashMap::from([(7, SchedStats { on_cpu_ns: 1, ..Default::default() })]);
        floor.apply(&mut sched, &mut delay);
        assert_eq!(sched[&7].on_cpu_ns, 1);
    }
}
