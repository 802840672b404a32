//! truce-agent: per-host probes, interference estimates, bids and cgroup v2 leases.
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use truce_agent::cmd::{self, LogFormat, doctor, explain, observe, record, replay, run};

#[derive(Parser)]
#[command(
    name = "truce-agent",
    version,
    about = "truce's per-host agent: sees who slows whom, bids for resources, enforces leases",
    long_about = "truce's per-host agent. It attaches eBPF probes (scheduler, block I/O, network, and perf \
counters where a PMU exists), reads PSI and cgroup v2 files, and estimates how much each workload (a \
cgroup) is slowed by which neighbour.\n\nNeeds root (or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN). \
`observe` needs no arbiter."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TRUCE_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `truce_agent=debug`.
    #[arg(long, global = true, default_value = "info", env = "TRUCE_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: sample, bid to the arbiter, enforce its decisions as leases.
    Run(run::RunArgs),
    /// Live table of per-workload signals, sorted by interference (no arbiter needed).
    Observe(observe::ObserveArgs),
    /// Save real samples as JSON lines for `replay` and test fixtures.
    Record(record::RecordArgs),
    /// Run the estimator, forecaster and bidder on a recording and print the bids.
    Replay(replay::ReplayArgs),
    /// Why a workload's cgroup is where it is: its files now, what truce changed (journal), the
    /// leases with their decisions' reasons, the bid behind them, and its interference estimate.
    Explain(explain::ExplainArgs),
    /// Check this host: kernel, BTF, cgroup2, PMU, tracefs, privileges, probes, config;
    /// print what the agent can observe and enforce and how to fix each gap. Exits 1 only
    /// when the agent cannot run at all.
    Doctor(doctor::DoctorArgs),
    /// Print the default configuration file, commented.
    Config {
        #[arg(long, required = true)]
        print_default: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_logging(cli.log_format, &cli.log);
    // Synchronous, and its exit status says whether the agent can run (see `doctor`).
    if let Command::Doctor(a) = &cli.command {
        return match doctor::run(a) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(err) => {
                eprintln!("truce-agent: error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    // One thread drives the I/O, the timers and the daemon's loop. The loop waits on its own
    // helpers (the probes' thread, the blocking reads, the brain), so more workers add no
    // throughput, only hand-offs: with two workers the agent woke 74 times a second at a
    // 500 ms period (its I/O driver on a worker, each event handed to the loop's thread), with
    // one 35 (docs/benchmarks.md runs 40-41; the agent's CPU and its neighbours' latency did
    // not measurably change).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("truce-agent: error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Observe(a) => observe::run(a).await,
            Command::Record(a) => record::run(a).await,
            Command::Replay(a) => replay::run(a),
            Command::Run(a) => run::run(a).await,
            Command::Explain(a) => explain::run(a),
            Command::Doctor(_) => Ok(()),
            Command::Config { .. } => {
                print!("{}", truce_agent::config::DEFAULT_TOML);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("truce-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
