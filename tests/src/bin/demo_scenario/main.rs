//! truce-demo-scenario: the demo and two benchmarks, run where cgroup v2 can enforce (inside the
//! test VM, or on a host with `cargo xtask demo --host`).
//!
//! ```text
//! truce-demo-scenario demo     --dir D [--phase-seconds 20] [--rounds 1] [--period-ms 500] [--io-device /dev/vda] [--cuts observe,quota,weight,yield,static] [--arbiter here|remote] [--forecast-share S] [--system-weight W] [--agent-policy batch|normal] [--no-io-hog] [--burst-us U] [--burst-pieces N] [--burst-policy normal|batch] [--trace]
//! truce-demo-scenario reaction --dir D [--trials 5] [--period-ms 500] [--onset on|off] [--arbiter here|remote] [--trace] [--system-weight W] [--agent-policy batch|normal]
//! ```
//!
//! `--arbiter remote` leaves the arbiter to another machine, as in production (the VM's host
//! in `cargo xtask bench ... --arbiter host`): it is found through `TRUCE_REMOTE_ARBITER*`
//! (see `RemoteArbiter::from_env`), and started fresh for each phase or trial over its
//! control connection. The default `here` runs it next to the agent.
//!
//! `demo` runs phases in one boot: the victim alone (isolated), then with a CPU and an I/O
//! antagonist without truce and with truce (arbiter + agent running), `--rounds` times. It
//! prints a live line per second and ends with victim p50/p99 and antagonist throughput per
//! phase, then one JSON line (`{"demo": ...}`) that `cargo xtask bench mitigation` reads.
//! `reaction` starts the antagonist next to a running victim with truce up, and times the
//! first cgroup write truce makes (polled every millisecond); one JSON line per run.
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use truce_tests::phase_stats::{settled_p99, switch_rates, thread_shares};
use truce_tests::scenario::{CPU_HOG, IO_HOG, Proc, RemoteArbiter, Setup, VICTIM, summary, wait_for};

mod aside;
mod controls;
mod reaction;
mod sched_trace;
mod trace;

use aside::StepAside;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    Ok(opt_arg(args, name)?.unwrap_or(default))
}

/// `name VALUE` when given; None when absent (the agent's or the kernel's own default then).
fn opt_arg<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>> {
    let Some(i) = args.iter().position(|a| a == name) else { return Ok(None) };
    let value = args.get(i + 1).with_context(|| format!("{name} needs a value"))?;
    value.parse().map(Some).map_err(|_| anyhow::anyhow!("{name}: invalid value"))
}

/// `--arbiter here|remote`: where the arbiter runs (see the header).
fn remote_arbiter(args: &[String]) -> Result<Option<RemoteArbiter>> {
    match arg(args, "--arbiter", "here".to_string())?.as_str() {
        "here" => Ok(None),
        "remote" => RemoteArbiter::from_env().map(Some),
        other => bail!("--arbiter: {other:?} is neither here nor remote"),
    }
}

fn mount() -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right
                .starts_with("cgroup2 ")
                .then(|| left.split(' ').nth(4).map(PathBuf::from))
                .flatten()
        })
        .context("no cgroup2 mount")
}

struct Phase {
    name: String,
    victim: Value,
    cpu: Option<Value>,
    io: Option<Value>,
    leases_seen: usize,
    /// The victim after truce's first write: `{"from_s", "p99_ms", "requests"}` (the phase
    /// before it is reaction, which `reaction` measures on its own).
    settled: Option<Value>,
    /// The agent's own CPU use over the phase, in % of one CPU, when it ran.
    agent_cpu_pct: Option<f64>,
    /// The same by thread name (tokio's workers share one), largest first.
    agent_threads: Vec<(String, f64)>,
    /// Samples the agent took over the phase (`truce_agent_periods_total`): periodic and early
    /// (pressure onset) ones together.
    agent_samples: Option<f64>,
}


