//! A reaction trial's timeline, read from the agent's JSON log (`TRUCE_LOG_FORMAT=json`,
//! debug for `truce_agent`): each event's time from the onset, its message and its fields.
//! It shows where a trial's time went (trigger, sample, bids, decisions, the write) without a
//! debugger in the VM; `cargo xtask bench reaction --trace` prints it per trial.
use serde_json::{Map, Value};

/// The messages worth a line in a timeline; the rest of a debug log is noise here.
const EVENTS: [&str; 8] = [
    "pressure onset: sampling early",
    "PSI trigger fired on a workload already contended",
    "period",
    "cgroup write",
    "lease lapsed",
    "arbiter connection",
    "decision not applied",
    "decisions applied",
];

/// Events from `from_ms` to `to_ms` after the onset, as (ms after the onset, message, fields).
/// `onset_unix_ms` is the onset on the clock the log's timestamps use (both run on one machine).
/// Lines that are not JSON or carry no readable timestamp are skipped: a timeline is a reading
/// aid, and a panic message in the log must not hide the rest.
pub fn timeline(log: &str, onset_unix_ms: u64, from_ms: i64, to_ms: i64) -> Vec<(i64, String, Map<String, Value>)> {
    let onset_of_day = (onset_unix_ms % DAY_MS) as i64;
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let at = ms_of_day(v["timestamp"].as_str()?)?;
            // Across midnight the difference wraps; bring it back to within half a day.
            let mut offset = at - onset_of_day;
            if offset > DAY_MS as i64 / 2 {
                offset -= DAY_MS as i64;
            } else if offset < -(DAY_MS as i64) / 2 {
                offset += DAY_MS as i64;
            }
            let mut fields = v.get("fields")?.as_object()?.clone();
            let message = fields.remove("message")?.as_str()?.to_string();
            (EVENTS.iter().any(|e| message.starts_with(e)) && (from_ms..=to_ms).contains(&offset)).then_some((offset, message, fields))
        })
        .collect()
}

/// Per event and CPU-time field (`*cpu_us`, the agent's stage costs, and `wakes`, its loop's
/// wake-ups between periods), how many events carried it and their mean, over the events
/// from `from_ms` after the onset on. Sorted by name.
pub fn stage_costs(log: &str, onset_unix_ms: u64, from_ms: i64) -> Vec<(String, usize, f64)> {
    let mut sums = std::collections::BTreeMap::<String, (usize, f64)>::new();
    for (_, message, fields) in timeline(log, onset_unix_ms, from_ms, i64::MAX) {
        for (name, value) in fields.iter().filter(|(n, _)| n.ends_with("cpu_us") || *n == "wakes") {
            if let Some(v) = value.as_f64() {
                let e = sums.entry(format!("{message}: {name}")).or_default();
                *e = (e.0 + 1, e.1 + v);
            }
        }
    }
    sums.into_iter().map(|(k, (n, total))| (k, n, total / n as f64)).collect()
}

const DAY_MS: u64 = 86_400_000;

/// Milliseconds since midnight UTC of an RFC 3339 timestamp as tracing writes it
/// (`2026-11-22T17:20:00.123456Z`).
fn ms_of_day(ts: &str) -> Option<i64> {
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some((h * 3600 + m * 60) * 1000 + (s * 1000.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_timed_from_the_onset_and_filtered_by_message_and_window() {
        // 17:20:00.000 UTC on some day.
        let onset = 1_795_000_000_000 - (1_795_000_000_000 % DAY_MS) + (17 * 3600 + 20 * 60) * 1000;
        let log = [
            r#"{"timestamp":"2026-11-22T17:19:59.900000Z","level":"DEBUG","fields":{"message":"period","sampled_ms":20}}"#,
            r#"{"timestamp":"2026-11-22T17:20:00.104500Z","level":"DEBUG","fields":{"message":"pressure onset: sampling early","resource":"cpu"}}"#,
            r#"{"timestamp":"2026-11-22T17:20:00.200000Z","level":"DEBUG","fields":{"message":"forgot vanished cgroups"}}"#,
            "thread 'main' panicked at src/x.rs:1:1",
            r#"{"timestamp":"2026-11-22T17:20:00.350000Z","level":"INFO","fields":{"message":"cgroup write","file":"cpu.max"}}"#,
            r#"{"timestamp":"2026-11-22T17:20:05.000000Z","level":"INFO","fields":{"message":"cgroup write","file":"cpu.weight"}}"#,
        ]
        .join("\n");
        let t = timeline(&log, onset, -200, 1000);
        let got: Vec<(i64, &str)> = t.iter().map(|(ms, m, _)| (*ms, m.as_str())).collect();
        assert_eq!(got, vec![(-100, "period"), (104, "pressure onset: sampling early"), (350, "cgroup write")]);
        assert_eq!(t[1].2["resource"], "cpu", "the fields stay, without the message");
    }

    #[test]
    fn stage_costs_average_each_cpu_field_per_event_after_the_start() {
        let onset = 1_795_000_000_000 - (1_795_000_000_000 % DAY_MS) + (17 * 3600 + 20 * 60) * 1000;
        let log = [
            r#"{"timestamp":"2026-11-22T17:19:59.900000Z","fields":{"message":"period","read_cpu_us":1000}}"#,
            r#"{"timestamp":"2026-11-22T17:20:00.100000Z","fields":{"message":"period","read_cpu_us":300,"bids":3}}"#,
            r#"{"timestamp":"2026-11-22T17:20:00.600000Z","fields":{"message":"period","read_cpu_us":500}}"#,
            r#"{"timestamp":"2026-11-22T17:20:00.700000Z","fields":{"message":"decisions applied","cpu_us":40}}"#,
        ]
        .join("\n");
        let costs = stage_costs(&log, onset, 0);
        assert_eq!(costs, vec![("decisions applied: cpu_us".to_string(), 1, 40.0), ("period: read_cpu_us".to_string(), 2, 400.0)]);
    }

    #[test]
    fn a_trace_across_midnight_keeps_its_order() {
        let onset = 1_795_000_000_000 - (1_795_000_000_000 % DAY_MS) + DAY_MS - 50;
        let log = r#"{"timestamp":"2026-11-23T00:00:00.100000Z","fields":{"message":"period"}}"#;
        assert_eq!(timeline(log, onset, 0, 1000)[0].0, 150);
    }
}
