//! `truce-arbiter serve` as a federation site: bind the federation endpoint, build the
//! executor, start the site runtime, and feed it one period of host observations from the
//! live market every `site.period_ms`. A site run by a replica group does this on its serving
//! leader only ([`start_replicated`]).

use super::executor::{CommandHook, ExecError, MigrationExecutor};
use super::kube::KubeExecutor;
use super::runtime::{Period, SiteHandle, spawn_publishing};
use super::section::{ExecutorSettings, FederationSettings};
use super::site::{PROPOSALS_PER_TERM, Site};
use crate::cluster::Replica;
use crate::server::Leadership;
use crate::market::MarketResolver;
use crate::peer::{PeerEndpoint, PeerError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use truce_common::model::Timestamp;
use truce_common::wire::{FEDERATION_ALPN, FederationMessage};

#[derive(Debug, thiserror::Error)]
pub enum FederationStartError {
    #[error("binding the federation endpoint (`federation.listen` {addr}, certificate of `federation.site.name` {site:?})")]
    Endpoint {
        addr: std::net::SocketAddr,
        site: String,
        #[source]
        source: Box<PeerError>,
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
    let executor = executor(settings).await?;
    let net = bind(settings)?;
    // Numbered from the wall clock in ms: a restarted site must not reuse its earlier ids
    // (peers file tallies and verdicts by id, and a destination's rollback finds its order by
    // it), and a site proposes at most once a period, so its count never overtakes the clock.
    let (handle, _) = launch(settings, net, executor, market, broadcast::channel(256).0, wall_now().0, cancel);
    Ok(handle)
}

/// A fresh [`Site`] numbering its proposals from `first_seq`, its runtime on `net`, and its
/// feed from the market's books, all until `cancel`. The join handle ends once the runtime
/// has closed `net`.
fn launch(
    settings: &FederationSettings,
    net: Arc<PeerEndpoint>,
    executor: Arc<dyn MigrationExecutor>,
    market: Arc<MarketResolver>,
    published: broadcast::Sender<FederationMessage>,
    first_seq: u64,
    cancel: CancellationToken,
) -> (SiteHandle, tokio::task::JoinHandle<()>) {
    let site = Site::new(settings.site.clone(), settings.peers.keys().cloned()).numbering_from(first_seq);
    let (handle, done) = spawn_publishing(site, net, executor, published, cancel.clone());
    tokio::spawn(feed(handle.periods.clone(), market, Duration::from_millis(settings.site.period_ms), settings.host_stale, cancel));
    (handle, done)
}

async fn executor(settings: &FederationSettings) -> Result<Arc<dyn MigrationExecutor>, FederationStartError> {
    Ok(match &settings.executor {
        ExecutorSettings::Command { program, args, timeout } => Arc::new(CommandHook { program: program.clone(), args: args.clone(), timeout: *timeout }),
        ExecutorSettings::Kube(target) => Arc::new(KubeExecutor::connect(target).await.map_err(|source| FederationStartError::Kube { source })?),
    })
}

fn bind(settings: &FederationSettings) -> Result<Arc<PeerEndpoint>, FederationStartError> {
    let name = settings.site.name.clone();
    let net = PeerEndpoint::bind_reaching(settings.listen, &settings.tls, FEDERATION_ALPN, settings.peers.clone())
        .map_err(|source| FederationStartError::Endpoint { addr: settings.listen, site: name.clone(), source: Box::new(source) })?;
    // A peer site may be a replica group whose leader moves: send to whichever replica spoke last.
    net.follow_inbound();
    tracing::info!(site = %name, listen = ?net.local_addr(), peers = ?settings.peers, period_ms = settings.site.period_ms, "federation site started");
    Ok(net)
}

/// A site run by a replica group: the site runs on the serving leader only, and moves with
/// it. What `truce top` subscribes to outlives the moves.
pub struct ReplicatedSite {
    pub name: String,
    pub published: broadcast::Sender<FederationMessage>,
}

/// How often the replica's leadership is looked at.
const LEADERSHIP_POLL: Duration = Duration::from_millis(100);
/// How long this replica may fail to confirm its leadership before its site stops: a
/// heartbeat or two confirmed late under load should not restart the site.
const SERVING_GRACE: Duration = Duration::from_secs(1);
/// How long a new term waits for the endpoint's address (the last term's socket is released
/// as its tasks end).
const REBIND_FOR: Duration = Duration::from_secs(5);

/// Run the site whenever `replica` is the serving leader, until `cancel`. The executor is
/// built once (a Kubernetes client connects at start, so a bad `[federation.kube]` fails
/// `serve`); each term binds the federation endpoint, starts a fresh [`Site`] numbering its
/// proposals from the raft term, feeds it, and tears it all down when leadership ends.
/// Forecast histories and peers' accuracy are in memory: a new leader starts them afresh.
pub async fn start_replicated(settings: &FederationSettings, market: Arc<MarketResolver>, replica: Replica, cancel: CancellationToken) -> Result<ReplicatedSite, FederationStartError> {
    let executor = executor(settings).await?;
    let published = broadcast::channel(256).0;
    let site = ReplicatedSite { name: settings.site.name.clone(), published: published.clone() };
    tokio::spawn(follow_leader(settings.clone(), market, replica, executor, published, cancel));
    Ok(site)
}

async fn follow_leader(
    settings: FederationSettings,
    market: Arc<MarketResolver>,
    replica: Replica,
    executor: Arc<dyn MigrationExecutor>,
    published: broadcast::Sender<FederationMessage>,
    cancel: CancellationToken,
) {
    let name = settings.site.name.clone();
    let mut bind_failing_since = None;
    loop {
        // Wait to serve.
        let term = loop {
            if let Leadership::Serving = replica.leadership() {
                break replica.term();
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
            }
        };
        // The last term's socket is released as its tasks end: retry for a while quietly.
        let net = match bind(&settings) {
            Ok(net) => {
                bind_failing_since = None;
                net
            }
            Err(e) => {
                let since = *bind_failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > REBIND_FOR {
                    tracing::error!(site = %name, term, cause = ?e, "cannot bind the federation endpoint; this leader runs no site until it can");
                    bind_failing_since = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
                }
                continue;
            }
        };
        let term_cancel = cancel.child_token();
        let first_seq = term.saturating_mul(PROPOSALS_PER_TERM) + 1;
        let (_, done) = launch(&settings, net, executor.clone(), market.clone(), published.clone(), first_seq, term_cancel.clone());
        tracing::info!(site = %name, term, "this replica leads: federation site running here");
        let reason = serve_while_leading(&replica, term, &cancel).await;
        term_cancel.cancel();
        let _ = done.await;
        match reason {
            None => return,
            Some(reason) => tracing::info!(site = %name, term, %reason, "federation site stopped here"),
        }
    }
}

/// Wait while this replica serves in `term`; the reason it stopped (`None`: cancelled).
async fn serve_while_leading(replica: &Replica, term: u64, cancel: &CancellationToken) -> Option<String> {
    let mut last_serving = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
        }
        if replica.term() != term || !replica.is_leader() {
            return Some(format!("leadership moved (term {} now, leader {:?})", replica.term(), replica.leader()));
        }
        match replica.leadership() {
            Leadership::Serving => last_serving = tokio::time::Instant::now(),
            _ if last_serving.elapsed() > SERVING_GRACE => return Some(format!("leadership unconfirmed for {SERVING_GRACE:?}")),
            _ => {}
        }
    }
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
