//! Reading the maps into a cumulative snapshot, and forgetting vanished cgroups.
use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use aya::{
    Pod,
    maps::{MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
};
use truce_common::{
    abi::{BlockKey, BlockStats, DelayKey, DelayStats, NetStats, PerfStats, SchedStats, probe_error},
    names,
};

use super::{ProbeError, batch, load::Probes};

/// Cumulative counters since load, per-CPU values summed, the scheduler's unflushed per-CPU
/// batches included. Never lower than in an earlier snapshot (until `forget`). The
/// collector computes deltas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeSnapshot {
    /// cgroup id -> scheduler counters.
    pub sched: HashMap<u64, SchedStats>,
    /// (victim, delayer) -> run-queue wait: who delayed whom.
    pub delay: HashMap<DelayKey, DelayStats>,
    pub block: HashMap<BlockKey, BlockStats>,
    pub net: HashMap<u64, NetStats>,
    /// None when perf counters are unavailable (see `Capabilities::perf`): never zeros.
    pub perf: Option<HashMap<u64, PerfStats>>,
    /// (probe error name, count) for every non-zero error slot, then the kernel's skipped
    /// runs of each program that had any (`skipped_<program>`, see `skipped_runs_label`).
    pub errors: Vec<(String, u64)>,
}

/// Summing per-CPU values of a map value type.
trait Accumulate: Default {
    fn add(&mut self, other: &Self);
}

fn add_hist(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_add(*y);
    }
}

impl Accumulate for SchedStats {
    fn add(&mut self, o: &Self) {
        batch::add_sched(self, o);
    }
}

impl Accumulate for DelayStats {
    fn add(&mut self, o: &Self) {
        self.wait_ns = self.wait_ns.wrapping_add(o.wait_ns);
        self.count = self.count.wrapping_add(o.count);
    }
}

impl Accumulate for BlockStats {
    fn add(&mut self, o: &Self) {
        self.read_ops = self.read_ops.wrapping_add(o.read_ops);
        self.read_bytes = self.read_bytes.wrapping_add(o.read_bytes);
        self.write_ops = self.write_ops.wrapping_add(o.write_ops);
        self.write_bytes = self.write_bytes.wrapping_add(o.write_bytes);
        self.other_ops = self.other_ops.wrapping_add(o.other_ops);
        self.latency_ns = self.latency_ns.wrapping_add(o.latency_ns);
        add_hist(&mut self.latency_hist, &o.latency_hist);
    }
}

impl Accumulate for NetStats {
    fn add(&mut self, o: &Self) {
        self.rx_bytes = self.rx_bytes.wrapping_add(o.rx_bytes);
        self.rx_packets = self.rx_packets.wrapping_add(o.rx_packets);
        self.tx_bytes = self.tx_bytes.wrapping_add(o.tx_bytes);
        self.tx_packets = self.tx_packets.wrapping_add(o.tx_packets);
    }
}

impl Accumulate for PerfStats {
    fn add(&mut self, o: &Self) {
        self.cycles = self.cycles.wrapping_add(o.cycles);
        self.instructions = self.instructions.wrapping_add(o.instructions);
        self.llc_misses = self.llc_misses.wrapping_add(o.llc_misses);
    }
}

fn sum<V: Pod + Accumulate>(values: &PerCpuValues<V>) -> V {
    let mut total = V::default();
    for v in values.iter() {
        total.add(v);
    }
    total
}

impl Probes {
    fn per_cpu_hash<K: Pod, V: Pod>(&self, name: &'static str) -> Result<PerCpuHashMap<&MapData, K, V>, ProbeError> {
        let map = self.ebpf.map(name).ok_or(ProbeError::MissingMap { name })?;
        PerCpuHashMap::try_from(map).map_err(ProbeError::map(name))
    }

    fn read_all<K: Pod + Eq + Hash, V: Pod + Accumulate>(&self, name: &'static str) -> Result<HashMap<K, V>, ProbeError> {
        let map = self.per_cpu_hash::<K, V>(name)?;
        let mut out = HashMap::new();
        for entry in map.iter() {
            // A key deleted between get_next_key and lookup shows up as an error: skip it,
            // it is exactly what Forget asked for.
            let Ok((key, values)) = entry else { continue };
            out.insert(key, sum(&values));
        }
        Ok(out)
    }

