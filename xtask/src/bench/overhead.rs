//! `cargo xtask bench overhead [--pairs N] [--loops L] [--cpu C] [--baseline BIN] [--kernel-stats on]`:
//! `perf bench sched pipe` with and without truce's probes attached, alternating runs in one
//! session, median ratio reported. `--cpu C` pins both pipe tasks to CPU C (taskset), so
//! every round trip is two context switches and two wakeups with no idle switches: the
//! probes' worst case. `--baseline BIN` adds a third run per round with another
//! `hold_probes` binary (e.g. built from an older commit), so two versions of the probes are
//! compared under the same load; the order of the runs rotates every round.
//!
//! `--kernel-stats on` also reports the in-kernel cost per program run of each build: it
//! turns `kernel.bpf_stats_enabled` on for the session (which adds two clock reads to every
//! program run, on all sides alike) and back to its old value after, and reads run time and
//! count of the holder's programs before and after each pipe run with the
//! `prog_run_stats` example.
//!
//! The probes are attached by the `hold_probes` example of truce-agent (a debug build is
//! fine: the eBPF object is the same; only the kernel side is measured).
use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, bail};

struct Options {
    pairs: usize,
    loops: u32,
    cpu: Option<u32>,
    baseline: Option<String>,
    kernel_stats: bool,
}

fn parse(rest: &[String]) -> Result<Options> {
    let mut opts = Options { pairs: 10, loops: 200_000, cpu: None, baseline: None, kernel_stats: false };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pairs" => opts.pairs = value.parse().with_context(|| format!("bad --pairs {value}"))?,
            "--loops" => opts.loops = value.parse().with_context(|| format!("bad --loops {value}"))?,
            "--cpu" => opts.cpu = Some(value.parse().with_context(|| format!("bad --cpu {value}"))?),
            "--baseline" => opts.baseline = Some(value.clone()),
            "--kernel-stats" => opts.kernel_stats = matches!(value.as_str(), "on" | "1" | "true"),
            other => bail!("unknown option {other}; known: --pairs N, --loops L, --cpu C, --baseline BIN, --kernel-stats on"),
        }
    }
    if opts.pairs == 0 {
        bail!("--pairs must be at least 1");
    }
    Ok(opts)
}

