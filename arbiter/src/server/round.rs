//! A session's state between frames: the host's pending bids, its leases, its workloads,
//! and its market round. Everything here runs on the session's own task.

use super::resolver::RoundInput;
use super::session::{End, redirect};
use super::leases::LeaseBook;
use super::state::{Shared, bump, lock};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};
use truce_common::model::{Bid, HostId, Timestamp, WorkloadRef};
use truce_common::wire::{
    self, Ack, Decisions, ErrorCode, ErrorMessage, InspectEvent, InspectFilter, Inventory, Message, Report, SessionId, WorkloadSummary,
};

/// Renewals extend a lease by at most this much at a time.
const MAX_RENEW_MS: u64 = 300_000;

pub(crate) struct SessionState {
    pub host: HostId,
    pub session: SessionId,
    pub shared: Arc<Shared>,
    pub out: Option<mpsc::Sender<Message>>,
    /// Workload ids this host has named (for the host list's count).
    named: HashSet<u64>,
    pending: Vec<Bid>,
    /// Shared with [`Shared`] only so a new subscriber can be shown them; this task writes.
    leases: Arc<Mutex<LeaseBook>>,
    round: u64,
    /// The host's latest inventory, passed to every round.
    inventory: Option<Inventory>,
    subscription: Option<(InspectFilter, broadcast::Receiver<Arc<InspectEvent>>)>,
    /// `truce top`: holds no host, may only subscribe.
    observer: bool,
    /// The negotiated protocol version (`bids` needs 2; from 3 the writer packs decisions).
    pub version: u16,
}

impl SessionState {
    pub fn new(host: HostId, session: SessionId, leases: Arc<Mutex<LeaseBook>>, shared: Arc<Shared>, observer: bool, version: u16) -> Self {
        SessionState {
            host,
            session,
            shared,
            out: None,
            named: HashSet::new(),
            pending: Vec::new(),
            leases,
            round: 0,
            inventory: None,
            subscription: None,
            observer,
            version,
        }
    }

