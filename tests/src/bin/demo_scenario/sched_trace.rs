//! `TRUCE_SCHED_TRACE=1` in the guest (`TRUCE_VM_PRELUDE='export TRUCE_SCHED_TRACE=1'`): each
//! phase records the kernel's `sched_switch` and `sched_wakeup` events through tracefs, and
//! its end says what held the CPU while the victim's slowest requests waited. An experiment
//! instrument for bench mitigation: the agent's own view (its probes) cannot show what ran in
//! the milliseconds of one request, and perf is not in the guest.
//!
//! A request, seen from the kernel: the victim is woken (`sched_wakeup`) and runs until it
//! sleeps again (`sched_switch` with the victim as `prev` in state S). Everything that ran on
//! the CPU in between delayed it. It counts what ran on any CPU, so it records only with one
//! CPU online (`--vcpus 1`); with more it says so and records nothing.
use std::collections::HashMap;
use std::path::Path;

const TRACEFS: &str = "/sys/kernel/tracing";

/// Recording for one phase; `None` when the variable is unset or tracefs refused.
pub struct SchedTrace;

impl SchedTrace {
    pub fn start() -> Option<SchedTrace> {
        std::env::var_os("TRUCE_SCHED_TRACE")?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus > 1 {
            println!("  sched trace: needs one CPU (it counts what ran on every CPU), {cpus} here; not recording");
            return None;
        }
        let set = |file: &str, value: &str| std::fs::write(Path::new(TRACEFS).join(file), value);
        let armed = set("tracing_on", "0")
            .and_then(|()| set("buffer_size_kb", "65536"))
            .and_then(|()| set("options/record-tgid", "1"))
            .and_then(|()| set("trace", ""))
            .and_then(|()| set("events/sched/sched_switch/enable", "1"))
            .and_then(|()| set("events/sched/sched_wakeup/enable", "1"))
            .and_then(|()| set("tracing_on", "1"));
        match armed {
            Ok(()) => Some(SchedTrace),
            Err(e) => {
                println!("  sched trace: cannot record ({e})");
                None
            }
        }
    }

    /// Stop, read the events and print who ran during the victim's slowest requests.
    /// `roles` names processes by pid (the victim's must be among them as "victim").
    pub fn report(self, roles: &HashMap<u32, &str>) {
        let _ = std::fs::write(Path::new(TRACEFS).join("tracing_on"), "0");
        let text = std::fs::read_to_string(Path::new(TRACEFS).join("trace")).unwrap_or_default();
        let tgids = std::fs::read_to_string(Path::new(TRACEFS).join("saved_tgids")).unwrap_or_default();
        let Some(&victim) = roles.iter().find(|(_, r)| **r == "victim").map(|(p, _)| p) else { return };
        let events: Vec<Event> = text.lines().filter_map(parse).collect();
        let tgid_of: HashMap<u32, u32> = tgids
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(t, g)| Some((t.trim().parse().ok()?, g.trim().parse().ok()?)))
            .collect();
        let name = |tid: u32, comm: &str| -> String {
            let tgid = tgid_of.get(&tid).copied().unwrap_or(tid);
            match roles.get(&tgid) {
                // The agent's threads by name: which part of it ran.
                Some(&"agent") => format!("agent/{comm}"),
                Some(role) => (*role).to_string(),
                None => comm.split('/').next().unwrap_or(comm).to_string(),
            }
        };
        let (runs, episodes) = timeline(&events, victim);
        if episodes.is_empty() {
            println!("  sched trace: no victim requests in {} events", events.len());
            return;
        }
        let mut by_length: Vec<&(f64, f64)> = episodes.iter().collect();
        by_length.sort_by(|a, b| (b.1 - b.0).total_cmp(&(a.1 - a.0)));
        let slow = &by_length[..(episodes.len() / 100).max(5).min(episodes.len())];
        let mut total: HashMap<String, f64> = HashMap::new();
        for (from, to) in slow.iter().map(|e| **e) {
            for (who, ms) in who_ran(&runs, from, to, &name) {
                *total.entry(who).or_default() += ms;
            }
        }
        let mut total: Vec<(String, f64)> = total.into_iter().collect();
        total.sort_by(|a, b| b.1.total_cmp(&a.1));
        let per = slow.len() as f64;
        let parts: Vec<String> = total.iter().take(8).map(|(w, ms)| format!("{w} {:.2} ms", ms / per)).collect();
        println!(
            "  sched trace: {} requests, {} events; the slowest {} (from {:.2} ms) held, per request: {}",
            episodes.len(),
            events.len(),
            slow.len(),
            (slow[slow.len() - 1].1 - slow[slow.len() - 1].0) * 1e3,
            parts.join(", ")
        );
        for (from, to) in slow.iter().take(5).map(|e| **e) {
            let parts: Vec<String> = who_ran(&runs, from, to, &name).into_iter().take(5).map(|(w, ms)| format!("{w} {ms:.2}")).collect();
            println!("    request at {from:.3} s took {:.2} ms: {}", (to - from) * 1e3, parts.join(", "));
        }
    }
}

