//! `cargo xtask bench overhead [--pairs N] [--loops L] [--cpu C]`: `perf bench sched pipe`
//! with and without truce's probes attached, alternating runs in one session, median ratio
//! reported. `--cpu C` pins both pipe tasks to CPU C (taskset), so every round trip is two
//! context switches and two wakeups with no idle switches: the probes' worst case.
//!
//! The probes are attached by the `hold_probes` example of truce-agent (a debug build is
//! fine: the eBPF object is the same; only the kernel side is measured).
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, bail};

struct Options {
    pairs: usize,
    loops: u32,
    cpu: Option<u32>,
}

fn parse(rest: &[String]) -> Result<Options> {
    let mut opts = Options { pairs: 10, loops: 200_000, cpu: None };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pairs" => opts.pairs = value.parse().with_context(|| format!("bad --pairs {value}"))?,
            "--loops" => opts.loops = value.parse().with_context(|| format!("bad --loops {value}"))?,
            "--cpu" => opts.cpu = Some(value.parse().with_context(|| format!("bad --cpu {value}"))?),
            other => bail!("unknown option {other}; known: --pairs N, --loops L, --cpu C"),
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

pub fn run(rest: &[String]) -> Result<()> {
    let opts = parse(rest)?;
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "truce-agent", "--example", "hold_probes"])
        .status()
        .context("building the hold_probes example")?;
    if !status.success() {
        bail!("building hold_probes failed");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask has no parent")?;
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
    let bin = target.join("debug/examples/hold_probes");
    let bin = bin.to_str().context("non-UTF-8 target path")?;

    let pin = opts.cpu.map_or_else(String::new, |c| format!("taskset -c {c} "));
    println!("{pin}perf bench sched pipe -l {}, {} pairs (order alternates: off/on, on/off, ...)", opts.loops, opts.pairs);
    println!("{:>4} {:>12} {:>12} {:>8}", "pair", "off us/op", "on us/op", "ratio");
    let (mut offs, mut ons, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..opts.pairs {
        let measure_on = |loops| -> Result<f64> {
            let held = Held::attach(bin)?;
            let r = pipe_usecs_per_op(loops, opts.cpu);
            held.detach()?;
            r
        };
        let (off, on) = if pair % 2 == 0 {
            let off = pipe_usecs_per_op(opts.loops, opts.cpu)?;
            (off, measure_on(opts.loops)?)
        } else {
            let on = measure_on(opts.loops)?;
            (pipe_usecs_per_op(opts.loops, opts.cpu)?, on)
        };
        println!("{:>4} {off:>12.3} {on:>12.3} {:>8.4}", pair + 1, on / off);
        offs.push(off);
        ons.push(on);
        ratios.push(on / off);
    }
    let ratio = median(ratios);
    println!(
        "median: off {:.3} us/op, on {:.3} us/op, median ratio {ratio:.4} ({:+.1}% ; goal <= +3%)",
        median(offs),
        median(ons),
        (ratio - 1.0) * 100.0
    );
    Ok(())
}
