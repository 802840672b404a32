//! `cargo xtask demo`: truce at work, with phases with and without it in one run.
//!
//! By default it boots the test VM (Debian 6.12 with full cgroup v2) and runs
//! `truce-demo-scenario demo` there: the real arbiter and agent, a latency-sensitive victim,
//! a CPU antagonist and an I/O antagonist (O_DIRECT writes to the VM's raw disk). `--host`
//! runs the same scenario on this machine, which needs cgroup v2 with the cpu controller in
//! the unified hierarchy (not a hybrid host); there the I/O antagonist writes a file under
//! target/. Only processes it starts are moved or killed, and only cgroups it creates.
use crate::util::{run_step, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per phase.
    #[arg(long, default_value_t = 20)]
    pub seconds: u32,
    /// How many times to alternate "without truce" and "with truce".
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// The agent's sampling period in ms.
    #[arg(long, default_value_t = 500)]
    pub period_ms: u64,
    /// Run on this host instead of the VM (needs a cgroup v2 host that can enforce).
    #[arg(long)]
    pub host: bool,
    /// The VM kernel (6.12 or 6.1).
    #[arg(long, default_value = "6.12")]
    pub kernel: String,
    /// Guest CPUs. The default 2 shows contention across CPUs; 1 takes qemu's turn-taking
    /// between vCPUs (up to 100 ms under TCG) out of the victim's latency.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub vcpus: u32,
    /// Where the arbiter runs: in the VM next to the agent, or on this host as in production
    /// (a separate service on another machine), reached over qemu's user-mode network.
    #[arg(long, value_enum, default_value_t = Place::Vm)]
    pub arbiter: Place,
    /// The agent's `forecast.cpu_share` (default: the agent's own, 0.01; 0 turns forecasting
    /// off), to see what the forecaster costs the victim.
    #[arg(long)]
    pub forecast_share: Option<f64>,
    /// `cpu.weight` of the cgroup the agent and arbiter run in, next to the workloads'
    /// subtree at 100 (default: the kernel's 100), as a host sets it with the unit's
    /// `CPUWeight=`: how much of a contended CPU the agent gets against the workloads.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub system_weight: Option<u32>,
    /// The agent's `cpu_policy`, batch or normal (default: the agent's own, batch).
    #[arg(long, value_parser = AGENT_POLICIES)]
    pub agent_policy: Option<String>,
    /// The agent's probe groups: all (its default) or sched (`probes.block` and `probes.net`
    /// off), to tell what the block and network programs cost the victim.
    #[arg(long, value_parser = AGENT_PROBES)]
    pub agent_probes: Option<String>,
    /// Leave the I/O antagonist out: the CPU antagonist alone, to tell what the I/O
    /// antagonist (and under TCG, emulating its disk) costs the victim.
    #[arg(long)]
    pub no_io_hog: bool,
    /// CPU time in µs the stand-in daemon of the `static-burst` control spins every 500 ms
    /// (default 25000, about the agent's own under TCG; the agent uses about a twentieth of
    /// that natively).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=500_000))]
    pub burst_us: Option<u64>,
    /// In how many pieces, 1 ms apart (default 4).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub burst_pieces: Option<u64>,
    /// The stand-in's scheduling policy, normal or batch (default normal).
    #[arg(long, value_parser = AGENT_POLICIES)]
    pub burst_policy: Option<String>,
    /// The agent logs JSON at debug level, and each phase with it prints the victim's slowest
    /// requests with the agent's timeline around them, and the probes' kernel run time.
    #[arg(long)]
    pub trace: bool,
}

/// The agent's `cpu_policy` values (`--agent-policy` here and in the benchmarks).
pub const AGENT_POLICIES: [&str; 2] = ["batch", "normal"];

/// The agent's probe groups (`--agent-probes` here and in the benchmarks).
pub const AGENT_PROBES: [&str; 2] = ["all", "sched"];

/// Where the arbiter runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Vm,
    Host,
}

impl Place {
    /// One entry of the benches' `--arbiter vm,host` list, by the names `--arbiter` takes here.
    pub fn parse(s: &str) -> Result<Place> {
        <Place as clap::ValueEnum>::from_str(s.trim(), false).map_err(|_| anyhow::anyhow!("--arbiter: {:?} is neither vm nor host", s.trim()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Place::Vm => "vm",
            Place::Host => "host",
        }
    }

    /// The scenario's `--arbiter` value for this place.
    pub fn scenario_arg(self) -> &'static str {
        match self {
            Place::Vm => "here",
            Place::Host => "remote",
        }
    }
}

/// Boot the VM and run `script` there, with the arbiter on this host when `place` says so.
pub fn boot_with_arbiter(kernel: &str, script: &str, budget: u64, prefix: &str, vcpus: u32, place: Place) -> Result<Vec<String>> {
    let mut extras = crate::vm::CommandExtras::vcpus(vcpus);
    let host_arbiter = match place {
        Place::Vm => None,
        Place::Host => Some(crate::bench::HostArbiter::start(&crate::vm::release_binaries()?.arbiter)?),
    };
    let script = match &host_arbiter {
        Some(h) => {
            extras.net = true;
            extras.files = h.files.clone();
            format!("{}\n{script}", h.env)
        }
        None => script.to_string(),
    };
    let console = crate::vm::command_on(kernel, &script, budget, prefix, &extras)?.console;
    if let Some(h) = host_arbiter {
        eprintln!("xtask: host arbiter: logs kept in {}", h.dir.display());
    }
    Ok(console)
}

