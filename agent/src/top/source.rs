//! Where `truce top` reads from: the arbiter's inspection stream (QUIC + mTLS, as an
//! observer session that holds no host) or an agent's unix socket. Both reconnect with
//! jittered backoff and say when the data stops flowing.

use crate::inspect::frames::{read_frame, write_frame};
use crate::transport::{ArbiterEndpoint, Backoff, ClientConfig, Dialer, TransportError};
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use truce_common::model::HostId;
use truce_common::wire::{
    self, CAP_OBSERVER, Hello, HostHistory, HostView, InspectEvent, InspectFilter, InspectKind, MAX_FRAME_BYTES, Message, Subscribe,
};

#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// Subscribed; data flows.
    Live,
    /// The connection ended or could not be made; the source retries.
    Lost(String),
    Inspect(Box<InspectEvent>),
    History(Box<HostHistory>),
    View(Box<HostView>),
}

/// Every kind, the opt-in ones included.
pub const ALL_KINDS: &[InspectKind] = &[
    InspectKind::Hosts,
    InspectKind::Workloads,
    InspectKind::Estimates,
    InspectKind::Forecasts,
    InspectKind::Bids,
    InspectKind::Prices,
    InspectKind::Accounts,
    InspectKind::Leases,
    InspectKind::Decisions,
    InspectKind::Federation,
];

fn backoff() -> Backoff {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    Backoff::new(Duration::from_millis(200), Duration::from_secs(5), seed)
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::probes::error_chain(e)
}

/// Watch the arbiter as `identity` (a certificate `truce-arbiter certs issue` minted into
/// `certs/hosts/`). Fails at once when the TLS files cannot be loaded.
/// A running source: its events, and its task (await it after cancelling, so the
/// connection is closed properly rather than left to time out).
pub struct Source {
    pub events: mpsc::Receiver<SourceEvent>,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn spawn_arbiter(endpoints: Vec<ArbiterEndpoint>, identity: HostId, certs: PathBuf, cancel: CancellationToken) -> Result<Source, TransportError> {
    if endpoints.is_empty() {
        return Err(TransportError::NoEndpoints);
    }
    let mut cfg = ClientConfig::new(identity, &certs, endpoints);
    cfg.capabilities = vec![CAP_OBSERVER.to_string()];
    let dialer = Dialer::new(&cfg)?;
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(async move {
        let mut delays = backoff();
        let mut i = 0usize;
        loop {
            let ep = &cfg.endpoints[i % cfg.endpoints.len()];
            let reason = tokio::select! {
                _ = cancel.cancelled() => break,
                r = watch_arbiter(&dialer, ep, &cfg, &tx, &mut delays) => r,
            };
            i += 1;
            if tx.send(SourceEvent::Lost(format!("{}: {reason}", ep.addr))).await.is_err() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delays.next_delay()) => {}
            }
        }
        // The session future is dropped by now, which closes its connection (code 0); let the close go out.
        dialer.wait_idle(Duration::from_millis(500)).await;
    });
    Ok(Source { events: rx, task })
}

async fn watch_arbiter(dialer: &Dialer, ep: &ArbiterEndpoint, cfg: &ClientConfig, tx: &mpsc::Sender<SourceEvent>, delays: &mut Backoff) -> String {
    let (mut raw, _welcome) = match tokio::time::timeout(cfg.connect_timeout, dialer.handshake(ep)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return chain(&e),
        Err(_) => return "no welcome in time".into(),
    };
    let filter = InspectFilter { hosts: vec![], kinds: ALL_KINDS.to_vec() };
    if let Err(e) = raw.send(&Message::Subscribe(Subscribe { seq: 1, filter })).await {
        return chain(&e);
    }
    loop {
        let event = match raw.recv().await {
            Ok(Message::Ack(_)) => {
                delays.reset();
                SourceEvent::Live
            }
            Ok(Message::Inspect(ev)) => SourceEvent::Inspect(Box::new(ev)),
            Ok(Message::Error(e)) => return format!("arbiter said {}: {}", e.code, e.message),
            Ok(other) => {
                tracing::debug!(got = other.name(), "ignoring a message the cluster view does not use");
                continue;
            }
            Err(e) => return chain(&e),
        };
        if tx.send(event).await.is_err() {
            raw.close_cleanly(Duration::from_millis(200)).await;
            return "closed".into();
        }
    }
}

/// Watch an agent through its unix socket.
pub fn spawn_agent(path: PathBuf, cancel: CancellationToken) -> Source {
    let (tx, rx) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        let mut delays = backoff();
        loop {
            let reason = tokio::select! {
                _ = cancel.cancelled() => break,
                r = watch_agent(&path, &tx, &mut delays) => r,
            };
            if tx.send(SourceEvent::Lost(reason)).await.is_err() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delays.next_delay()) => {}
            }
        }
    });
    Source { events: rx, task }
}

async fn watch_agent(path: &std::path::Path, tx: &mpsc::Sender<SourceEvent>, delays: &mut Backoff) -> String {
    let mut s = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return format!("{}: permission denied (the socket is root only)", path.display()),
        Err(e) => return format!("{}: {e}", path.display()),
    };
    let max = MAX_FRAME_BYTES;
    let hello = Hello { min: wire::VERSION_MIN, max: wire::VERSION_MAX, host: HostId("truce-top".into()), capabilities: vec![CAP_OBSERVER.into()] };
    if let Err(e) = write_frame(&mut s, &Message::Hello(hello), max).await {
        return chain(&e);
    }
    match read_frame(&mut s, max).await {
        Ok(Message::Welcome(_)) => {}
        Ok(Message::UnsupportedVersion(u)) => return format!("the agent speaks protocol versions {}..={} only", u.supported_min, u.supported_max),
        Ok(Message::Error(e)) => return format!("agent said {}: {}", e.code, e.message),
        Ok(other) => return format!("agent answered hello with {}", other.name()),
        Err(e) => return chain(&e),
    }
    if let Err(e) = write_frame(&mut s, &Message::Subscribe(Subscribe { seq: 1, filter: InspectFilter::default() }), max).await {
        return chain(&e);
    }
    loop {
        let event = match read_frame(&mut s, max).await {
            Ok(Message::Ack(_)) => {
                delays.reset();
                SourceEvent::Live
            }
            Ok(Message::HostHistory(h)) => SourceEvent::History(Box::new(h)),
            Ok(Message::HostView(v)) => SourceEvent::View(Box::new(v)),
            Ok(Message::Error(e)) => return format!("agent said {}: {}", e.code, e.message),
            Ok(other) => {
                tracing::debug!(got = other.name(), "ignoring a message the host view does not use");
                continue;
            }
            Err(e) => return chain(&e),
        };
        if tx.send(event).await.is_err() {
            return "closed".into();
        }
    }
}
