//! What `--trace` adds to a phase: the agent's timeline next to the victim's slowest requests,
//! and what the agent's probes cost in the kernel (the agent runs with `--probe-run-time`).
use serde_json::Value;
use std::time::Duration;
use truce_tests::scenario::{Proc, Setup};

/// `--trace`: the victim's slowest requests over the whole phase, each cluster of them (within
/// 500 ms of each other) with the agent's timeline around it (ms from the antagonists' start),
/// to tell what the agent did when they waited.
pub fn print_timeline(s: &Setup, start_unix_ms: u64) {
    let log = std::fs::read_to_string(s.dir.join("agent.log")).unwrap_or_default();
    let text = std::fs::read_to_string(s.requests_file()).unwrap_or_default();
    let mut slow: Vec<(u64, u64)> = text.lines().filter_map(|l| l.split_once(' ')).filter_map(|(a, u)| Some((a.parse().ok()?, u.parse().ok()?))).collect();
    slow.sort_by_key(|&(_, us)| std::cmp::Reverse(us));
    slow.truncate(12);
    slow.sort_unstable();
    for cluster in clusters(&slow) {
        let from = cluster[0].0 as i64 - 500;
        let to = cluster.iter().map(|&(at, us)| (at + us / 1000) as i64).max().unwrap_or(from) + 100;
        println!("  around {} ms:", cluster[0].0);
        for (ms, message, fields) in truce_tests::agent_trace::timeline(&log, start_unix_ms, from, to) {
            println!("    trace {ms:>6} ms  {message}  {}", Value::Object(fields));
        }
        for (at, us) in cluster {
            println!("    slow request: arrived {at:>6} ms, took {:.1} ms", *us as f64 / 1000.0);
        }
    }
}

/// `--trace`: the agent's mean CPU time per stage over the phase (its `*cpu_us` log fields),
/// to tell which part of its period takes the CPU the victim waits for.
pub fn print_stage_costs(s: &Setup, start_unix_ms: u64) {
    let log = std::fs::read_to_string(s.dir.join("agent.log")).unwrap_or_default();
    for (name, n, mean) in truce_tests::agent_trace::stage_costs(&log, start_unix_ms, 0) {
        if name.ends_with("wakes") {
            println!("  agent by stage: {name}: mean {mean:.1} over {n}");
        } else {
            println!("  agent CPU by stage: {name}: mean {:.2} ms over {n}", mean / 1000.0);
        }
    }
    // Every message the agent logged over the phase, counted: what else woke it.
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for v in log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        if let Some(m) = v["fields"]["message"].as_str() {
            *counts.entry(m.chars().take(60).collect()).or_default() += 1;
        }
    }
    let parts: Vec<String> = counts.iter().map(|(m, n)| format!("{n}x {m}")).collect();
    println!("  agent log messages (whole run so far): {}", parts.join("; "));
}

/// Requests (arrival ms, latency us) sorted by arrival, split where two are 500 ms apart.
fn clusters(requests: &[(u64, u64)]) -> Vec<&[(u64, u64)]> {
    let mut out = Vec::new();
    let mut first = 0;
    for i in 1..=requests.len() {
        if i == requests.len() || requests[i].0 - requests[i - 1].0 > 500 {
            out.push(&requests[first..i]);
            first = i;
        }
    }
    out
}

/// Seconds the kernel spent in each probe program by some moment (empty when not tracing).
pub struct ProbeTime(Vec<(String, f64)>);

impl ProbeTime {
    pub fn read(s: &Setup, agent: Option<&Proc>) -> ProbeTime {
        if !s.trace_agent || agent.is_none() {
            return ProbeTime(Vec::new());
        }
        ProbeTime(s.agent_counters_by("truce_agent_probe_run_time_seconds_total", "program"))
    }

    /// Print the probes' kernel time since this reading, over `elapsed`. The probes run in the
    /// workloads' own context (scheduler, block and network paths), so this is CPU the agent's
    /// own figure leaves out.
    pub fn print_since(&self, s: &Setup, agent: Option<&Proc>, elapsed: Duration) {
        let now = ProbeTime::read(s, agent);
        if now.0.is_empty() {
            return;
        }
        let before = |program: &str| self.0.iter().find(|(p, _)| p == program).map_or(0.0, |(_, t)| *t);
        let spent: Vec<(&str, f64)> = now.0.iter().map(|(p, t)| (p.as_str(), t - before(p))).filter(|(_, t)| *t > 0.0).collect();
        let total: f64 = spent.iter().map(|(_, t)| t).sum();
        let parts: Vec<String> = spent.iter().map(|(p, t)| format!("{p} {:.1} ms", t * 1000.0)).collect();
        println!("  the probes ran {:.1} ms in the kernel ({:.2} % of one CPU): {}", total * 1000.0, total * 100.0 / elapsed.as_secs_f64(), parts.join(", "));
    }
}