/// Run the demo; returns its JSON summary line (`{"demo": [...]}`) for the benchmarks.
pub fn run_scenario(args: &Args, cuts: &str) -> Result<serde_json::Value> {
    if !is_root() {
        bail!("the demo loads eBPF probes and creates cgroups: run it as root");
    }
    if args.host && args.arbiter == Place::Host {
        bail!("--arbiter host is for the VM: with --host the arbiter already runs on this host");
    }
    crate::setup::run(&crate::setup::Args { no_vm: args.host })?;
    let mut common = format!("demo --phase-seconds {} --rounds {} --period-ms {} --cuts {cuts}", args.seconds, args.rounds, args.period_ms);
    // The scenario's own defaults hold for every knob left unset here.
    let knobs: [(&str, Option<String>); 7] = [
        ("--forecast-share", args.forecast_share.map(|v| v.to_string())),
        ("--system-weight", args.system_weight.map(|v| v.to_string())),
        ("--agent-policy", args.agent_policy.clone()),
        ("--agent-probes", args.agent_probes.clone()),
        ("--burst-us", args.burst_us.map(|v| v.to_string())),
        ("--burst-pieces", args.burst_pieces.map(|v| v.to_string())),
        ("--burst-policy", args.burst_policy.clone()),
    ];
    for (flag, value) in knobs {
        if let Some(v) = value {
            common += &format!(" {flag} {v}");
        }
    }
    if args.no_io_hog {
        common += " --no-io-hog";
    }
    if args.trace {
        common += " --trace";
    }
    // Isolated, then per round without truce and with it per cut style; agent start-up on top.
    let styles = cuts.split(',').count() as u32;
    let budget = u64::from(args.seconds + 40) * u64::from(1 + (1 + styles) * args.rounds) + 120;
    let lines: Vec<String> = if args.host {
        host_preflight()?;
        let bins = build_release()?;
        let io = workspace_root().join("target/demo-io.img");
        let mut cmd = Command::new(bins.join("demo_scenario"));
        cmd.args(common.split(' ')).args(["--dir", "/tmp/truce-demo", "--io-device"]).arg(&io);
        cmd.env("TRUCE_AGENT_BIN", bins.join("truce-agent")).env("TRUCE_ARBITER_BIN", bins.join("truce-arbiter")).env("TRUCE_LOAD_BIN", bins.join("demo_load"));
        let out = cmd.stderr(std::process::Stdio::inherit()).output().context("running demo_scenario")?;
        let _ = std::fs::remove_file(&io);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{text}");
        if !out.status.success() {
            bail!("the demo scenario failed ({})", out.status);
        }
        text.lines().map(str::to_string).collect()
    } else {
        let script = format!("truce-demo-scenario {common} --dir /tmp/truce-demo --io-device /dev/vda --arbiter {}", args.arbiter.scenario_arg());
        boot_with_arbiter(&args.kernel, &script, budget, "[demo] ", args.vcpus, args.arbiter)?
    };
    let line = lines.iter().rev().find_map(|l| l.find("{\"demo\":").map(|i| &l[i..])).context("the demo printed no summary")?;
    serde_json::from_str(line).context("parsing the demo's summary")
}

pub fn run(args: &Args) -> Result<()> {
    run_scenario(args, "quota").map(|_| ())
}

/// Refuse early, with the reason, on hosts where the demo could not enforce.
fn host_preflight() -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut v2 = None;
    let mut v1_cpu = false;
    for l in info.lines() {
        let Some((left, right)) = l.split_once(" - ") else { continue };
        let point = left.split(' ').nth(4).unwrap_or("");
        if right.starts_with("cgroup2 ") {
            v2 = Some(PathBuf::from(point));
        } else if right.starts_with("cgroup ") && right.split([' ', ',']).any(|o| o == "cpu") {
            v1_cpu = true;
        }
    }
    let Some(mount) = v2 else { bail!("--host needs a cgroup v2 mount; this host has none (run without --host to use the VM)") };
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    if v1_cpu || !controllers.split_whitespace().any(|c| c == "cpu") {
        bail!(
            "--host needs the cpu controller in cgroup v2, but on this host cgroup v1 owns it (hybrid mode; v2 at {} offers: {:?}). \
             Run without --host to use the VM.",
            mount.display(),
            controllers.trim()
        );
    }
    Ok(())
}

/// Release builds of the four binaries; returns target/release.
fn build_release() -> Result<PathBuf> {
    run_step(
        "build the release binaries",
        crate::util::cargo().current_dir(workspace_root()).args(["build", "--release"]).args(crate::util::WORKSPACE).args([
            "--bin", "truce-agent", "--bin", "truce-arbiter", "--bin", "demo_load", "--bin", "demo_scenario",
        ]),
    )?;
    Ok(workspace_root().join("target/release"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|u| u.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
