//! The long-lived client: keeps a session to one of the arbiters, fails over, backs off,
//! and never blocks the daemon. While disconnected the daemon keeps observing; leases it
//! holds simply lapse at their expiry (the enforcer reverts them), nothing waits on us.

use super::backoff::{Backoff, seed};
use super::config::ClientConfig;
use super::dial::{Dialer, RawSession, TransportError};
use super::io::{FrameError, read_frame};
use super::outbox::Outbox;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use truce_common::model::Bid;
use truce_common::wire::{self, Ack, Bids, Decisions, ErrorMessage, InspectEvent, LeaseRelease, LeaseRenew, Message, Report, SessionId, Subscribe};

/// What the daemon sends to the arbiter.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Report(Report),
    Bid(Bid),
    LeaseRenew(LeaseRenew),
    LeaseRelease(LeaseRelease),
    Subscribe(Subscribe),
}

impl Outbound {
    fn into_message(self) -> Message {
        match self {
            Outbound::Report(m) => Message::Report(m),
            Outbound::Bid(m) => Message::Bid(m),
            Outbound::LeaseRenew(m) => Message::LeaseRenew(m),
            Outbound::LeaseRelease(m) => Message::LeaseRelease(m),
            Outbound::Subscribe(m) => Message::Subscribe(m),
        }
    }
}

/// What the arbiter (or the connection) tells the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Decisions(Decisions),
    Ack(Ack),
    /// The arbiter refused a request (`seq` names it) or is about to close.
    Refused(ErrorMessage),
    Inspect(InspectEvent),
    State(ConnectionState),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionState {
    Connected { endpoint: SocketAddr, session: SessionId, version: u16 },
    /// The session ended or never started; `reason` is the error chain.
    Disconnected { endpoint: SocketAddr, reason: String },
    /// Waiting before the next attempt, which goes to `next`.
    Backoff { delay: Duration, next: SocketAddr },
}

pub struct ArbiterClient {
    outbox: Arc<Outbox<Outbound>>,
    task: JoinHandle<()>,
}

impl ArbiterClient {
    /// Start the connection task. It runs until `cancel`, then finishes its stream, lets the
    /// arbiter close the session cleanly and exits (await [`ArbiterClient::join`]).
    pub fn spawn(config: ClientConfig, cancel: CancellationToken) -> Result<(ArbiterClient, mpsc::Receiver<Inbound>), TransportError> {
        if config.endpoints.is_empty() {
            return Err(TransportError::NoEndpoints);
        }
        let dialer = Dialer::new(&config)?;
        let outbox = Outbox::new(config.outbox_capacity);
        let (tx, rx) = mpsc::channel(config.inbound_capacity.max(1));
        let span = info_span!("arbiter_client", host = %config.host);
        let task = tokio::spawn(drive(dialer, config, outbox.clone(), tx, cancel).instrument(span));
        Ok((ArbiterClient { outbox, task }, rx))
    }

    /// Queue a message; never blocks. Returns true when the oldest queued message was
    /// dropped to make room (counted in [`ArbiterClient::dropped`]).
    pub fn send(&self, msg: Outbound) -> bool {
        self.outbox.push(msg)
    }