fn victim_args(s: &Setup, seconds: u64) -> Vec<String> {
    [
        "victim",
        "--seconds",
        &seconds.to_string(),
        "--interval-ms",
        "10",
        "--work-us",
        "3000",
        "--latency-file",
        &s.latency_file().to_string_lossy(),
        "--requests-file",
        &s.requests_file().to_string_lossy(),
    ]
    .map(String::from)
    .to_vec()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// One phase: start the loads, print a line a second, collect their summaries.
fn phase(
    s: &Setup,
    name: &str,
    seconds: u64,
    hogs: bool,
    io_device: Option<&str>,
    agent: Option<&Proc>,
) -> Result<Phase> {
    println!("\n== phase: {name} ({seconds} s) ==");
    let agent_cpu_at_start = agent.and_then(Proc::cpu_time);
    let agent_threads_at_start = agent.map(Proc::thread_cpu_times).unwrap_or_default();
    let agent_split_at_start = agent.and_then(Proc::cpu_split);
    let agent_switches_at_start = agent.map(Proc::thread_switches).unwrap_or_default();
    let samples_at_start = agent.and_then(|_| s.agent_counter("truce_agent_periods_total"));
    let probes_at_start = trace::ProbeTime::read(s, agent);
    let secs = seconds.to_string();
    let victim = s.start_load(VICTIM, &refs(&victim_args(s, seconds)))?;
    let cpu = if hogs {
        Some(s.start_load(CPU_HOG, &["cpu", "--seconds", &secs])?)
    } else {
        None
    };
    let io = match (hogs, io_device) {
        (true, Some(dev)) => {
            Some(s.start_load(IO_HOG, &["io", "--seconds", &secs, "--device", dev])?)
        }
        _ => None,
    };
    let mut roles = std::collections::HashMap::from([(victim.pid(), "victim")]);
    roles.extend(cpu.as_ref().map(|p| (p.pid(), "cpu-hog")));
    roles.extend(io.as_ref().map(|p| (p.pid(), "io-hog")));
    roles.extend(agent.map(|p| (p.pid(), "agent")));
    let sched = sched_trace::SchedTrace::start();
    let start = Instant::now();
    let start_unix_ms = truce_agent::cmd::sampler::now().0;
    let mut leases_seen = 0;
    // When a truce write was first seen (polled once a second, so up to a second late).
    let mut first_write: Option<Duration> = None;
    let mut agent_cpu_pct = None;
    let mut agent_threads = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let p99 = std::fs::read_to_string(s.latency_file())
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|_| "-".into());
        let status = s.status();
        let leases = status.as_ref().map(|st| st.leases.len()).unwrap_or(0);
        leases_seen = leases_seen.max(leases);
        let knobs: Vec<String> = s
            .knobs()
            .into_iter()
            .filter(|(_, f, v)| is_set(f, v))
            .map(|(c, f, v)| format!("{c}/{f}={v}"))
            .collect();
        if !knobs.is_empty() && first_write.is_none() {
            first_write = Some(start.elapsed());
        }
        let score = |cg: &str| {
            status
                .as_ref()
                .and_then(|st| {
                    st.workloads
                        .iter()
                        .find(|w| w.cgroup.ends_with(cg))
                        .and_then(|w| w.score)
                })
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "  t={:>3}s victim p99(last s)={p99:>7} ms  score victim={} cpu-hog={}  leases={leases}  {}",
            start.elapsed().as_secs(),
            score(VICTIM),
            score(CPU_HOG),
            if knobs.is_empty() {
                "(all cgroups at their defaults)".to_string()
            } else {
                knobs.join(" ")
            }
        );
    }
    if let (Some(a), Some(t0)) = (agent, agent_cpu_at_start) {
        agent_cpu_pct = a.cpu_time().map(|t1| (t1 - t0).as_secs_f64() * 100.0 / start.elapsed().as_secs_f64());
        if let Some(pct) = agent_cpu_pct {
            println!("  the agent used {pct:.1} % of one CPU over the phase");
        }
        if let (Some((u0, s0)), Some((u1, s1))) = (agent_split_at_start, a.cpu_split()) {
            let pct = |d: Duration| d.as_secs_f64() * 100.0 / start.elapsed().as_secs_f64();
            println!("  of which user {:.1} %, kernel {:.1} %", pct(u1.saturating_sub(u0)), pct(s1.saturating_sub(s0)));
        }
        let switches = switch_rates(&agent_switches_at_start, &a.thread_switches(), start.elapsed());
        let parts: Vec<String> = switches.iter().map(|(n, v, i)| format!("{n} {v:.0}/{i:.0}")).collect();
        println!("  wake-ups/preemptions a second by thread: {}", parts.join(", "));
        agent_threads = thread_shares(&agent_threads_at_start, &a.thread_cpu_times(), start.elapsed());
        let parts: Vec<String> = agent_threads.iter().map(|(n, p)| format!("{n} {p:.1} %")).collect();
        println!("  by thread: {}", parts.join(", "));
    }
    let agent_samples = samples_at_start.zip(agent.and_then(|_| s.agent_counter("truce_agent_periods_total"))).map(|(a, b)| b - a);
    if let Some(n) = agent_samples {
        println!("  the agent took {n} samples ({:.0} periods of {} ms)", start.elapsed().as_secs_f64() * 1000.0 / s.period_ms as f64, s.period_ms);
    }
    probes_at_start.print_since(s, agent, start.elapsed());
    let limit = Duration::from_secs(30);
    let victim = summary(&victim.wait_output(limit)?)?;
    if let Some(t) = sched {
        t.report(&roles);
    }
    if s.trace_agent && agent.is_some() {
        trace::print_timeline(s, start_unix_ms);
        trace::print_stage_costs(s, start_unix_ms);
    }
    let settled = first_write.map(|at| settled_p99(&s.requests_file(), at)).transpose()?;
    let cpu = cpu
        .map(|p| p.wait_output(limit).and_then(|o| summary(&o)))
        .transpose()?;
    let io = io
        .map(|p| p.wait_output(limit).and_then(|o| summary(&o)))
        .transpose()?;
    Ok(Phase {
        name: name.to_string(),
        victim,
        cpu,
        io,
        leases_seen,
        settled,
        agent_cpu_pct,
        agent_samples,
        agent_threads,
    })
}


