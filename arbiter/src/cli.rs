//! The `truce-arbiter` command line: certificates, the server, and its configuration.

use truce_arbiter::config::{DEFAULT_TOML, FileConfig, ResolverKind, Settings};
use truce_arbiter::ledger::Ledger;
use truce_arbiter::market::{Exchange, Market, MarketResolver};
use truce_arbiter::server::{CancellationToken, ProportionalResolver, RoundResolver, Server, certs};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use truce_common::metrics::MetricsServer;

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
        Command::Config { print_default } => {
            if !print_default {
                anyhow::bail!("nothing to do: pass --print-default");
            }
            print!("{DEFAULT_TOML}");
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

fn resolver(settings: &Settings) -> Result<Arc<dyn RoundResolver>> {
    Ok(match settings.resolver {
        ResolverKind::Proportional => Arc::new(ProportionalResolver::new(settings.capacity.clone())),
        ResolverKind::Market => {
            let path = &settings.ledger_path;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating the state directory {} (`state_dir`)", dir.display()))?;
            }
            let ledger = Ledger::open(path).with_context(|| format!("opening the ledger {}", path.display()))?;
            tracing::info!(ledger = %path.display(), minted = ledger.state().minted().0, "ledger open");
            let exchange = Exchange::new(ledger, Market::new(settings.market.clone()));
            Arc::new(MarketResolver::new(exchange, settings.defaults.clone()))
        }
    })
}

async fn serve(settings: Settings) -> Result<()> {
    let server = Server::bind(settings.server.clone(), resolver(&settings)?)?;
    let cancel = CancellationToken::new();
    let metrics = match settings.metrics {
        Some(addr) => Some(MetricsServer::bind(addr, server.metrics_registry(), cancel.clone()).await.context("metrics.listen")?),
        None => None,
    };
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
    server.run(cancel).await;
    if let Some(m) = metrics {
        m.join().await;
    }
    Ok(())
}