    pub fn dropped(&self) -> u64 {
        self.outbox.dropped()
    }

    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

enum SessionEnd {
    Cancelled,
    /// `silent`: the arbiter stopped answering (the idle timeout), as a killed or cut-off
    /// replica does; otherwise it closed or reset the session.
    Lost { reason: String, silent: bool },
    /// The arbiter stopped leading its group; `leader` is where it says to go.
    Redirected { leader: Option<String>, reason: String },
}

/// Where to go after a redirect, and whether to go at once: the named leader when it is one
/// of our endpoints (it is dialled with our configured server name, so only known endpoints
/// qualify); a leader named elsewhere, the next endpoint. No leader named (an election is
/// under way): this replica again after a backoff, since it learns the winner first, but
/// only [`UNNAMED_RETRIES`] times in a row: a replica cut off from its group never learns it.
/// `unnamed` counts those answers in a row.
fn after_redirect(endpoints: &[super::config::ArbiterEndpoint], idx: usize, leader: Option<&str>, unnamed: &mut u32) -> (usize, bool) {
    let Some(leader) = leader else {
        *unnamed += 1;
        if *unnamed > UNNAMED_RETRIES {
            *unnamed = 0;
            return (idx + 1, false);
        }
        return (idx, false);
    };
    *unnamed = 0;
    let named = leader.parse::<SocketAddr>().ok().and_then(|a| endpoints.iter().position(|e| e.addr == a));
    (named.unwrap_or(idx + 1), true)
}

/// Redirects naming no leader that one replica may give in a row before the next is tried.
const UNNAMED_RETRIES: u32 = 2;

/// The pause before following a redirect.
const REDIRECT_PAUSE: Duration = Duration::from_millis(50);

async fn drive(dialer: Dialer, cfg: ClientConfig, outbox: Arc<Outbox<Outbound>>, inbound: mpsc::Sender<Inbound>, cancel: CancellationToken) {
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max, seed());
    let mut idx = 0usize;
    let mut redirected = false;
    let mut unnamed = 0u32;
    loop {
        let ep = &cfg.endpoints[idx % cfg.endpoints.len()];
        let attempt = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(cfg.connect_timeout, dialer.handshake(ep)) => r,
        };
        let reason = match attempt {
            Ok(Ok((raw, welcome))) => {
                info!(endpoint = %ep.addr, session = %welcome.session, version = welcome.version, "connected to arbiter");
                let state = ConnectionState::Connected { endpoint: ep.addr, session: welcome.session, version: welcome.version };
                let _ = inbound.send(Inbound::State(state)).await;
                backoff.reset();
                unnamed = 0;
                match pump(raw, &outbox, &inbound, &cancel, cfg.max_frame_bytes, welcome.version).await {
                    SessionEnd::Cancelled => break,
                    // An arbiter that fell silent is likely dead or cut off: the next replica
                    // (a follower redirects to the new leader) rather than a connect timeout
                    // spent on this one.
                    SessionEnd::Lost { reason, silent: true } => {
                        idx += 1;
                        reason
                    }
                    // A session that was closed or reset: retry the same arbiter first.
                    SessionEnd::Lost { reason, silent: false } => reason,
                    SessionEnd::Redirected { leader, reason } => {
                        (idx, redirected) = after_redirect(&cfg.endpoints, idx, leader.as_deref(), &mut unnamed);
                        format!("the arbiter stopped leading ({reason}); leader: {}", leader.as_deref().unwrap_or("unknown"))
                    }
                }
            }
            Ok(Err(TransportError::Redirected { leader, reason, .. })) => {
                (idx, redirected) = after_redirect(&cfg.endpoints, idx, leader.as_deref(), &mut unnamed);
                format!("not the leader ({reason}); leader: {}", leader.as_deref().unwrap_or("unknown"))
            }
            Ok(Err(e)) => {
                idx += 1;
                format!("{:#}", Chain(&e))
            }
            Err(_) => {
                idx += 1;
                "no welcome within the connect timeout".to_string()
            }
        };
        warn!(endpoint = %ep.addr, %reason, queued = outbox.len(), dropped = outbox.dropped(), "arbiter session down");
        let _ = inbound.send(Inbound::State(ConnectionState::Disconnected { endpoint: ep.addr, reason })).await;
        // A redirect is an answer, not a failure: go on at once (a short pause only, so two
        // replicas that each name the other during an election do not spin).
        let delay = if std::mem::take(&mut redirected) { REDIRECT_PAUSE } else { backoff.next_delay() };
        let next = cfg.endpoints[idx % cfg.endpoints.len()].addr;
        let _ = inbound.send(Inbound::State(ConnectionState::Backoff { delay, next })).await;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    dialer.wait_idle(Duration::from_secs(1)).await;
}

/// Move messages both ways until the connection ends or we are cancelled.
async fn pump(
    raw: RawSession,
    outbox: &Outbox<Outbound>,
    inbound: &mpsc::Sender<Inbound>,
    cancel: &CancellationToken,
    max: u32,
    version: u16,
) -> SessionEnd {
    let RawSession { conn, mut send, mut recv, .. } = raw;
    let reader = async {
        loop {
            let msg = match read_frame(&mut recv, max).await {
                Ok(m) => m,
                Err(e) => return Ok(e),
            };
            let item = match msg {
                Message::Decisions(d) => Inbound::Decisions(d),
                Message::Ack(a) => Inbound::Ack(a),
                Message::Error(e) => Inbound::Refused(e),
                Message::Inspect(i) => Inbound::Inspect(i),
                Message::Redirect(r) => return Err(r),
                other => {
                    warn!(got = other.name(), "ignoring an unexpected message from the arbiter");
                    continue;
                }
            };
            // The daemon not reading stalls this reader, which QUIC turns into backpressure.
            let _ = inbound.send(item).await;
        }
    };
    let writer = async {
        let mut buf = Vec::with_capacity(4096);
        loop {
            // Everything queued goes out in one stream write; from version 2 the bids among
            // it travel as one `bids` frame (one read and one round at the arbiter), from
            // version 3 packed.
            let batch = outbox.pop_batch(WRITE_BATCH).await;
            buf.clear();
            for msg in frames(batch, version >= wire::VERSION_BIDS) {
                if let Err(source) = wire::encode_for(version, &msg, &mut buf, max) {
                    // One message too big to send is dropped with a log; the session goes on.
                    warn!(message = msg.name(), cause = %Chain(&source), "dropping a message the arbiter would refuse");
                }
            }
            if let Err(source) = send.write_all(&buf).await {
                return FrameError::Write { source };
            }
        }
    };
    let end = tokio::select! {
        _ = cancel.cancelled() => None,
        e = reader => match e {
            Ok(e) => Some(format!("{:#}", Chain(&e))),
            Err(r) => {
                conn.close(0u32.into(), b"redirected");
                return SessionEnd::Redirected { leader: r.leader, reason: r.reason };
            }
        },
        e = writer => Some(format!("{:#}", Chain(&e))),
    };
    match end {
        Some(reason) => {
            // Read before our own close, which would otherwise become the reason.
            let closed = conn.close_reason();
            conn.close(0u32.into(), b"session lost");
            let silent = matches!(closed, Some(quinn::ConnectionError::TimedOut));
            let reason = match closed {
                Some(quinn::ConnectionError::ApplicationClosed(c)) => {
                    format!("{reason} (arbiter closed with code {}: {})", c.error_code, String::from_utf8_lossy(&c.reason))
                }
                _ => reason,
            };
            SessionEnd::Lost { reason, silent }
        }
        None => {
            // Clean goodbye: finish our stream; the arbiter closes the session when it reads the end.
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
            conn.close(0u32.into(), b"bye");
            info!("disconnected from arbiter");
            SessionEnd::Cancelled
        }
    }
}

