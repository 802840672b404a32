//! `cargo xtask <task>`: everything that is not `cargo build`.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod deploy;
mod package;
mod setup;
mod test;
mod util;
mod vm;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "truce's developer tasks: setup, tests, VM tests, benchmarks, demo")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything the build and the tests need (idempotent; a warm run takes seconds).
    Setup(setup::Args),
    /// Setup, then every test: unit, loopback, host privileged, and the VM suite.
    Test(test::Args),
    /// Fetch and cache qemu, busybox and Debian kernels; build the base initramfs.
    VmSetup(vm::SetupArgs),
    /// Run the privileged suite inside Debian kernels booted with full cgroup v2.
    VmTest(vm::TestArgs),
    /// Boot the test VM with the agent inside and an interactive shell.
    VmShell(vm::ShellArgs),
    /// Run a benchmark and print a side-by-side comparison.
    Bench(bench::Args),
    /// Build release binaries and a .deb and a tarball for each of truce-agent and truce-arbiter (target/package/).
    Package(package::Args),
    /// Check the deployment files: systemd units (systemd-analyze verify) and Kubernetes manifests (schema).
    CheckDeploy,
    /// Regenerate the generated parts of the docs (the configuration reference in docs/operations.md).
    Docs,
    /// Show truce at work: a victim, antagonists, and phases with and without truce.
    Demo(demo::Args),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.task {
        Task::Setup(a) => setup::run(&a),
        Task::Test(a) => test::run(&a),
        Task::VmSetup(a) => vm::setup(&a),
        Task::VmTest(a) => vm::test(&a),
        Task::VmShell(a) => vm::shell(&a),
        Task::Bench(a) => bench::run(&a),
        Task::Demo(a) => demo::run(&a),
        Task::Package(a) => package::run(&a),
        Task::CheckDeploy => deploy::check(),
        Task::Docs => deploy::docs(),
    };
    if let Err(err) = result {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}