    /// Cumulative counters of every probe group.
    pub fn snapshot(&self) -> Result<ProbeSnapshot, ProbeError> {
        let perf = if self.capabilities().perf.is_available() { Some(self.read_all(names::PERF_STATS)?) } else { None };
        let mut sched: HashMap<u64, SchedStats> = self.read_all(names::SCHED_STATS)?;
        let mut delay: HashMap<DelayKey, DelayStats> = self.read_all(names::DELAY_MATRIX)?;
        // The batches after the maps: a flush in between then hides a batch from this
        // snapshot (the floor below covers it) instead of counting it twice.
        let batches = batch::read_batches(self)?;
        if !self.forgotten.is_empty() {
            sched.retain(|k, _| !self.forgotten.contains(k));
            delay.retain(|k, _| !self.forgotten.contains(&k.victim) && !self.forgotten.contains(&k.delayer));
        }
        batch::fold(&batches, &self.forgotten, &mut sched, &mut delay);
        self.floor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).apply(&mut sched, &mut delay);
        Ok(ProbeSnapshot {
            sched,
            delay,
            block: self.read_all(names::BLOCK_STATS)?,
            net: self.read_all(names::NET_STATS)?,
            perf,
            errors: self.errors()?,
        })
    }

    fn errors(&self) -> Result<Vec<(String, u64)>, ProbeError> {
        let name = names::ERRORS;
        let map = self.ebpf.map(name).ok_or(ProbeError::MissingMap { name })?;
        let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).map_err(ProbeError::map(name))?;
        let mut out = Vec::new();
        for slot in 0..probe_error::SLOTS {
            let values = array.get(&slot, 0).map_err(ProbeError::map(name))?;
            let total = values.iter().fold(0u64, |a, v| a.wrapping_add(*v));
            if total != 0 {
                let label = probe_error::NAMES.get(slot as usize).map_or_else(|| format!("slot_{slot}"), |n| (*n).to_owned());
                out.push((label, total));
            }
        }
        out.extend(self.skipped_runs());
        Ok(out)
    }

    /// Delete every map entry of these cgroups (they vanished), so the maps cannot grow
    /// without bound. Returns how many entries were removed.
    pub fn forget(&mut self, cgroups: &[u64]) -> Result<usize, ProbeError> {
        if cgroups.is_empty() && self.forgotten.is_empty() {
            return Ok(0);
        }
        // A CPU's batch or event slot may still hold a vanished cgroup and flush it back into the maps
        // after the deletes below. Read the batches first: a cgroup no batch holds now has
        // no tasks left to put it back, so only those held stay in `forgotten` (hidden
        // from snapshots, deleted again next time). Cgroup ids are not reused soon (kernfs
        // ids carry a generation), so hiding one cannot hide a new cgroup.
        let held: HashSet<u64> = batch::held(&batch::read_batches(self)?).collect();
        let mut doomed: HashSet<u64> = cgroups.iter().copied().collect();
        doomed.extend(self.forgotten.drain());
        let mut removed = 0;
        removed += self.remove_keys::<u64, SchedStats>(names::SCHED_STATS, |k| doomed.contains(k))?;
        removed += self.remove_keys::<u64, NetStats>(names::NET_STATS, |k| doomed.contains(k))?;
        removed += self.remove_keys::<u64, PerfStats>(names::PERF_STATS, |k| doomed.contains(k))?;
        removed += self.remove_keys::<DelayKey, DelayStats>(names::DELAY_MATRIX, |k| doomed.contains(&k.victim) || doomed.contains(&k.delayer))?;
        removed += self.remove_keys::<BlockKey, BlockStats>(names::BLOCK_STATS, |k| doomed.contains(&k.cgroup_id))?;
        self.floor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).forget(&doomed);
        self.forgotten = doomed.into_iter().filter(|c| held.contains(c)).collect();
        Ok(removed)
    }

    fn remove_keys<K: Pod, V: Pod>(&mut self, name: &'static str, doomed: impl Fn(&K) -> bool) -> Result<usize, ProbeError> {
        let map = self.ebpf.map_mut(name).ok_or(ProbeError::MissingMap { name })?;
        let mut map: PerCpuHashMap<&mut MapData, K, V> = PerCpuHashMap::try_from(map).map_err(ProbeError::map(name))?;
        let keys: Vec<K> = map.keys().filter_map(Result::ok).filter(|k| doomed(k)).collect();
        let mut removed = 0;
        for key in &keys {
            // Already gone (raced with another delete) is fine; anything else is reported.
            match map.remove(key) {
                Ok(()) => removed += 1,
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => return Err(ProbeError::Map { map: name, source: Box::new(source) }),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_values_are_summed_field_by_field() {
        let mut a = SchedStats { on_cpu_ns: 5, rq_wait_ns: 7, rq_waits: 1, ..Default::default() };
        a.rq_wait_hist[3] = 1;
        let mut b = SchedStats { on_cpu_ns: 10, voluntary_switches: 2, wakeups: 4, migrations: 1, ..Default::default() };
        b.rq_wait_hist[3] = 2;
        b.rq_wait_hist[31] = 1;
        let mut total = SchedStats::default();
        total.add(&a);
        total.add(&b);
        assert_eq!((total.on_cpu_ns, total.rq_wait_ns, total.rq_waits), (15, 7, 1));
        assert_eq!((total.voluntary_switches, total.wakeups, total.migrations), (2, 4, 1));
        assert_eq!((total.rq_wait_hist[3], total.rq_wait_hist[31]), (3, 1));
    }

    #[test]
    fn block_and_net_sums_keep_directions_apart() {
        let mut blk = BlockStats::default();
        blk.add(&BlockStats { read_ops: 1, read_bytes: 4096, write_ops: 2, write_bytes: 8192, other_ops: 1, latency_ns: 10, ..Default::default() });
        blk.add(&BlockStats { write_ops: 1, write_bytes: 4096, latency_ns: 5, ..Default::default() });
        assert_eq!((blk.read_bytes, blk.write_bytes, blk.write_ops, blk.other_ops, blk.latency_ns), (4096, 12288, 3, 1, 15));
        let mut net = NetStats::default();
        net.add(&NetStats { rx_bytes: 100, rx_packets: 1, tx_bytes: 0, tx_packets: 0 });
        net.add(&NetStats { rx_bytes: 0, rx_packets: 0, tx_bytes: 60, tx_packets: 2 });
        assert_eq!(net, NetStats { rx_bytes: 100, rx_packets: 1, tx_bytes: 60, tx_packets: 2 });
    }

    #[test]
    fn counters_wrap_instead_of_panicking() {
        let mut p = PerfStats { cycles: u64::MAX, ..Default::default() };
        p.add(&PerfStats { cycles: 2, ..Default::default() });
        assert_eq!(p.cycles, 1);
    }
}
