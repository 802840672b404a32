//! Per-period deltas of the cumulative kernel counters.
//!
//! The eBPF maps only ever count up. A value lower than last period's means the key was
//! deleted and re-created in between (a vanished cgroup's entry reaped, or an inode reused),
//! so the new value is the whole delta rather than a wrapped subtraction.

use truce_common::abi::{BlockStats, DelayStats, HIST_BUCKETS, NetStats, PerfStats, SchedStats};

/// `now - before`, or `now` when the counter restarted.
pub fn counter(now: u64, before: u64) -> u64 {
    if now >= before { now - before } else { now }
}

fn hist(now: &[u64; HIST_BUCKETS], before: &[u64; HIST_BUCKETS]) -> [u64; HIST_BUCKETS] {
    let mut out = [0; HIST_BUCKETS];
    for i in 0..HIST_BUCKETS {
        out[i] = counter(now[i], before[i]);
    }
    out
}

pub trait Delta: Sized + Default {
    fn delta(&self, before: &Self) -> Self;
    /// Any activity at all in this delta.
    fn is_active(&self) -> bool;
}

impl Delta for SchedStats {
    fn delta(&self, b: &Self) -> Self {
        SchedStats {
            on_cpu_ns: counter(self.on_cpu_ns, b.on_cpu_ns),
            rq_wait_ns: counter(self.rq_wait_ns, b.rq_wait_ns),
            rq_waits: counter(self.rq_waits, b.rq_waits),
            voluntary_switches: counter(self.voluntary_switches, b.voluntary_switches),
            involuntary_switches: counter(self.involuntary_switches, b.involuntary_switches),
            wakeups: counter(self.wakeups, b.wakeups),
            migrations: counter(self.migrations, b.migrations),
            _reserved: 0,
            rq_wait_hist: hist(&self.rq_wait_hist, &b.rq_wait_hist),
        }
    }
    fn is_active(&self) -> bool {
        self.on_cpu_ns > 0 || self.rq_wait_ns > 0
    }
}

impl Delta for BlockStats {
    fn delta(&self, b: &Self) -> Self {
        BlockStats {
            read_ops: counter(self.read_ops, b.read_ops),
            read_bytes: counter(self.read_bytes, b.read_bytes),
            write_ops: counter(self.write_ops, b.write_ops),
            write_bytes: counter(self.write_bytes, b.write_bytes),
            other_ops: counter(self.other_ops, b.other_ops),
            latency_ns: counter(self.latency_ns, b.latency_ns),
            latency_hist: hist(&self.latency_hist, &b.latency_hist),
        }
    }
    fn is_active(&self) -> bool {
        self.read_ops + self.write_ops + self.other_ops > 0
    }
}

impl Delta for NetStats {
    fn delta(&self, b: &Self) -> Self {
        NetStats {
            rx_bytes: counter(self.rx_bytes, b.rx_bytes),
            rx_packets: counter(self.rx_packets, b.rx_packets),
            tx_bytes: counter(self.tx_bytes, b.tx_bytes),
            tx_packets: counter(self.tx_packets, b.tx_packets),
        }
    }
    fn is_active(&self) -> bool {
        self.rx_packets + self.tx_packets > 0
    }
}

impl Delta for PerfStats {
    fn delta(&self, b: &Self) -> Self {
        PerfStats {
            cycles: counter(self.cycles, b.cycles),
            instructions: counter(self.instructions, b.instructions),
            llc_misses: counter(self.llc_misses, b.llc_misses),
            _reserved: 0,
        }
    }
    fn is_active(&self) -> bool {
        self.instructions > 0
    }
}

impl Delta for DelayStats {
    fn delta(&self, b: &Self) -> Self {
        DelayStats { wait_ns: counter(self.wait_ns, b.wait_ns), count: counter(self.count, b.count) }
    }
    fn is_active(&self) -> bool {
        self.count > 0
    }
}

/// Deltas of every key present now; keys that vanished since last period are dropped.
pub fn map_delta<K, V>(now: &std::collections::HashMap<K, V>, before: &std::collections::HashMap<K, V>) -> Vec<(K, V)>
where
    K: Copy + Eq + std::hash::Hash + Ord,
    V: Delta,
{
    let zero = V::default();
    let mut out: Vec<(K, V)> = now
        .iter()
        .map(|(k, v)| (*k, v.delta(before.get(k).unwrap_or(&zero))))
        .filter(|(_, d)| d.is_active())
        .collect();
    out.sort_by_key(|a| a.0);
    out
}

/// Percentile `q` (0..=1) of a log2 histogram, as the upper bound of the bucket it falls in.
pub fn percentile(hist: &[u64; HIST_BUCKETS], q: f64) -> Option<u64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let target = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= target {
            return Some(1u64 << (i + 1));
        }
    }
    Some(1u64 << HIST_BUCKETS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn counter_restart_is_whole_value() {
        assert_eq!(counter(10, 4), 6);
        assert_eq!(counter(3, 4), 3);
    }

    #[test]
    fn percentile_upper_bounds() {
        let mut h = [0u64; HIST_BUCKETS];
        h[10] = 98; // [1024, 2048) ns
        h[20] = 2; // [1 Mi, 2 Mi) ns
        assert_eq!(percentile(&h, 0.5), Some(2048));
        assert_eq!(percentile(&h, 0.99), Some(1 << 21));
        assert_eq!(percentile(&[0; HIST_BUCKETS], 0.5), None);
    }

    #[test]
    fn map_delta_drops_idle_and_handles_new_keys() {
        let mut before = HashMap::new();
        before.insert(1u64, SchedStats { on_cpu_ns: 100, ..Default::default() });
        before.insert(2u64, SchedStats { on_cpu_ns: 50, ..Default::default() });
        let mut now = before.clone();
        now.insert(1, SchedStats { on_cpu_ns: 300, ..Default::default() });
        now.insert(3, SchedStats { on_cpu_ns: 7, ..Default::default() });
        let d = map_delta(&now, &before);
        assert_eq!(d.iter().map(|(k, v)| (*k, v.on_cpu_ns)).collect::<Vec<_>>(), vec![(1, 200), (3, 7)]);
    }
}
