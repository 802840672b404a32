//! `truce`: the operator's command. `truce top` is the live view of an agent or the arbiter.
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use truce_agent::top;

#[derive(Parser)]
#[command(name = "truce", version, about = "truce's operator command: see who hurts whom and why truce acts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Live view: a host through its agent's socket, or the cluster through the arbiter.
    Top(top::TopArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs would scribble over the screen; they go to stderr and only when asked for.
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRUCE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("truce: error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Top(a) => top::run(a).await,
        }
    });
    // The source tasks may still be dialing; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("truce: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
