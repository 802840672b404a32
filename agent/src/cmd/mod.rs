//! One module per `truce-agent` subcommand, plus the sampling pipeline they share.

mod cpu_cost;
pub mod doctor;
pub mod explain;
mod forecasting;
pub mod observe;
mod pressure;
pub mod record;
pub mod replay;
mod reporting;
pub mod run;
pub mod sampler;
mod scheduling;
mod status_file;
mod table;

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logs go to stderr so `--json` output on stdout stays machine-readable. Colours only on a
/// terminal: under systemd stderr is the journal, which would keep the escape codes.
pub fn init_logging(format: LogFormat, filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