/// A knob away from the kernel's default.
fn is_set(file: &str, value: &str) -> bool {
    !matches!(
        (file, value),
        ("cpu.max", "max 100000")
            | ("cpu.weight", "100")
            | ("memory.high", "max")
            | ("io.max", "")
            | ("io.weight", "default 100")
    )
}

fn demo(args: &[String]) -> Result<()> {
    let dir: PathBuf = arg(args, "--dir", PathBuf::from("/tmp/truce-demo"))?;
    let seconds: u64 = arg(args, "--phase-seconds", 20)?;
    let rounds: u32 = arg(args, "--rounds", 1)?;
    let io_device: String = arg(args, "--io-device", String::new())?;
    // `--no-io-hog`: the CPU antagonist alone, to tell what the I/O antagonist costs the victim.
    let io_device = (!io_device.is_empty() && !args.iter().any(|a| a == "--no-io-hog")).then_some(io_device.as_str());
    let mut s = Setup::new(&dir, &mount()?);
    s.period_ms = arg(args, "--period-ms", 500)?;
    s.forecast_cpu_share = opt_arg(args, "--forecast-share")?;
    s.system_weight = opt_arg(args, "--system-weight")?;
    s.agent_cpu_policy = opt_arg(args, "--agent-policy")?;
    s.agent_probes = opt_arg(args, "--agent-probes")?;
    if let Some(p) = s.agent_probes.as_deref().filter(|p| !["all", "sched"].contains(p)) {
        bail!("--agent-probes: {p:?} is neither all nor sched");
    }
    s.trace_agent = args.iter().any(|a| a == "--trace");
    s.remote = remote_arbiter(args)?;
    s.prepare()?;
    let _aside = StepAside::new(&s.mount)?;
    let originals = s.knobs();
    let mut phases = vec![phase(&s, "isolated", seconds, false, None, None)?];
    let cuts: String = arg(args, "--cuts", "quota".to_string())?;
    let burst = controls::Burst::from_args(args)?;
    for round in 1..=rounds {
        phases.push(phase(&s, &format!("without truce #{round}"), seconds, true, io_device, None)?);
        for cut in cuts.split(',').map(str::trim) {
            if cut == "static" || cut == "static-burst" {
                phases.push(controls::static_yield(&s, round, seconds, io_device, (cut == "static-burst").then_some(&burst))?);
                continue;
            }
            // "observe": the agent runs with no arbiter to answer it, so its probes and
            // collection cost the victim what they cost, and nothing is enforced (a control).
            // "static-observe": the same at the yield setting written by hand (see
            // `static_yield`): what the agent's presence costs where truce's setting holds.
            let by_hand = cut == "static-observe";
            let observe_only = cut == "observe" || by_hand;
            if !observe_only {
                s.cpu_cut = cut.to_string();
            }
            s.prepare()?;
            if by_hand {
                controls::yield_by_hand(&s, "1")?;
            }
            let arbiter = if observe_only { None } else { Some(s.start_arbiter_anywhere()?) };
            let agent = s.start_agent()?;
            // truce is a daemon that runs all the time: its start-up (loading the probes, which is
            // slow under TCG) is not part of the phase. Wait for its first status, then 3 periods.
            let ready = wait_for(Duration::from_secs(120), || {
                s.status().filter(|st| !st.workloads.is_empty()).map(|_| ())
            });
            if ready.is_none() {
                bail!(
                    "the agent did not come up within 120 s:\n{}",
                    agent.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(3 * s.period_ms));
            let name = if by_hand {
                format!("static yield, agent #{round}")
            } else if observe_only {
                format!("agent only #{round}")
            } else {
                format!("with truce/{cut} #{round}")
            };
            let with = phase(
                &s,
                &name,
                seconds,
                true,
                io_device,
                Some(&agent),
            );
            let clean = agent.terminate(Duration::from_secs(30));
            if let Some(a) = arbiter {
                a.terminate(Duration::from_secs(10));
            }
            if by_hand {
                controls::yield_by_hand(&s, "100")?;
            }
            phases.push(with?);
            if !clean {
                bail!("the agent did not exit cleanly on SIGTERM");
            }
            if s.knobs() != originals {
                bail!(
                    "after SIGTERM the cgroups are not back at their originals: {:?}",
                    s.knobs()
                );
            }
            println!("  agent stopped (SIGTERM): every cgroup is back at its original value");
        }
    }
    s.remove_cgroups();
    report(&phases)
}

fn report(phases: &[Phase]) -> Result<()> {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    println!(
        "\n{:<20} {:>12} {:>12} {:>22} {:>16} {:>14} {:>8}",
        "phase", "victim p50", "victim p99", "p99 after first write", "cpu-hog units/s", "io-hog MB/s", "leases"
    );
    for p in phases {
        let cpu = p
            .cpu
            .as_ref()
            .map(|c| format!("{:.0}", num(c, "units_per_s")))
            .unwrap_or_else(|| "-".into());
        let io =
            p.io.as_ref()
                .map(|c| format!("{:.1}", num(c, "bytes_per_s") / 1e6))
                .unwrap_or_else(|| "-".into());
        let settled = p
            .settled
            .as_ref()
            .map(|v| format!("{:.2} ms from {:.0} s", num(v, "p99_ms"), num(v, "from_s")))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:>9.2} ms {:>9.2} ms {settled:>22} {cpu:>16} {io:>14} {:>8}",
            p.name,
            num(&p.victim, "p50_ms"),
            num(&p.victim, "p99_ms"),
            p.leases_seen
        );
    }
    let out: Vec<Value> = phases.iter().map(|p| json!({"phase": p.name, "victim": p.victim, "settled": p.settled, "cpu": p.cpu, "io": p.io, "leases": p.leases_seen, "agent_cpu_pct": p.agent_cpu_pct, "agent_threads": p.agent_threads, "agent_samples": p.agent_samples})).collect();
    println!("{}", json!({ "demo": out }));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("reaction") => reaction::run(&args[1..]),
        _ => Err(anyhow::anyhow!(
            "usage: truce-demo-scenario demo|reaction --dir D [options] (see the source's header)"
        )),
    };
    if let Err(e) = result {
        eprintln!("truce-demo-scenario: error: {e:#}");
        std::process::exit(1);
    }
}
