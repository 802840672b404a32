//! State shared by all sessions: who is connected, id counters, statistics and the
//! inspection broadcast. Workloads need no shared owner table: a workload id (a cgroup
//! inode) only means something on its host, so every session speaks for `(its host, id)`.

use super::config::ServerConfig;
use super::leases::LeaseBook;
use super::metrics::ArbiterMetrics;
use super::resolver::RoundResolver;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use truce_common::model::{HostId, Timestamp};
use truce_common::wire::{HostSnapshot, InspectEvent, InspectFilter, InspectKind, SessionId};

/// Counters for tests, benchmarks and `/metrics`. Monotonic except the `*_active` gauges.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub sessions_active: AtomicUsize,
    /// `truce top` and other observer sessions (they hold no host).
    pub observers_active: AtomicUsize,
    /// Sessions the agent ended itself (stream finished or connection closed with code 0).
    pub sessions_closed_cleanly: AtomicU64,
    pub frames_rejected: AtomicU64,
    pub reports: AtomicU64,
    pub bids: AtomicU64,
    pub refusals: AtomicU64,
    pub rounds: AtomicU64,
    pub decisions: AtomicU64,
    pub throttled: AtomicU64,
    /// Agents told to go to the leader (at hello or when this replica stopped leading).
    pub redirects: AtomicU64,
    /// Inspection events a lagging subscriber never got.
    pub inspect_skipped: AtomicU64,
}

impl ServerStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct LiveSession {
    session: SessionId,
    connected_at: Timestamp,
    workloads: u32,
    cancel: CancellationToken,
    /// The session's leases; read here only to show a new subscriber the current ones.
    leases: Arc<Mutex<LeaseBook>>,
}

pub(crate) struct Shared {
    pub config: ServerConfig,
    pub resolver: Arc<dyn RoundResolver>,
    pub stats: Arc<ServerStats>,
    pub inspect: broadcast::Sender<Arc<InspectEvent>>,
    pub metrics: ArbiterMetrics,
    /// The newest event of each kind per host that was built (events are built only while
    /// someone subscribes), so a new subscriber sees the current state at once.
    latest: Mutex<HashMap<(HostId, InspectKind), Arc<InspectEvent>>>,
    next_session: AtomicU64,
    sessions: Mutex<HashMap<HostId, LiveSession>>,
    /// The federation site's latest messages (its votes are history, not one state), shown
    /// to a new subscriber that asks for them.
    federation: Mutex<std::collections::VecDeque<Arc<InspectEvent>>>,
}

