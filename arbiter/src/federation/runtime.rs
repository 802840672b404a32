//! Runs one site: feeds periods and peer messages into the pure [`Site`], sends what it
//! says over the peer endpoint, runs executor orders, and closes votes at their deadline.

use super::executor::MigrationExecutor;
use super::site::{Action, HostObservation, Site};
use crate::peer::{Inbound, PeerEndpoint};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use truce_common::model::Timestamp;
use truce_common::wire::{FederationMessage, Message};

/// One period of observations, with the period's time.
#[derive(Debug)]
pub struct Period {
    pub at: Timestamp,
    pub observations: Vec<HostObservation>,
}

/// Handles to a running site.
pub struct SiteHandle {
    /// The site's name.
    pub name: String,
    pub periods: mpsc::Sender<Period>,
    /// What this site sees (for `truce top` and tests): tallies and verdicts, and every
    /// federation message it sends or receives (statuses, proposals, votes).
    pub published: broadcast::Sender<FederationMessage>,
}

pub fn spawn(site: Site, net: Arc<PeerEndpoint>, executor: Arc<dyn MigrationExecutor>, cancel: CancellationToken) -> SiteHandle {
    spawn_publishing(site, net, executor, broadcast::channel(256).0, cancel).0
}

/// [`spawn`] onto an existing `published` channel (a replicated site starts a new runtime on
/// every leader it moves to, and `truce top` keeps its subscription). The task ends, and
/// closes `net`, when `cancel` fires.
pub fn spawn_publishing(
    site: Site,
    net: Arc<PeerEndpoint>,
    executor: Arc<dyn MigrationExecutor>,
    published: broadcast::Sender<FederationMessage>,
    cancel: CancellationToken,
) -> (SiteHandle, tokio::task::JoinHandle<()>) {
    let (periods, rx) = mpsc::channel(64);
    let (in_tx, in_rx) = mpsc::channel(1024);
    let name = site.name().to_string();
    let accepting = tokio::spawn(net.clone().accept(in_tx, cancel.clone()));
    let running = tokio::spawn(run(site, net, executor, rx, in_rx, published.clone(), cancel));
    let done = tokio::spawn(async move {
        let _ = running.await;
        let _ = accepting.await;
    });
    (SiteHandle { name, periods, published }, done)
}

async fn run(
    mut site: Site,
    net: Arc<PeerEndpoint>,
    executor: Arc<dyn MigrationExecutor>,
    mut periods: mpsc::Receiver<Period>,
    mut inbound: mpsc::Receiver<Inbound>,
    published: broadcast::Sender<FederationMessage>,
    cancel: CancellationToken,
) {
    let vote_timeout = Duration::from_millis(site_vote_timeout(&site));
    let mut deadline: Option<Instant> = None;
    let mut open = None;
    let mut clock = Timestamp(0);
    let peers: Vec<String> = site_peers(&site);
    loop {
        let actions = tokio::select! {
            _ = cancel.cancelled() => break,
            p = periods.recv() => match p {
                Some(p) => { clock = clock.max(p.at); site.period(p.at, p.observations) }
                None => break,
            },
            m = inbound.recv() => match m {
                Some(Inbound::OneWay { from, msg: Message::Federation(msg) }) => {
                    let _ = published.send(msg.clone());
                    site.handle(&from, msg, clock)
                }
                Some(Inbound::OneWay { from, msg }) | Some(Inbound::Request { from, msg, .. }) => {
                    tracing::warn!(peer = %from, got = msg.name(), "unexpected message on the federation endpoint");
                    Vec::new()
                }
                None => break,
            },
            _ = sleep_until(deadline), if deadline.is_some() => site.close_vote(clock),
        };
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Broadcast(msg) => {
                    for p in &peers {
                        net.send(p, Message::Federation(msg.clone()));
                    }
                    let _ = published.send(msg);
                }
                Action::Send { to, msg } => {
                    let _ = published.send(msg.clone());
                    net.send(&to, Message::Federation(msg));
                }
                Action::Publish(msg) => {
                    let _ = published.send(msg);
                }
                Action::Execute(order) => match executor.execute(&order).await {
                    Ok(report) => tracing::info!(proposal = %order.proposal.id, action = ?order.action, role = ?order.role, summary = %report.summary, "migration order done"),
                    Err(err) => {
                        tracing::warn!(proposal = %order.proposal.id, action = ?order.action, role = ?order.role, cause = %err, "migration order failed");
                        queue.extend(site.migration_failed(&order.proposal.id, err.to_string(), clock));
                    }
                },
            }
        }
        // Compared with the proposal open after the last turn: `site.period` above may have
        // opened this one (read before the actions, it would look unchanged and a vote with a
        // silent peer would never close).
        let now_open = site.open_proposal().cloned();
        if now_open.is_none() {
            deadline = None;
        } else if now_open != open {
            deadline = Some(Instant::now() + vote_timeout);
        }
        open = now_open;
    }
    net.close();
}

fn site_vote_timeout(site: &Site) -> u64 {
    site.config().vote_timeout_ms
}

fn site_peers(site: &Site) -> Vec<String> {
    site.peers().cloned().collect()
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
