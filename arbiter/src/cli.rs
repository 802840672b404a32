//! The `truce-arbiter` command line: certificates, the server, and its configuration.

use truce_arbiter::config::{FileConfig, Settings, default_toml};
use truce_arbiter::server::{CancellationToken, certs};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "truce-arbiter", version, about = "truce's arbiter: agents over QUIC + mTLS, market rounds, ledger")]
pub struct Cli {
    #[arg(long, env = "TRUCE_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Mint the CA and certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Run the QUIC server until SIGINT or SIGTERM.
    Serve {
        #[arg(long, env = "TRUCE_ARBITER_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides `listen` from the file.
        #[arg(long, env = "TRUCE_ARBITER_LISTEN")]
        listen: Option<String>,
        /// Overrides `certs_dir` from the file.
        #[arg(long, env = "TRUCE_ARBITER_CERTS")]
        certs: Option<PathBuf>,
        /// Overrides `state_dir` from the file (where the ledger is kept).
        #[arg(long, env = "TRUCE_ARBITER_STATE")]
        state_dir: Option<PathBuf>,
        /// Serve Prometheus /metrics here (overrides `metrics.listen` and enables it).
        #[arg(long, env = "TRUCE_ARBITER_METRICS_LISTEN")]
        metrics_listen: Option<String>,
    },
    /// Membership of a replica group (`[cluster]`): status, add, remove.
    #[command(subcommand)]
    Cluster(crate::cluster_cmd::ClusterCommand),
    /// Show the configuration.
    Config {
        /// Print the commented default configuration.
        #[arg(long)]
        print_default: bool,
    },
}

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Mint a CA and the arbiter's server certificate (SANs: localhost, 127.0.0.1, ::1, and --name).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Extra DNS names or IPs for the arbiter certificate (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
        /// Replace an existing CA (every issued host certificate stops working).
        #[arg(long)]
        force: bool,
    },
    /// Mint a client certificate for one host (its identity is the certificate's DNS name).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        host: String,
    },
    /// Mint a peer certificate for an arbiter replica or a federation site (serverAuth and
    /// clientAuth; raft and federation endpoints accept only these).
    Peer {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Certs(CertsCommand::Init { dir, names, force }) => {
            let m = certs::init(&dir, &names, force)?;
            eprintln!("wrote {} and {} (CA in {})", m.cert.display(), m.key.display(), dir.join(certs::CA_CERT).display());
            Ok(())
        }
        Command::Certs(CertsCommand::Issue { dir, host }) => {
            let m = certs::issue(&dir, &host)?;
            eprintln!("wrote {} and {} for host {host}", m.cert.display(), m.key.display());
            Ok(())
        }
        Command::Certs(CertsCommand::Peer { dir, name }) => {
            let m = certs::peer(&dir, &name)?;
            eprintln!("wrote {} and {} for peer {name}", m.cert.display(), m.key.display());
            Ok(())
        }
        Command::Cluster(cmd) => crate::cluster_cmd::run(cmd),
        Command::Config { print_default } => {
            if !print_default {
                anyhow::bail!("nothing to do: pass --print-default");
            }
            print!("{}", default_toml());
            Ok(())
        }
        Command::Serve { config, listen, certs, state_dir, metrics_listen } => {
            let mut file = match &config {
                Some(path) => FileConfig::load(path)?,
                None => FileConfig::default(),
            };
            if let Some(l) = listen {
                file.listen = l;
            }
            if let Some(c) = certs {
                file.certs_dir = c;
            }
            if let Some(d) = state_dir {
                file.state_dir = d;
            }
            if let Some(m) = metrics_listen {
                file.metrics.enabled = true;
                file.metrics.listen = m;
            }
            let settings = file.validate()?;
            let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
            runtime.block_on(serve(settings))
        }
    }
}

async fn serve(settings: Settings) -> Result<()> {
    let cancel = CancellationToken::new();
    let signals = cancel.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(cause) => {
                tracing::error!(%cause, "cannot watch SIGTERM; stop with SIGINT");
                let _ = tokio::signal::ctrl_c().await;
                signals.cancel();
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received; shutting down");
        signals.cancel();
    });
    truce_arbiter::daemon::serve(settings, cancel).await?;
    Ok(())
}
