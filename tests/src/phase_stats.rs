//! Figures the demo computes about a phase from what its processes left: the agent's CPU by
//! thread, and the victim's p99 after truce's first write.
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Per thread name, the CPU used between two snapshots in % of one CPU over `wall`.
pub fn thread_shares(
    before: &BTreeMap<u32, (String, Duration)>,
    after: &BTreeMap<u32, (String, Duration)>,
    wall: Duration,
) -> Vec<(String, f64)> {
    let mut by_name = BTreeMap::<String, Duration>::new();
    for (tid, (name, t1)) in after {
        let t0 = before.get(tid).map_or(Duration::ZERO, |(_, t)| *t);
        *by_name.entry(name.clone()).or_default() += t1.saturating_sub(t0);
    }
    let mut out: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(n, t)| (n, t.as_secs_f64() * 100.0 / wall.as_secs_f64().max(1e-9)))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Per thread name, the voluntary (blocked, then woken) and involuntary (preempted) context
/// switches a second between two snapshots, busiest waker first, with the total as "all".
/// Threads that exited in between are missing from both.
pub fn switch_rates(
    before: &BTreeMap<u32, (String, u64, u64)>,
    after: &BTreeMap<u32, (String, u64, u64)>,
    wall: Duration,
) -> Vec<(String, f64, f64)> {
    let mut by_name = BTreeMap::<String, (u64, u64)>::new();
    let mut all = (0, 0);
    for (tid, (name, v1, i1)) in after {
        let (v0, i0) = before.get(tid).map_or((0, 0), |(_, v, i)| (*v, *i));
        let (dv, di) = (v1.saturating_sub(v0), i1.saturating_sub(i0));
        let e = by_name.entry(name.clone()).or_default();
        *e = (e.0 + dv, e.1 + di);
        all = (all.0 + dv, all.1 + di);
    }
    let secs = wall.as_secs_f64().max(1e-9);
    let rate = |(name, (v, i)): (String, (u64, u64))| (name, v as f64 / secs, i as f64 / secs);
    let mut out: Vec<(String, f64, f64)> = by_name.into_iter().map(rate).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out.insert(0, rate(("all".to_string(), all)));
    out
}

/// The `p` quantile of sorted latencies in µs, in ms (the nearest rank: the value at
/// `round((n - 1) * p)`); `None` without latencies.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    let i = ((sorted_us.len().checked_sub(1)?) as f64 * p).round() as usize;
    Some(sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0)
}

/// The victim's p99 over the requests that arrived after `from` (truce's first write).
pub fn settled_p99(requests: &std::path::Path, from: Duration) -> Result<Value> {
    let text = std::fs::read_to_string(requests).with_context(|| format!("reading {}", requests.display()))?;
    let from_ms = from.as_millis() as u64;
    let mut latencies: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(at, us)| Some((at.parse::<u64>().ok()?, us.parse::<u64>().ok()?)))
        .filter(|(at, _)| *at >= from_ms)
        .map(|(_, us)| us)
        .collect();
    latencies.sort_unstable();
    let p99 = percentile_ms(&latencies, 0.99);
    Ok(json!({"from_s": from.as_secs_f64(), "p99_ms": p99, "requests": latencies.len()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settled_p99_counts_only_requests_that_arrived_after_the_first_write() {
        let path = std::env::temp_dir().join(format!("truce-settled-{}", std::process::id()));
        // 100 slow requests in the first second, then 200 fast ones; and a torn last line.
        let mut text: String = (0..100).map(|i| format!("{} 900000\n", i * 10)).collect();
        text.extend((0..200).map(|i| format!("{} {}\n", 1000 + i * 10, 5000 + i)));
        text.push_str("2999");
        std::fs::write(&path, text).expect("write");
        let v = settled_p99(&path, Duration::from_secs(1)).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(v["requests"], 200);
        assert_eq!(v["p99_ms"].as_f64(), Some(5.197));
    }
}
