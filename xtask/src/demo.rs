//! `cargo xtask demo`: until the market and enforcement land (the demo issue), this shows the
//! observing half for real: two antagonists and a victim in their own cgroup v2 children, and
//! `truce-agent observe` naming who delays whom. Only processes it starts are moved or killed.
use crate::util::{run_step, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds to observe.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
}

/// Kills the children it started and removes the demo cgroups, also on error.
struct Demo {
    root: PathBuf,
    children: Vec<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for name in ["victim", "cpu-hog", "io-hog", ""] {
            let _ = std::fs::remove_dir(self.root.join(name));
        }
        let _ = std::fs::remove_file(workspace_root().join("target/demo-io.img"));
    }
}

fn cgroup2_mount() -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if right.starts_with("cgroup2 ") { left.split(' ').nth(4).map(PathBuf::from) } else { None }
        })
        .context("no cgroup2 mount: the demo needs cgroup v2")
}

/// Start `script` under `sh` inside cgroup `dir` (the shell moves itself, then execs).
fn spawn_in(dir: &Path, script: &str) -> Result<Child> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
    let procs = dir.join("cgroup.procs");
    Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec sh -c '{script}'", procs.display()))
        .spawn()
        .context("starting a demo workload")
}

pub fn run(args: &Args) -> Result<()> {
    if !nix_is_root() {
        bail!("the demo loads eBPF probes and creates cgroups: run it as root");
    }
    crate::setup::run(&crate::setup::Args { no_vm: true })?;
    run_step("build the agent", Command::new("cargo").current_dir(workspace_root()).args(["build", "--release", "-p", "truce-agent"]))?;
    let root = cgroup2_mount()?.join("truce-demo");
    let mut demo = Demo { root: root.clone(), children: Vec::new() };
    let img = workspace_root().join("target/demo-io.img");
    demo.children.push(spawn_in(&root.join("cpu-hog"), "while :; do :; done")?);
    demo.children.push(spawn_in(
        &root.join("io-hog"),
        &format!("while :; do dd if=/dev/zero of={} bs=1M count=64 oflag=direct 2>/dev/null; done", img.display()),
    )?);
    demo.children.push(spawn_in(&root.join("victim"), "while :; do sleep 0.001; done")?);
    eprintln!("demo: cpu-hog, io-hog and victim started under {}; observing for {}s", root.display(), args.seconds);
    let agent = workspace_root().join("target/release/truce-agent");
    let status = Command::new("timeout")
        .args(["-s", "INT", &args.seconds.to_string()])
        .arg(&agent)
        .args(["observe", "--period", "1s", "--rows", "12"])
        .status()
        .context("running truce-agent observe")?;
    // timeout exits 124 when it had to stop observe; observe itself exits 0 on SIGINT.
    if !(status.success() || status.code() == Some(124)) {
        bail!("truce-agent observe failed with {status}");
    }
    drop(demo);
    eprintln!("demo: workloads stopped and cgroups removed");
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|u| u.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
