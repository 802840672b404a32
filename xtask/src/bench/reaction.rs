//! `cargo xtask bench reaction`: from interference onset (the CPU antagonist starts next to a
//! running victim) to truce's first cgroup write, in the VM. Side by side in one boot: the agent
//! with `pressure_onset` off (it sees the onset at its next period) and on (a PSI trigger pulls
//! the sample forward), at each period asked for. Goal: p99 <= 300 ms.
//!
//! Extra arguments: `--trials N` per variant (default 8), `--periods A,B` in ms (default 500),
//! `--onset off,on` (default both), `--vcpus A,B` (default 1,2; one boot each: see bench
//! mitigation for why one vCPU takes qemu's turn-taking out of the measurement), `--arbiter
//! vm,host` (default host: on this host, reached over qemu's user-mode network, as in
//! production where the arbiter is another machine; `vm` runs it in the guest next to the
//! agent, sharing its vCPUs; both side by side in one boot), `--trace` (the agent logs at debug
//! level and each trial's timeline is printed: trigger, samples, bids, writes, ms from onset),
//! `--system-weight A,B` (the `cpu.weight` of the daemons' cgroup against the workloads' 100,
//! as a unit's `CPUWeight=` sets it; side by side in one boot; default: the kernel's 100),
//! `--agent-policy batch,normal` (the agent's `cpu_policy`; side by side in one boot; default:
//! the agent's own), `--poller reopen,pread` (how the trial watches the knobs every ms: each
//! file opened afresh, or held open and read again; side by side in one boot; default pread).
//! The table's last column is the watcher's CPU over the time it watched: under TCG it shares
//! the vCPU with the agent, so what it takes slows the reaction it measures.
use super::flag;
use crate::demo::Place;
use anyhow::{Result, bail};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

pub fn run(rest: &[String]) -> Result<()> {
    let trials: u32 = flag(rest, "--trials", 8)?;
    let periods: Vec<u64> = super::numbers(&flag(rest, "--periods", "500".to_string())?, "--periods")?;
    let onsets: Vec<bool> = flag(rest, "--onset", "off,on".to_string())?
        .split(',')
        .map(|o| o.parse().map(|super::OnOff(on)| on).map_err(|()| anyhow::anyhow!("--onset: {:?} is neither on nor off", o.trim())))
        .collect::<Result<_>>()?;
    let places: Vec<Place> = flag(rest, "--arbiter", "host".to_string())?.split(',').map(Place::parse).collect::<Result<_>>()?;
    // The cpu.weight of the daemons' cgroup against the workloads' 100 (0: left at the kernel's default).
    let weights: Vec<u32> = super::numbers(&flag(rest, "--system-weight", "0".to_string())?, "--system-weight")?;
    if let Some(w) = weights.iter().find(|&&w| w > 10_000) {
        bail!("--system-weight: {w} is not a cpu.weight from 1 to 10000");
    }
    // The agent's cpu_policy ("": its default).
    let policies: Vec<String> = flag(rest, "--agent-policy", "".to_string())?.split(',').map(|p| p.trim().to_string()).collect();
    if let Some(p) = policies.iter().find(|p| !p.is_empty() && !crate::demo::AGENT_POLICIES.contains(&p.as_str())) {
        bail!("--agent-policy: {p:?} is neither batch nor normal");
    }
    // How the trial watches the knobs ("pread" is the scenario's default).
    let pollers: Vec<String> = flag(rest, "--poller", "pread".to_string())?.split(',').map(|p| p.trim().to_string()).collect();
    if let Some(p) = pollers.iter().find(|p| !POLLERS.contains(&p.as_str())) {
        bail!("--poller: {p:?} is neither reopen nor pread");
    }
    let mut variants = Vec::new();
    for &period in &periods {
        for &onset in &onsets {
            for &weight in &weights {
                for policy in &policies {
                    for poller in &pollers {
                        variants.extend(places.iter().map(|&place| Variant { period, onset, place, weight, policy, poller }));
                    }
                }
            }
        }
    }
    crate::setup::run(&crate::setup::Args { no_vm: false })?;
    let trace = rest.iter().any(|a| a == "--trace");
    let script = variants.iter().map(|v| v.command(trials, trace)).collect::<Vec<_>>().join(" && ");
    let remote = if places.contains(&Place::Host) { Place::Host } else { Place::Vm };
    let vcpus: Vec<u32> = super::numbers(&flag(rest, "--vcpus", "1,2".to_string())?, "--vcpus")?;
    let budget = u64::from(trials) * variants.len() as u64 * 90 + 120;
    let mut tables = Vec::new();
    for &n in &vcpus {
        let console = crate::demo::boot_with_arbiter("6.12", &script, budget, &format!("[reaction {n} vCPU] "), n.max(1), remote)?;
        tables.push((n, console));
    }
    if trace {
        for (n, console) in &tables {
            print_traces(*n, console);
        }
    }
    println!("\nbench reaction (VM, TCG; onset = antagonist start, end = first cgroup write truce made)");
    println!("{:>6} {:>10} {:>15} {:>8} {:>14} {:>8} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10}", "vCPUs", "period", "pressure_onset", "arbiter", "daemons' weight", "policy", "poller", "trials", "p50", "p99", "max", "poller CPU");
    for (n, console) in &tables {
        for v in &variants {
            let trials: Vec<serde_json::Value> = console
                .iter()
                .filter_map(|l| l.find('{').map(|i| &l[i..]))
                .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                .filter(|t| v.measured(t))
                .collect();
            let mut ms: Vec<f64> = trials.iter().filter_map(|t| t["reaction_ms"].as_f64()).collect();
            if ms.is_empty() {
                bail!("no reaction measured with {n} vCPU for {}", v.describe());
            }
            // The watcher's own CPU over the time it watched: what it took from the agent.
            let poll_cpu: f64 = trials.iter().filter_map(|t| t["poll_cpu_ms"].as_f64()).sum();
            let poller_share = if trials.iter().all(|t| t["poll_cpu_ms"].is_f64()) { format!("{:.0} %", 100.0 * poll_cpu / ms.iter().sum::<f64>()) } else { "-".into() };
            ms.sort_by(f64::total_cmp);
            let weight = if v.weight > 0 { v.weight.to_string() } else { "default".into() };
            let policy = if v.policy.is_empty() { "default" } else { v.policy };
            println!(
                "{:>6} {:>7} ms {:>15} {:>8} {:>14} {:>8} {:>7} {:>7} {:>7.0} ms {:>7.0} ms {:>7.0} ms {:>10}",
                n,
                v.period,
                on_off(v.onset),
                v.place.name(),
                weight,
                policy,
                v.poller,
                ms.len(),
                percentile(&ms, 0.5),
                percentile(&ms, 0.99),
                ms[ms.len() - 1],
                poller_share
            );
        }
    }
    println!("goal: p99 <= 300 ms");
    Ok(())
}