/// One trace line: when, and a switch or a wake-up.
#[derive(Debug, PartialEq)]
enum Event {
    Switch { at: f64, prev: u32, prev_sleeps: bool, next: u32, next_comm: String },
    Wakeup { at: f64, pid: u32 },
}

/// `  comm-12 (   10) [000] d..2.  123.456789: sched_switch: prev_comm=a prev_pid=12 prev_prio=120
/// prev_state=S ==> next_comm=b next_pid=13 next_prio=120` (and `sched_wakeup: comm=b pid=13 ...`).
fn parse(line: &str) -> Option<Event> {
    let field = |body: &str, key: &str| -> Option<String> {
        let at = body.find(key)? + key.len();
        Some(body[at..].split_whitespace().next()?.to_string())
    };
    let time = |head: &str| head.split_whitespace().last()?.trim_end_matches(':').parse::<f64>().ok();
    if let Some((head, body)) = line.split_once(": sched_switch: ") {
        let next_comm = body.split_once("next_comm=")?.1.split_once(" next_pid=")?.0.to_string();
        return Some(Event::Switch {
            at: time(head)?,
            prev: field(body, " prev_pid=")?.parse().ok()?,
            prev_sleeps: !field(body, " prev_state=")?.starts_with('R'),
            next: field(body, " next_pid=")?.parse().ok()?,
            next_comm,
        });
    }
    let (head, body) = line.split_once(": sched_wakeup: ")?;
    Some(Event::Wakeup { at: time(head)?, pid: field(body, " pid=")?.parse().ok()? })
}

/// Who ran when (tid, comm, from, to), and the victim's requests (woken → asleep again).
type Runs = Vec<(u32, String, f64, f64)>;

fn timeline(events: &[Event], victim: u32) -> (Runs, Vec<(f64, f64)>) {
    let mut runs = Vec::new();
    let mut episodes = Vec::new();
    let mut running: Option<(u32, String, f64)> = None;
    let mut woken: Option<f64> = None;
    for e in events {
        match e {
            Event::Wakeup { at, pid } if *pid == victim => {
                woken.get_or_insert(*at);
            }
            Event::Wakeup { .. } => {}
            Event::Switch { at, prev, prev_sleeps, next, next_comm } => {
                if let Some((tid, comm, since)) = running.take() {
                    runs.push((tid, comm, since, *at));
                }
                running = Some((*next, next_comm.clone(), *at));
                if *prev == victim
                    && *prev_sleeps
                    && let Some(from) = woken.take()
                {
                    episodes.push((from, *at));
                }
            }
        }
    }
    (runs, episodes)
}

/// Milliseconds each party ran within [from, to], largest first.
fn who_ran(runs: &Runs, from: f64, to: f64, name: &impl Fn(u32, &str) -> String) -> Vec<(String, f64)> {
    let mut by: HashMap<String, f64> = HashMap::new();
    for (tid, comm, a, b) in runs {
        let overlap = b.min(to) - a.max(from);
        if overlap > 0.0 {
            *by.entry(name(*tid, comm)).or_default() += overlap * 1e3;
        }
    }
    let mut out: Vec<(String, f64)> = by.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_switches_and_wakeups() {
        let switch = "   truce-agent-88   (   88) [000] d..2.   12.500000: sched_switch: prev_comm=truce-agent prev_pid=88 prev_prio=120 prev_state=R+ ==> next_comm=kworker/0:1 H next_pid=7 next_prio=120";
        assert_eq!(parse(switch), Some(Event::Switch { at: 12.5, prev: 88, prev_sleeps: false, next: 7, next_comm: "kworker/0:1 H".into() }));
        let wake = "  <idle>-0     (-------) [000] dNh4.   12.000100: sched_wakeup: comm=truce-demo-load pid=42 prio=120 target_cpu=000";
        assert_eq!(parse(wake), Some(Event::Wakeup { at: 12.0001, pid: 42 }));
        assert_eq!(parse("# tracer: nop"), None);
    }

    #[test]
    fn a_request_counts_what_ran_between_the_wakeup_and_the_victims_sleep() {
        let sw = |at: f64, prev: u32, prev_sleeps: bool, next: u32| Event::Switch { at, prev, prev_sleeps, next, next_comm: format!("t{next}") };
        let events = [
            sw(0.0, 0, false, 9),             // the agent (9) runs
            Event::Wakeup { at: 0.001, pid: 5 }, // the victim (5) is woken
            sw(0.004, 9, false, 5),           // the agent yields 3 ms later
            sw(0.006, 5, true, 9),            // the victim sleeps after 2 ms
        ];
        let (runs, episodes) = timeline(&events, 5);
        assert_eq!(episodes, vec![(0.001, 0.006)]);
        let ran = who_ran(&runs, 0.001, 0.006, &|tid, _| if tid == 5 { "victim".into() } else { "agent".into() });
        let ms: Vec<(String, i64)> = ran.into_iter().map(|(w, ms)| (w, (ms * 1000.0).round() as i64)).collect();
        assert_eq!(ms, vec![("agent".to_string(), 3000), ("victim".to_string(), 2000)]);
    }
}