    fn send(&self, msg: Message) -> Result<(), End> {
        let Some(out) = &self.out else { return Ok(()) };
        out.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => End::SlowConsumer,
            mpsc::error::TrySendError::Closed(_) => End::Frame(super::io::FrameError::Finished),
        })
    }

    fn refuse(&self, seq: Option<u64>, code: ErrorCode, message: String) -> Result<(), End> {
        bump(&self.shared.stats.refusals);
        warn!(session = %self.session, %code, seq, reason = %message, "refused");
        self.send(Message::Error(ErrorMessage { seq, code, message }))
    }

    /// Remember a workload this host named. A workload id is a cgroup inode, unique only on
    /// its host, so the session speaks for `(self.host, id)`: another host naming the same
    /// number names its own cgroup, never this one (docs/protocol.md, "Workload scope").
    fn note_workload(&mut self, workload: &WorkloadRef) {
        if self.named.insert(workload.id.0) {
            self.shared.count_workload(&self.host, self.session);
        }
    }

    /// Why a message naming `ids` must be refused: it would take the host past
    /// `max_workloads_per_host` distinct workloads (the set lives as long as the session,
    /// so a hostile host could otherwise grow it without end). `None` when it fits.
    fn over_workload_limit(&self, ids: &[u64]) -> Option<String> {
        let limit = self.shared.config.max_workloads_per_host;
        let mut new: Vec<u64> = ids.iter().copied().filter(|id| !self.named.contains(id)).collect();
        new.sort_unstable();
        new.dedup();
        (self.named.len() + new.len() > limit).then(|| {
            format!("this host has named {} workloads in this session and the limit is {limit}; {} more refused", self.named.len(), new.len())
        })
    }

    pub fn handle(&mut self, msg: Message, now: Timestamp) -> Result<(), End> {
        if self.observer && matches!(msg, Message::Bid(_) | Message::Bids(_) | Message::Report(_) | Message::LeaseRenew(_) | Message::LeaseRelease(_)) {
            return self.refuse(None, ErrorCode::UNEXPECTED_MESSAGE, format!("an observer session may not send {}", msg.name()));
        }
        match msg {
            Message::Bid(bid) => self.on_bid(bid),
            Message::Bids(b) if self.version >= wire::VERSION_BIDS => b.bids.into_iter().try_for_each(|bid| self.on_bid(bid)),
            Message::Bids(_) => {
                let reason = format!("bids needs protocol version {}; this session speaks {}", wire::VERSION_BIDS, self.version);
                self.refuse(None, ErrorCode::UNEXPECTED_MESSAGE, reason)
            }
            Message::Report(report) => self.on_report(report),
            Message::LeaseRenew(r) => {
                // A replica that stopped leading extends nothing: the agent goes to the leader.
                if let Some(to) = redirect(&self.shared) {
                    return Err(End::NotLeader(to));
                }
                match lock(&self.leases).renew(r.lease, now, r.extend_ms.min(MAX_RENEW_MS)) {
                    true => self.send(Message::Ack(Ack { seq: r.seq })),
                    false => self.refuse(Some(r.seq), ErrorCode::UNKNOWN_LEASE, format!("no live lease {} for this host", r.lease.0)),
                }
            }
            Message::LeaseRelease(r) => match lock(&self.leases).release(r.lease) {
                true => self.send(Message::Ack(Ack { seq: r.seq })),
                false => self.refuse(Some(r.seq), ErrorCode::UNKNOWN_LEASE, format!("no live lease {} for this host", r.lease.0)),
            },
            Message::Subscribe(s) => {
                // Subscribe first, so nothing published after the snapshot is missed.
                let rx = self.shared.inspect.subscribe();
                self.send(Message::Ack(Ack { seq: s.seq }))?;
                let snapshot = self.shared.snapshot_for(&s.filter, now);
                // Leave room in the queue for live events; whatever is cut arrives with the next report or round.
                let room = (self.shared.config.outbound_queue / 2).max(1);
                if snapshot.len() > room {
                    warn!(session = %self.session, events = snapshot.len(), sent = room, "inspection snapshot cut to fit the outbound queue");
                }
                for ev in snapshot.into_iter().take(room) {
                    self.send(Message::Inspect((*ev).clone()))?;
                }
                self.subscription = Some((s.filter, rx));
                Ok(())
            }
            Message::Ack(_) => Ok(()),
            Message::Error(e) => {
                debug!(code = %e.code, message = %e.message, "agent reported an error");
                Ok(())
            }
            other @ (Message::Hello(_)
            | Message::Welcome(_)
            | Message::UnsupportedVersion(_)
            | Message::Decisions(_)
            | Message::Inspect(_)
            | Message::HostView(_)
            | Message::HostHistory(_)
            | Message::Federation(_)
            | Message::Raft(_)
            | Message::Redirect(_)
            | Message::ClusterRequest(_)
            | Message::ClusterStatus(_)) => self.refuse(None, ErrorCode::UNEXPECTED_MESSAGE, format!("{} is not valid in an open session", other.name())),
        }
    }

    fn on_bid(&mut self, bid: Bid) -> Result<(), End> {
        bump(&self.shared.stats.bids);
        if !self.named.contains(&bid.workload.id.0)
            && let Some(reason) = self.over_workload_limit(&[bid.workload.id.0])
        {
            return self.refuse(Some(bid.id.0), ErrorCode::TOO_MANY_WORKLOADS, reason);
        }
        self.note_workload(&bid.workload);
        if self.pending.len() >= self.shared.config.max_pending_bids {
            let reason = format!("{} bids already wait for this round", self.pending.len());
            return self.refuse(Some(bid.id.0), ErrorCode::RATE_LIMITED, reason);
        }
        self.pending.push(bid);
        Ok(())
    }

    fn on_report(&mut self, report: Report) -> Result<(), End> {
        bump(&self.shared.stats.reports);
        if report.host != self.host {
            let reason = format!("report names host {} but this session is {}", report.host, self.host);
            return self.refuse(Some(report.seq), ErrorCode::HOST_MISMATCH, reason);
        }
        let ids: Vec<u64> = report.workloads.iter().map(|w| w.workload.id.0).collect();
        if let Some(reason) = self.over_workload_limit(&ids) {
            return self.refuse(Some(report.seq), ErrorCode::TOO_MANY_WORKLOADS, reason);
        }
        for w in &report.workloads {
            self.note_workload(&w.workload);
        }
        if let Some(inventory) = report.inventory.clone() {
            self.inventory = Some(inventory);
        }
        let (host, at) = (self.host.clone(), report.at);
        self.shared.publish(|| InspectEvent::Workloads {
            host: host.clone(),
            at,
            workloads: report.workloads.iter().map(|w| WorkloadSummary { workload: w.workload.clone(), name: w.name.clone(), signals: w.signals.clone() }).collect(),
        });
        self.shared.publish(|| InspectEvent::Estimates { host: host.clone(), at, estimates: report.workloads.iter().filter_map(|w| w.estimate.clone()).collect() });
        self.shared.publish(|| InspectEvent::Forecasts { host: host.clone(), at, forecasts: report.workloads.iter().flat_map(|w| w.forecasts.iter().cloned()).collect() });
        // Each period while someone watches, so leases are seen to lapse between rounds; the
        // round itself remembers them for new subscribers, so reports stay cheap.
        self.shared.publish(|| InspectEvent::Leases { host, at, leases: lock(&self.leases).live(at) });
        self.send(Message::Ack(Ack { seq: report.seq }))
    }

    /// Run the host's round if bids are waiting: resolve, number, remember the leases and
    /// send the decisions (an empty list too, so every bid gets an answer).
    /// A replica that is not the confirmed leader runs no round: the session ends with a
    /// redirect (its bids wait for the leader; leases lapse or renew there).
    pub async fn run_round(&mut self, now: Timestamp) -> Result<(), End> {
        lock(&self.leases).expire(now);
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Some(r) = redirect(&self.shared) {
            return Err(End::NotLeader(r));
        }
        self.round += 1;
        let bids = std::mem::take(&mut self.pending);
        let host = self.host.clone();
        self.shared.publish(|| InspectEvent::Bids { host: host.clone(), bids: bids.clone() });
        let started = Instant::now();
        // A resolver may block on a durable or replicated write: keep it off the async workers.
        let (resolver, round, inventory) = (self.shared.resolver.clone(), self.round, self.inventory.clone());
        let input = (host.clone(), bids);
        // The market view too: it waits for the same lock a round holds while its write commits.
        let resolved = tokio::task::spawn_blocking(move || {
            let (host, bids) = input;
            let decisions = resolver.resolve(&RoundInput { host: &host, round, now, bids: &bids, inventory: inventory.as_ref() });
            (decisions, resolver.market_view(&host))
        })
        .await;
        let (mut decisions, market) = match resolved {
            Ok(d) => d,
            Err(cause) => {
                warn!(session = %self.session, %cause, "the round's resolver panicked; no decisions");
                (Vec::new(), None)
            }
        };
        // Ids stay the resolver's (the market's are ledger lease ids); only the round is ours.
        let live = {
            let mut book = lock(&self.leases);
            book.rounds_run = true;
            for d in decisions.iter_mut() {
                d.round = self.round;
                book.insert(d.lease.clone());
            }
            book.len()
        };
        let took = started.elapsed().as_secs_f64();
        debug!(session = %self.session, %host, round = self.round, decisions = decisions.len(), took_ms = (took * 1000.0) as u64, "round resolved");
        bump(&self.shared.stats.rounds);
        self.shared.stats.decisions.fetch_add(decisions.len() as u64, Ordering::Relaxed);
        if let Some(m) = &market {
            self.shared.publish_state(InspectEvent::Prices { host: host.clone(), at: now, prices: m.prices.clone() });
            if !m.accounts.is_empty() {
                self.shared.publish_state(InspectEvent::Accounts { host: host.clone(), at: now, accounts: m.accounts.clone() });
            }
        }
        self.shared.metrics.observe_round(took, &host, live, market);
        // New subscribers read the lease book itself (`Shared::snapshot_for`); only live
        // watchers need this round's copy.
        self.shared.publish(|| InspectEvent::Leases { host: host.clone(), at: now, leases: lock(&self.leases).live(now) });
        self.shared.publish(|| InspectEvent::Decisions { host: host.clone(), round: self.round, decisions: decisions.clone() });
        // One frame per round (an empty one too, so every bid gets an answer); a round too big
        // for one frame is split, moving the decisions rather than copying them.
        let per_frame = self.shared.config.decisions_per_frame.max(1);
        let mut rest = decisions;
        loop {
            let tail = if rest.len() > per_frame { rest.split_off(per_frame) } else { Vec::new() };
            self.send(Message::Decisions(Decisions { round: self.round, at: now, decisions: rest }))?;
            if tail.is_empty() {
                break;
            }
            rest = tail;
        }
        // Leadership lost during the round: what was committed went out; now the leader's turn.
        match redirect(&self.shared) {
            Some(r) => Err(End::NotLeader(r)),
            None => Ok(()),
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn subscribed(&self) -> bool {
        self.subscription.is_some()
    }

    pub async fn next_inspect_event(&mut self) -> Result<Arc<InspectEvent>, broadcast::error::RecvError> {
        match &mut self.subscription {
            Some((_, rx)) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    pub fn forward_inspect(&mut self, ev: Result<Arc<InspectEvent>, broadcast::error::RecvError>) -> Result<(), End> {
        match ev {
            Ok(ev) => {
                let pass = self.subscription.as_ref().is_some_and(|(f, _)| f.accepts(&ev));
                if pass { self.send(Message::Inspect((*ev).clone())) } else { Ok(()) }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.shared.stats.inspect_skipped.fetch_add(n, Ordering::Relaxed);
                warn!(session = %self.session, skipped = n, "inspection subscriber lagged; events skipped");
                Ok(())
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.subscription = None;
                Ok(())
            }
        }
    }
}
