//! `truce-arbiter serve` without the command line: start the raft replica when `[cluster]`
//! asks for one, build the round resolver on the right ledger, bind the QUIC server and
//! `/metrics`, and run until cancelled. Tests run replica processes through this same path.

use crate::cluster::{Replica, ReplicaError, ReplicatedLedger};
use crate::config::{ResolverKind, Settings};
use crate::ledger::{Ledger, StoreError};
use crate::market::{Exchange, Market, MarketResolver};
use crate::server::{CancellationToken, ProportionalResolver, RoundResolver, Server, ServerError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use truce_common::metrics::{MetricsError, MetricsServer};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("creating the state directory {dir} (`state_dir`)")]
    StateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the ledger {path}")]
    Ledger {
        path: PathBuf,
        #[source]
        source: Box<StoreError>,
    },
    #[error("starting raft replica {id} (`cluster`) on {raft_listen} with store {db}")]
    Replica {
        id: u64,
        raft_listen: std::net::SocketAddr,
        db: PathBuf,
        #[source]
        source: Box<ReplicaError>,
    },
    #[error("bootstrapping the group (`cluster.bootstrap`)")]
    Bootstrap {
        #[source]
        source: Box<ReplicaError>,
    },
    #[error("starting the agents' server (`listen`, `certs_dir`)")]
    Server {
        #[source]
        source: Box<ServerError>,
    },
    #[error("starting the federation site (`federation`)")]
    Federation {
        #[source]
        source: Box<crate::federation::daemon::FederationStartError>,
    },
    #[error("serving /metrics (`metrics.listen`)")]
    Metrics {
        #[source]
        source: MetricsError,
    },
}

/// How long the raft runtime outlives the cancellation, for raft's own shutdown.
const RAFT_STOP_GRACE: Duration = Duration::from_millis(500);

/// Start this arbiter's raft replica (`[cluster]`), bootstrapping the group when asked.
pub async fn start_replica(settings: &Settings, cancel: &CancellationToken) -> Result<Option<(Replica, Duration)>, DaemonError> {
    let Some(c) = &settings.cluster else { return Ok(None) };
    let r = &c.replica;
    let failed = |source: ReplicaError| DaemonError::Replica { id: r.id, raft_listen: r.raft_listen, db: r.db_path.clone(), source: Box::new(source) };
    // Raft and its QUIC endpoint run on their own runtime threads. When a leader dies, all of
    // its agents reconnect at once, and the follower they reach first spends seconds of CPU
    // on their TLS handshakes; sharing the agents' workers, it then answered the new leader's
    // heartbeats too late, and the new leader lost its serving lease right after the election.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("truce-raft")
        .enable_all()
        .build()
        .map_err(|e| failed(ReplicaError::Start { reason: format!("raft runtime: {e}") }))?;
    let replica = runtime
        .spawn(Replica::start(r.clone(), cancel.clone()))
        .await
        .map_err(|e| failed(ReplicaError::Start { reason: e.to_string() }))?
        .map_err(failed)?;
    let stop = cancel.clone();
    std::thread::Builder::new()
        .name("truce-raft-owner".into())
        .spawn(move || {
            // The replica stops raft and its endpoint on the same token; give it that time.
            runtime.block_on(async move {
                stop.cancelled().await;
                tokio::time::sleep(RAFT_STOP_GRACE).await;
            });
            runtime.shutdown_timeout(RAFT_STOP_GRACE);
        })
        .map_err(|e| failed(ReplicaError::Start { reason: format!("raft runtime thread: {e}") }))?;
    if c.bootstrap {
        replica.bootstrap(r.members.clone()).await.map_err(|source| DaemonError::Bootstrap { source: Box::new(source) })?;
    }
    tracing::info!(id = r.id, raft = %r.raft_listen, members = r.members.len(), bootstrap = c.bootstrap, "raft replica started");
    Ok(Some((replica, c.write_timeout)))
}

/// The round resolver: the market on the local ledger, on the replicated one, or the
/// proportional test resolver.
pub fn resolver(settings: &Settings, replica: Option<(Replica, Duration)>) -> Result<Arc<dyn RoundResolver>, DaemonError> {
    Ok(match settings.resolver {
        ResolverKind::Proportional => Arc::new(ProportionalResolver::new(settings.capacity.clone())),
        ResolverKind::Market => market_resolver(settings, replica)?,
    })
}

/// The market resolver on the replicated ledger (with `replica`) or the local one.
pub fn market_resolver(settings: &Settings, replica: Option<(Replica, Duration)>) -> Result<Arc<MarketResolver>, DaemonError> {
    let market = Market::new(settings.market.clone());
    if let Some((replica, write_timeout)) = replica {
        let exchange = Exchange::new(ReplicatedLedger::new(replica.clone(), write_timeout), market);
        return Ok(Arc::new(MarketResolver::replicated(exchange, settings.defaults.clone(), replica)));
    }
    let path = &settings.ledger_path;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::StateDir { dir: dir.to_path_buf(), source })?;
    }
    let ledger = Ledger::open(path).map_err(|source| DaemonError::Ledger { path: path.clone(), source: Box::new(source) })?;
    tracing::info!(ledger = %path.display(), minted = ledger.state().minted().0, "ledger open");
    Ok(Arc::new(MarketResolver::new(Exchange::new(ledger, market), settings.defaults.clone())))
}

/// Serve agents until `cancel`, then drain and stop (the replica stops with the same token).
pub async fn serve(settings: Settings, cancel: CancellationToken) -> Result<(), DaemonError> {
    serve_with(settings, cancel, |_| ()).await
}

/// [`serve`], handing the replica (when `[cluster]` starts one) to `with_replica` first.
pub async fn serve_with(settings: Settings, cancel: CancellationToken, with_replica: impl FnOnce(&Replica)) -> Result<(), DaemonError> {
    let replica = start_replica(&settings, &cancel).await?;
    if let Some((r, _)) = &replica {
        with_replica(r);
    }
    // A federation site forecasts from the market's books (validation ensures the market);
    // in a replica group it runs on the serving leader only.
    let (resolver, site) = match (&settings.federation, settings.resolver) {
        (Some(f), ResolverKind::Market) => {
            let raft = replica.as_ref().map(|(r, _)| r.clone());
            let market = market_resolver(&settings, replica)?;
            let failed = |source| DaemonError::Federation { source: Box::new(source) };
            let site = match raft {
                Some(r) => {
                    let s = crate::federation::daemon::start_replicated(f, market.clone(), r, cancel.clone()).await.map_err(failed)?;
                    (s.name, s.published)
                }
                None => {
                    let s = crate::federation::daemon::start(f, market.clone(), cancel.clone()).await.map_err(failed)?;
                    (s.name, s.published)
                }
            };
            (market as Arc<dyn RoundResolver>, Some(site))
        }
        _ => (resolver(&settings, replica)?, None),
    };
    let server = Server::bind(settings.server.clone(), resolver).map_err(|source| DaemonError::Server { source: Box::new(source) })?;
    if let Some((name, published)) = site {
        server.show_federation(name, published.subscribe());
    }
    let metrics = match settings.metrics {
        Some(addr) => Some(MetricsServer::bind(addr, server.metrics_registry(), cancel.clone()).await.map_err(|source| DaemonError::Metrics { source })?),
        None => None,
    };
    server.run(cancel).await;
    if let Some(m) = metrics {
        m.join().await;
    }
    Ok(())
}