/// Federation events a new subscriber is shown.
const FEDERATION_KEPT: usize = 64;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain maps that are still consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(config: ServerConfig, resolver: Arc<dyn RoundResolver>) -> Shared {
        let stats: Arc<ServerStats> = Arc::default();
        Shared {
            config,
            resolver,
            metrics: ArbiterMetrics::new(stats.clone()),
            stats,
            inspect: broadcast::channel(1024).0,
            latest: Mutex::default(),
            next_session: AtomicU64::new(1),
            sessions: Mutex::default(),
            federation: Mutex::default(),
        }
    }

    /// Open a session for `host`, cancelling an older session of the same host (the agent
    /// reconnected before the old connection timed out).
    /// The session's lease book comes back with its id.
    pub fn open_session(&self, host: &HostId, now: Timestamp, cancel: CancellationToken) -> (SessionId, Arc<Mutex<LeaseBook>>) {
        let session = SessionId(self.next_session.fetch_add(1, Ordering::Relaxed));
        let leases: Arc<Mutex<LeaseBook>> = Arc::default();
        let live = LiveSession { session, connected_at: now, workloads: 0, cancel, leases: leases.clone() };
        let old = lock(&self.sessions).insert(host.clone(), live);
        if let Some(old) = old {
            old.cancel.cancel();
        }
        (session, leases)
    }

    /// A session id for an observer: it holds no host, so it neither supersedes nor is listed.
    pub fn open_observer(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    pub fn close_session(&self, host: &HostId, session: SessionId) {
        let gone = {
            let mut sessions = lock(&self.sessions);
            let ours = sessions.get(host).is_some_and(|s| s.session == session);
            if ours {
                sessions.remove(host);
            }
            ours
        };
        if gone {
            // A newer session of the host keeps what it published; a host that left takes its figures along.
            lock(&self.latest).retain(|(h, _), _| h != host);
            self.metrics.forget_host(host);
        }
    }

    /// Count a workload the session named for the first time (shown in the host list).
    pub fn count_workload(&self, host: &HostId, session: SessionId) {
        if let Some(s) = lock(&self.sessions).get_mut(host).filter(|s| s.session == session) {
            s.workloads = s.workloads.saturating_add(1);
        }
    }

    pub fn publish(&self, make: impl FnOnce() -> InspectEvent) {
        if self.inspect.receiver_count() > 0 {
            let ev = Arc::new(make());
            if let Some(host) = ev.host() {
                lock(&self.latest).insert((host.clone(), ev.kind()), ev.clone());
            }
            // No receivers between the check and the send is harmless: the event is dropped.
            let _ = self.inspect.send(ev);
        }
    }

    /// Slow-changing state (prices, accounts, leases): built and remembered whether or not
    /// anyone watches, so a subscriber that arrives between rounds sees it at once.
    pub fn publish_state(&self, ev: InspectEvent) {
        let ev = Arc::new(ev);
        if let Some(host) = ev.host() {
            lock(&self.latest).insert((host.clone(), ev.kind()), ev.clone());
        }
        if self.inspect.receiver_count() > 0 {
            let _ = self.inspect.send(ev);
        }
    }

    /// A federation message of this arbiter's site: remembered (the newest few) and sent to
    /// subscribers that asked for the federation kind.
    pub fn publish_federation(&self, ev: InspectEvent) {
        let ev = Arc::new(ev);
        {
            let mut kept = lock(&self.federation);
            if kept.len() >= FEDERATION_KEPT {
                kept.pop_front();
            }
            kept.push_back(ev.clone());
        }
        if self.inspect.receiver_count() > 0 {
            let _ = self.inspect.send(ev);
        }
    }

    fn hosts_event(&self, now: Timestamp) -> InspectEvent {
        let hosts = lock(&self.sessions)
            .iter()
            .map(|(host, s)| HostSnapshot { host: host.clone(), session: s.session, connected_at: s.connected_at, workloads: s.workloads })
            .collect();
        InspectEvent::Hosts { at: now, hosts }
    }

    pub fn publish_hosts(&self, now: Timestamp) {
        self.publish(|| self.hosts_event(now));
    }

    /// What a new subscriber sees at once: the host list, then the newest known event of
    /// each kind per host, all passing `filter`. Leases are read from each host's lease book
    /// now (rounds do not copy them out unless someone watches), for hosts that had a round.
    pub fn snapshot_for(&self, filter: &InspectFilter, now: Timestamp) -> Vec<Arc<InspectEvent>> {
        let mut out = vec![Arc::new(self.hosts_event(now))];
        let mut known: Vec<Arc<InspectEvent>> =
            lock(&self.latest).values().filter(|ev| ev.kind() != InspectKind::Leases).cloned().collect();
        if filter.kinds.is_empty() || filter.kinds.contains(&InspectKind::Leases) {
            let books: Vec<(HostId, Arc<Mutex<LeaseBook>>)> = lock(&self.sessions).iter().map(|(h, s)| (h.clone(), s.leases.clone())).collect();
            for (host, book) in books {
                let book = lock(&book);
                if book.rounds_run {
                    known.push(Arc::new(InspectEvent::Leases { host, at: now, leases: book.live(now) }));
                }
            }
        }
        known.sort_by(|a, b| (a.host(), a.kind() as u8).cmp(&(b.host(), b.kind() as u8)));
        out.extend(known);
        out.extend(lock(&self.federation).iter().cloned());
        out.retain(|ev| filter.accepts(ev));
        out
    }
}

pub(crate) fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp(ms)
}
