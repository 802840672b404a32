//! `cargo xtask test`: the README's test command and what `.ci/run` calls.
//! Setup, then unit tests, loopback tests and host privileged tests (`cargo test --workspace`),
//! then the privileged suite inside Debian kernels (`vm-test --kernel all`).
use crate::util::{WORKSPACE, run_step, workspace_root};
use anyhow::Result;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Skip the VM suite (and the VM part of setup).
    #[arg(long)]
    pub no_vm: bool,
    /// Only run tests whose name contains this (passed to cargo test and vm-test).
    pub filter: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let mut stages: Vec<(String, f64)> = Vec::new();
    let mut stage = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = Instant::now();
        eprintln!("xtask test: ── {name} ──");
        f()?;
        stages.push((name.to_string(), t.elapsed().as_secs_f64()));
        Ok(())
    };
    stage("setup", &mut || crate::setup::run(&crate::setup::Args { no_vm: args.no_vm }))?;
    stage("workspace tests (unit, loopback, host privileged)", &mut || {
        // tests/tests/cluster_cli.rs runs the real `truce-arbiter` binary, which `cargo test`
        // does not build for another package's tests.
        let mut build = crate::util::cargo();
        build.current_dir(workspace_root()).args(["build", "--locked"]).args(WORKSPACE).args(["--bin", "truce-arbiter"]);
        run_step("cargo build truce-arbiter", &mut build)?;
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), Into::into);
        let mut cmd = crate::util::cargo();
        cmd.current_dir(workspace_root()).env("TRUCE_ARBITER_BIN", target.join("debug/truce-arbiter"));
        cmd.arg("test").args(WORKSPACE).args(["--locked", "--no-fail-fast"]);
        if let Some(f) = &args.filter {
            cmd.args(["--", f]);
        }
        run_step("cargo test", &mut cmd)
    })?;
    if args.no_vm {
        // The VM suite builds and installs the packages itself; without it, still build them
        // (their units are verified against the real binaries).
        stage("packages (dev profile)", &mut || crate::package::build("dev").map(|_| ()))?;
    } else {
        stage("VM suite on every kernel", &mut || {
            crate::vm::test(&crate::vm::TestArgs { kernel: "all".into(), filter: args.filter.clone(), ..Default::default() })
        })?;
    }
    eprintln!("xtask test: all stages passed in {:.0}s", started.elapsed().as_secs_f64());
    for (name, secs) in &stages {
        eprintln!("xtask test:   {secs:>7.1}s  {name}");
    }
    Ok(())
}