#[cfg(test)]
mod redirect_tests {
    use super::*;
    use crate::transport::ArbiterEndpoint;

    #[test]
    fn a_redirect_without_a_leader_retries_the_replica_twice_then_moves_on() {
        let eps: Vec<ArbiterEndpoint> = (1..=3).map(|i| ArbiterEndpoint { addr: SocketAddr::from(([127, 0, 0, i], 7447)), server_name: "localhost".into() }).collect();
        let mut unnamed = 0;
        assert_eq!(after_redirect(&eps, 0, Some("127.0.0.3:7447"), &mut unnamed), (2, true), "the named leader, at once");
        assert_eq!(after_redirect(&eps, 0, Some("10.9.9.9:7447"), &mut unnamed), (1, true), "a leader we do not know: the next");
        assert_eq!(after_redirect(&eps, 0, None, &mut unnamed), (0, false));
        assert_eq!(after_redirect(&eps, 0, None, &mut unnamed), (0, false));
        assert_eq!(after_redirect(&eps, 0, None, &mut unnamed), (1, false), "a replica that never learns a leader is left");
        assert_eq!(unnamed, 0);
    }
}

/// Messages taken from the outbox in one go.
const WRITE_BATCH: usize = 256;

/// The frames for a batch of outbound messages, in order. With `batch_bids`, the bids are
/// gathered into one `bids` frame placed where the first of them was. A bid may so overtake
/// a report or renewal queued in the same instant; none of them depends on the other (bids
/// wait for the next round anyway).
fn frames(batch: Vec<Outbound>, batch_bids: bool) -> Vec<Message> {
    if !batch_bids {
        return batch.into_iter().map(Outbound::into_message).collect();
    }
    let mut out = Vec::with_capacity(batch.len());
    let mut bids_at: Option<usize> = None;
    for item in batch {
        match (item, bids_at) {
            (Outbound::Bid(bid), Some(i)) => {
                if let Message::Bids(b) = &mut out[i] {
                    b.bids.push(bid);
                }
            }
            (Outbound::Bid(bid), None) => {
                bids_at = Some(out.len());
                out.push(Message::Bids(Bids { bids: vec![bid] }));
            }
            (other, _) => out.push(other.into_message()),
        }
    }
    out
}

pub(crate) use truce_common::chain::Chain;

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::model::{BidId, Credits, Timestamp, WorkloadId, WorkloadRef};

    fn bid(id: u64) -> Bid {
        Bid {
            id: BidId(id),
            workload: WorkloadRef { id: WorkloadId(id), path: format!("/w{id}") },
            at: Timestamp(0),
            asks: vec![],
            releases: vec![],
            trades: vec![],
            willingness_to_pay: Credits(0),
            priority: 1,
            slo_breach: false,
            lease_ms: 1000,
            reasons: vec![],
        }
    }

    fn renew(seq: u64) -> Outbound {
        Outbound::LeaseRenew(LeaseRenew { seq, lease: truce_common::model::LeaseId(seq), extend_ms: 1 })
    }

    #[test]
    fn version_2_gathers_a_batchs_bids_into_one_frame() {
        let batch = vec![renew(1), Outbound::Bid(bid(1)), renew(2), Outbound::Bid(bid(2))];
        let got = frames(batch, true);
        let want = vec![renew(1).into_message(), Message::Bids(Bids { bids: vec![bid(1), bid(2)] }), renew(2).into_message()];
        assert_eq!(got, want);
    }

    #[test]
    fn version_1_sends_one_frame_per_bid() {
        let got = frames(vec![Outbound::Bid(bid(1)), Outbound::Bid(bid(2))], false);
        assert_eq!(got, vec![Message::Bid(bid(1)), Message::Bid(bid(2))]);
    }
}