/// Each traced trial's timeline: one line per agent event, in ms from the onset.
fn print_traces(vcpus: u32, console: &[String]) {
    let traces = console.iter().filter_map(|l| l.find('{').map(|i| &l[i..])).filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok()).filter(|v| v["trace"].is_u64());
    for t in traces {
        println!("\ntrace: {vcpus} vCPU, period {} ms, pressure_onset {}, trial {}", t["period_ms"], t["onset"], t["trace"]);
        for e in t["events"].as_array().into_iter().flatten() {
            let fields = e[2].as_object().map(|f| f.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect::<Vec<_>>().join(" ")).unwrap_or_default();
            println!("  {:>+6} ms  {}  {}", e[0].as_i64().unwrap_or(0), e[1].as_str().unwrap_or(""), fields);
        }
    }
}

/// The watcher's ways of reading the knobs (`--poller`).
const POLLERS: [&str; 2] = ["reopen", "pread"];

fn on_off(o: bool) -> &'static str {
    if o { "on" } else { "off" }
}

/// One arm of the comparison: the scenario's settings for a run of trials.
struct Variant<'a> {
    period: u64,
    onset: bool,
    place: Place,
    /// The daemons' cgroup weight (0: the kernel's default).
    weight: u32,
    /// The agent's cpu_policy ("": its default).
    policy: &'a str,
    poller: &'a str,
}

impl Variant<'_> {
    /// The scenario's command line for `trials` trials of this arm.
    fn command(&self, trials: u32, trace: bool) -> String {
        let Variant { period: p, onset, place, weight: w, policy, poller } = self;
        let mut cmd = format!(
            "truce-demo-scenario reaction --dir /tmp/truce-reaction-{p}-{}-{}-{w}-{policy}-{poller} --trials {trials} --period-ms {p} --round-ms 100 --onset {} --arbiter {} --poller {poller}",
            on_off(*onset),
            place.name(),
            on_off(*onset),
            place.scenario_arg(),
        );
        if *w > 0 {
            cmd += &format!(" --system-weight {w}");
        }
        if !policy.is_empty() {
            cmd += &format!(" --agent-policy {policy}");
        }
        if trace {
            cmd += " --trace";
        }
        cmd
    }

    /// Whether a trial's JSON line was measured in this arm.
    fn measured(&self, t: &serde_json::Value) -> bool {
        t["period_ms"].as_u64() == Some(self.period)
            && t["onset"].as_bool() == Some(self.onset)
            // Runs from before the arbiter could move name no place: the VM.
            && t["arbiter"].as_str().unwrap_or("here") == self.place.scenario_arg()
            && t["system_weight"].as_u64().unwrap_or(0) == u64::from(self.weight)
            && t["agent_policy"].as_str().unwrap_or("") == self.policy
            // Runs from before the poller could be chosen reopened every file.
            && t["poller"].as_str().unwrap_or("reopen") == self.poller
    }

    fn describe(&self) -> String {
        format!(
            "period {} ms with pressure_onset {}, the arbiter on the {}, the daemons' weight {}, the agent's policy {:?} and the {} poller",
            self.period,
            on_off(self.onset),
            self.place.name(),
            self.weight,
            self.policy,
            self.poller
        )
    }
}
