//! `truce-arbiter serve` as a federation site: bind the federation endpoint, build the
//! executor, start the site runtime, and feed it one period of host observations from the
//! live market every `site.period_ms`.

use super::executor::{CommandHook, ExecError, MigrationExecutor};
use super::kube::KubeExecutor;
use super::runtime::{Period, SiteHandle, spawn};
use super::section::{ExecutorSettings, FederationSettings};
use super::site::Site;
use crate::market::MarketResolver;
use crate::peer::{PeerEndpoint, PeerError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use truce_common::model::Timestamp;
use truce_common::wire::FEDERATION_ALPN;

#[derive(Debug, thiserror::Error)]
pub enum FederationStartError {
    #[error("binding the federation endpoint (`federation.listen` {addr}, certificate of `federation.site.name` {site:?})")]
    Endpoint {
        addr: std::net::SocketAddr,
        site: String,
        #[source]
        source: PeerError,
    },
    #[error("setting up the Kubernetes executor (`federation.kube`)")]
    Kube {
        #[source]
        source: ExecError,
    },
}

fn wall_now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

/// Start the site; it runs until `cancel`.
pub async fn start(settings: &FederationSettings, market: Arc<MarketResolver>, cancel: CancellationToken) -> Result<SiteHandle, FederationStartError> {
    let name = settings.site.name.clone();
    let net = PeerEndpoint::bind(settings.listen, &settings.tls, FEDERATION_ALPN, settings.peers.clone())
        .map_err(|source| FederationStartError::Endpoint { addr: settings.listen, site: name.clone(), source })?;
    let executor: Arc<dyn MigrationExecutor> = match &settings.executor {
        ExecutorSettings::Command { program, args, timeout } => Arc::new(CommandHook { program: program.clone(), args: args.clone(), timeout: *timeout }),
        ExecutorSettings::Kube(target) => Arc::new(KubeExecutor::connect(target).await.map_err(|source| FederationStartError::Kube { source })?),
    };
    let site = Site::new(settings.site.clone(), settings.peers.keys().cloned());
    tracing::info!(site = %name, listen = ?net.local_addr(), peers = ?settings.peers, period_ms = settings.site.period_ms, "federation site started");
    let handle = spawn(site, net, executor, cancel.clone());
    tokio::spawn(feed(handle.periods.clone(), market, Duration::from_millis(settings.site.period_ms), settings.host_stale, cancel));
    Ok(handle)
}

/// Every period, the hosts' observations from the market's books.
async fn feed(periods: tokio::sync::mpsc::Sender<Period>, market: Arc<MarketResolver>, every: Duration, stale: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let at = wall_now();
        // The market's lock may be held by a round waiting on its ledger write.
        let m = market.clone();
        let observations = match tokio::task::spawn_blocking(move || m.host_observations(at, stale)).await {
            Ok(o) => o,
            Err(cause) => {
                tracing::warn!(%cause, "reading the market's hosts failed; period skipped");
                continue;
            }
        };
        tracing::debug!(hosts = observations.len(), "federation period");
        if periods.send(Period { at, observations }).await.is_err() {
            break;
        }
    }
}