/// One `perf bench sched pipe` run: microseconds per round trip.
fn pipe_usecs_per_op(loops: u32, cpu: Option<u32>) -> Result<f64> {
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), "perf"]);
            c
        }
        None => Command::new("perf"),
    };
    let out = cmd
        .args(["bench", "sched", "pipe", "-l", &loops.to_string()])
        .output()
        .context("running `perf bench sched pipe` (install Debian's linux-perf)")?;
    if !out.status.success() {
        bail!("perf bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_suffix("usecs/op").and_then(|v| v.trim().parse().ok()))
        .with_context(|| format!("no usecs/op in perf output: {text}"))
}

/// The probes, held by the example process until it gets SIGTERM.
struct Held(Child);

impl Held {
    fn attach(bin: &str) -> Result<Self> {
        let mut child = Command::new(bin).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().with_context(|| format!("starting {bin}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "attached" {
            let _ = child.kill();
            let _ = child.wait();
            bail!("hold_probes did not attach (run as root); it printed {line:?}");
        }
        Ok(Self(child))
    }

    fn detach(mut self) -> Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.0.id());
        }
        self.0.wait()?;
        Ok(())
    }
}

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled` on while it lives, back to what it was on drop.
struct BpfStatsOn {
    before: String,
}

impl BpfStatsOn {
    fn enable() -> Result<Self> {
        let before = std::fs::read_to_string(BPF_STATS_SYSCTL).with_context(|| format!("reading {BPF_STATS_SYSCTL}"))?;
        std::fs::write(BPF_STATS_SYSCTL, "1").with_context(|| format!("writing 1 to {BPF_STATS_SYSCTL} (needs root)"))?;
        Ok(Self { before: before.trim().to_owned() })
    }
}

impl Drop for BpfStatsOn {
    fn drop(&mut self) {
        if let Err(err) = std::fs::write(BPF_STATS_SYSCTL, &self.before) {
            eprintln!("xtask: could not restore {BPF_STATS_SYSCTL} to {}: {err}", self.before);
        }
    }
}

/// Program id -> (name, run time ns, run count) of every loaded program.
fn program_stats(bin: &str) -> Result<HashMap<u32, (String, u64, u64)>> {
    let out = Command::new(bin).output().with_context(|| format!("running {bin}"))?;
    if !out.status.success() {
        bail!("{bin} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut stats = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [name, id, ns, runs] = f[..] {
            stats.insert(id.parse()?, (name.to_owned(), ns.parse()?, runs.parse()?));
        }
    }
    Ok(stats)
}

/// Per program name: (run time ns, run count) summed over a kind's runs.
type RunTotals = BTreeMap<String, (u64, u64)>;

/// One pipe run with `holder`'s probes attached; with `stats`, the run time and count its
/// programs (the ids that appeared when it attached) gained during the run.
fn held_run(holder: &str, opts: &Options, stats: Option<(&str, &mut RunTotals)>) -> Result<f64> {
    let Some((stats_bin, totals)) = stats else {
        let held = Held::attach(holder)?;
        let r = pipe_usecs_per_op(opts.loops, opts.cpu);
        held.detach()?;
        return r;
    };
    let before = program_stats(stats_bin)?;
    let held = Held::attach(holder)?;
    let ours: HashMap<u32, (String, u64, u64)> = program_stats(stats_bin)?.into_iter().filter(|(id, _)| !before.contains_key(id)).collect();
    let r = pipe_usecs_per_op(opts.loops, opts.cpu);
    let after = program_stats(stats_bin);
    held.detach()?;
    for (id, (name, ns, runs)) in after? {
        if let Some((_, ns0, runs0)) = ours.get(&id) {
            let t = totals.entry(name).or_default();
            t.0 += ns.saturating_sub(*ns0);
            t.1 += runs.saturating_sub(*runs0);
        }
    }
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

pub fn run(rest: &[String]) -> Result<()> {
    let opts = parse(rest)?;
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "truce-agent", "--example", "hold_probes", "--example", "prog_run_stats"])
        .status()
        .context("building the hold_probes example")?;
    if !status.success() {
        bail!("building hold_probes failed");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask has no parent")?;
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
    let bin = target.join("debug/examples/hold_probes");
    let bin = bin.to_str().context("non-UTF-8 target path")?;
    let stats_bin = target.join("debug/examples/prog_run_stats");
    let stats_bin = stats_bin.to_str().context("non-UTF-8 target path")?;
    let _stats_on = if opts.kernel_stats { Some(BpfStatsOn::enable()?) } else { None };

    let pin = opts.cpu.map_or_else(String::new, |c| format!("taskset -c {c} "));
    // Run kinds: None = no probes, Some(bin) = probes held by that binary.
    let mut kinds: Vec<(&str, Option<&str>)> = vec![("off", None), ("on", Some(bin))];
    if let Some(baseline) = opts.baseline.as_deref() {
        kinds.push(("baseline", Some(baseline)));
    }
    println!("{pin}perf bench sched pipe -l {}, {} rounds (run order rotates every round)", opts.loops, opts.pairs);
    if let Some(baseline) = opts.baseline.as_deref() {
        println!("baseline probes: {baseline}");
    }
    print!("{:>5}", "round");
    for (name, _) in &kinds {
        print!(" {:>12}", format!("{name} us/op"));
    }
    for (name, _) in kinds.iter().skip(1) {
        print!(" {:>14}", format!("{name}/off"));
    }
    println!();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut run_totals: Vec<RunTotals> = vec![RunTotals::new(); kinds.len()];
    for round in 0..opts.pairs {
        let mut row = vec![0.0; kinds.len()];
        for step in 0..kinds.len() {
            let k = (round + step) % kinds.len();
            row[k] = match kinds[k].1 {
                None => pipe_usecs_per_op(opts.loops, opts.cpu)?,
                Some(bin) => held_run(bin, &opts, opts.kernel_stats.then_some((stats_bin, &mut run_totals[k])))?,
            };
        }
        print!("{:>5}", round + 1);
        for v in &row {
            print!(" {v:>12.3}");
        }
        for k in 1..kinds.len() {
            print!(" {:>14.4}", row[k] / row[0]);
            ratios[k].push(row[k] / row[0]);
        }
        println!();
        for (k, v) in row.into_iter().enumerate() {
            samples[k].push(v);
        }
    }
    let off = median(samples[0].clone());
    for k in 1..kinds.len() {
        let ratio = median(ratios[k].clone());
        println!(
            "median {}: off {off:.3} us/op, on {:.3} us/op, median ratio {ratio:.4} ({:+.1}% ; goal <= +3%)",
            kinds[k].0,
            median(samples[k].clone()),
            (ratio - 1.0) * 100.0
        );
    }
    if opts.kernel_stats {
        let round_trips = f64::from(opts.loops) * opts.pairs as f64;
        println!("in-kernel cost per program run (kernel.bpf_stats_enabled=1; includes the stats' own clock reads):");
        for k in 1..kinds.len() {
            for (name, (ns, runs)) in run_totals[k].iter().filter(|(_, (_, runs))| *runs > 0) {
                println!(
                    "  {:<8} {name:<16} {:>7.1} ns/run  {:>6.3} runs/round trip  {:>7.1} ns/round trip",
                    kinds[k].0,
                    *ns as f64 / *runs as f64,
                    *runs as f64 / round_trips,
                    *ns as f64 / round_trips
                );
            }
        }
    }
    Ok(())
}
