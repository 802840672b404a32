//! `truce-agent doctor`: the start-up checks, printed with the fix for each gap.
//!
//! It loads the probes (and unloads them) to learn what really attaches, and changes
//! nothing else on the host. Exit status: 0 when `truce-agent run` can start, even with
//! gaps (observe-only, no PMU, ...); 1 when something blocks it (privileges, kernel,
//! cgroup2, probes, config, certificates); 2 for a usage error.
use crate::probes::{self, PerfMode, ProbeConfig, Probes};
use crate::readiness::{self, Readiness};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The daemon's configuration, to check its roots and certificates too.
    #[arg(long, short, env = "TRUCE_AGENT_CONFIG", default_value = "/etc/truce/agent.toml")]
    pub config: PathBuf,
    /// This host's name, replacing `host` from the file (as for `run`).
    #[arg(long, env = "TRUCE_AGENT_HOST")]
    pub host: Option<String>,
    /// Skip the configuration checks (host checks only).
    #[arg(long)]
    pub no_config: bool,
    /// The checks as one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// Run the checks; `Ok(true)` when the agent can run.
pub fn run(args: &DoctorArgs) -> anyhow::Result<bool> {
    let readiness = check(args);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&readiness)?);
    } else {
        print!("{}", readiness::report_text(&readiness));
    }
    Ok(readiness.can_run())
}

fn check(args: &DoctorArgs) -> Readiness {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let privileged = probes::effective_caps(&status).is_some_and(|c| probes::missing_privileges(c).is_none());
    // Only with the privileges: an unprivileged load fails with EPERM, which the privileges
    // check already names better.
    let loaded = privileged.then(|| {
        let cgroup2_root = crate::cgroupfs::discover().ok().map(|h| h.mount);
        Probes::load(&ProbeConfig { perf: PerfMode::Hardware, cgroup2_root, ..Default::default() })
            .map(|p| p.capabilities().clone())
            .map_err(|e| probes::error_chain(&e))
    });
    let config = (!args.no_config).then_some((args.config.as_path(), args.host.as_deref()));
    readiness::assess(&readiness::gather(loaded, config))
}
