//! `truce-arbiter`: see `truce-arbiter --help`.
use clap::Parser;
use cli::{Cli, LogFormat, run};

// Binary-only (it uses anyhow), so it is a module of main, not of the library.
mod cli;
mod cluster_cmd;

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: under systemd stderr is the journal.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if let Err(err) = run(cli) {
        eprintln!("truce-arbiter: error: {err:#}");
        std::process::exit(1);
    }
}
