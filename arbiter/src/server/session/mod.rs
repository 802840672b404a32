//! One agent connection: TLS identity -> `Hello` -> a session loop that reads messages,
//! runs the host's market round every period and writes decisions back.

mod traffic;

use super::io::{FrameError, read_frame, write_frame};
use super::round::SessionState;
use super::state::{Shared, bump, now};
use super::tls::peer_host;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};
use truce_common::model::HostId;
use super::resolver::Leadership;
use traffic::session_loop;
use truce_common::wire::{self, ErrorCode, ErrorMessage, Message, Redirect, UnsupportedVersion, Welcome};

/// Why a session ended; decides the close code and the log line.
pub(crate) enum End {
    Shutdown,
    Superseded,
    Frame(FrameError),
    SlowConsumer,
    /// This replica stopped leading: the agent is sent this and moves on.
    NotLeader(Redirect),
}

/// The redirect to send when this arbiter does not serve rounds now.
pub(crate) fn redirect(shared: &Shared) -> Option<Redirect> {
    redirect_for(shared.resolver.leadership())
}

/// What an agent is told under `leadership`: nothing when serving, else where to go.
fn redirect_for(leadership: Leadership) -> Option<Redirect> {
    match leadership {
        Leadership::Serving => None,
        Leadership::Elsewhere { leader, reason } => Some(Redirect { leader, reason }),
        Leadership::Electing { reason, .. } => Some(Redirect { leader: None, reason }),
    }
}

/// How often a held hello looks at the election again.
const ELECTION_POLL: Duration = Duration::from_millis(20);

/// [`redirect`] for a new agent, after the election under way (if any) has named a leader.
/// The agents of a dead leader all notice its silence at about the same time and dial the
/// same next replica, often before the election ends. Answered at once, each would back off,
/// handshake with this replica again and be redirected then: their handshakes cost it twice
/// and the backoff delays them. Held, each goes straight to the winner (or is served here).
async fn redirect_after_election(shared: &Shared, cancel: &CancellationToken) -> Option<Redirect> {
    let held = Instant::now();
    loop {
        let leadership = shared.resolver.leadership();
        let now = Instant::now();
        let settles_by = match &leadership {
            Leadership::Electing { settles_by, .. } if now < *settles_by && !cancel.is_cancelled() => *settles_by,
            _ => {
                let answer = redirect_for(leadership);
                if held.elapsed() >= ELECTION_POLL {
                    debug!(held_ms = held.elapsed().as_millis() as u64, leader = ?answer.as_ref().map(|r| &r.leader), reason = ?answer.as_ref().map(|r| &r.reason), "held the hello through an election");
                }
                return answer;
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(ELECTION_POLL.min(settles_by - now)) => {}
        }
    }
}

/// How long a closing side waits for its last frames to be acknowledged.
const LINGER: Duration = Duration::from_millis(500);

pub(crate) async fn serve_connection(incoming: quinn::Incoming, shared: Arc<Shared>, cancel: CancellationToken) {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(cause) => {
            bump(&shared.stats.handshakes_failed);
            warn!(%peer, %cause, "handshake failed");
            return;
        }
    };
    let host = match peer_host(&conn) {
        Ok(host) => host,
        Err(cause) => {
            bump(&shared.stats.handshakes_failed);
            warn!(%peer, %cause, "refused: no host identity in the client certificate");
            close(&conn, ErrorCode::HOST_MISMATCH, &cause.to_string());
            return;
        }
    };
    let span = info_span!("session", host = %host, %peer);
    run(conn, host, shared, cancel).instrument(span).await;
}

fn close(conn: &quinn::Connection, code: ErrorCode, reason: &str) {
    conn.close(quinn::VarInt::from_u32(u32::from(code.0)), reason.as_bytes());
}

async fn refuse(conn: &quinn::Connection, send: &mut quinn::SendStream, max: u32, msg: Message, code: ErrorCode, reason: &str) {
    if let Err(cause) = write_frame(send, &msg, max).await {
        debug!(%cause, "could not send the refusal");
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(LINGER, send.stopped()).await;
    close(conn, code, reason);
}

async fn run(conn: quinn::Connection, host: HostId, shared: Arc<Shared>, cancel: CancellationToken) {
    let cfg = &shared.config;
    let max = cfg.max_frame_bytes;
    let (mut send, mut recv) = match tokio::time::timeout(cfg.handshake_timeout, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(cause)) => {
            info!(%cause, "connection ended before the agent opened its stream");
            return;
        }
        Err(_) => {
            warn!("refused: no stream within the handshake timeout");
            close(&conn, ErrorCode::TIMEOUT, "no stream within the handshake timeout");
            return;
        }
    };
    let hello = match tokio::time::timeout(cfg.handshake_timeout, read_frame(&mut recv, max)).await {
        Ok(Ok(Message::Hello(hello))) => hello,
        Ok(Ok(other)) => {
            let reason = format!("expected hello, got {}", other.name());
            warn!(%reason, "refused");
            let msg = Message::Error(ErrorMessage { seq: None, code: ErrorCode::UNEXPECTED_MESSAGE, message: reason.clone() });
            refuse(&conn, &mut send, max, msg, ErrorCode::UNEXPECTED_MESSAGE, &reason).await;
            return;
        }
        Ok(Err(cause)) => {
            bump(&shared.stats.frames_rejected);
            let reason = format!("{:#}", Chain(&cause));
            warn!(%reason, "refused: bad first frame");
            let msg = Message::Error(ErrorMessage { seq: None, code: ErrorCode::MALFORMED_FRAME, message: reason.clone() });
            refuse(&conn, &mut send, max, msg, ErrorCode::MALFORMED_FRAME, &reason).await;
            return;
        }
        Err(_) => {
            warn!("refused: no hello within the handshake timeout");
            close(&conn, ErrorCode::TIMEOUT, "no hello within the handshake timeout");
            return;
        }
    };
    if hello.host != host {
        let reason = format!("hello names host {} but the certificate is for {host}", hello.host);
        warn!(%reason, "refused");
        bump(&shared.stats.refusals);
        let msg = Message::Error(ErrorMessage { seq: None, code: ErrorCode::HOST_MISMATCH, message: reason.clone() });
        refuse(&conn, &mut send, max, msg, ErrorCode::HOST_MISMATCH, &reason).await;
        return;
    }
    let Some(version) = wire::negotiate(hello.min, hello.max) else {
        let reason = format!("agent speaks versions {}..={}, arbiter {}..={}", hello.min, hello.max, wire::VERSION_MIN, wire::VERSION_MAX);
        warn!(%reason, "refused: unsupported version");
        let msg = Message::UnsupportedVersion(UnsupportedVersion { supported_min: wire::VERSION_MIN, supported_max: wire::VERSION_MAX });
        refuse(&conn, &mut send, max, msg, ErrorCode::UNSUPPORTED_VERSION, &reason).await;
        return;
    };

    if let Some(r) = redirect_after_election(&shared, &cancel).await {
        bump(&shared.stats.redirects);
        info!(leader = ?r.leader, reason = %r.reason, "redirected: not the leader");
        let reason = r.reason.clone();
        refuse(&conn, &mut send, max, Message::Redirect(r), ErrorCode::NOT_LEADER, &reason).await;
        return;
    }

    let session_cancel = cancel.child_token();
    // An observer (`truce top`) watches only: it must not supersede the agent of the host
    // whose certificate it borrows, nor appear as a host.
    let observer = hello.capabilities.iter().any(|c| c == wire::CAP_OBSERVER);
    let (session, leases) = if observer {
        shared.stats.observers_active.fetch_add(1, Ordering::Relaxed);
        (shared.open_observer(), Default::default())
    } else {
        bump(&shared.stats.sessions_opened);
        shared.stats.sessions_active.fetch_add(1, Ordering::Relaxed);
        shared.open_session(&host, now(), session_cancel.clone())
    };
    info!(%session, version, observer, capabilities = ?hello.capabilities, "session open");
    let welcome = Message::Welcome(Welcome { version, session, host: host.clone(), round_ms: cfg.round_period.as_millis() as u64 });
    let end = match write_frame(&mut send, &welcome, max).await {
        Ok(()) => {
            if !observer {
                shared.publish_hosts(now());
            }
            session_loop(&conn, send, recv, SessionState::new(host.clone(), session, leases, shared.clone(), observer, version), &session_cancel, &cancel).await
        }
        Err(e) => End::Frame(e),
    };
    if observer {
        shared.stats.observers_active.fetch_sub(1, Ordering::Relaxed);
    } else {
        shared.close_session(&host, session);
        shared.stats.sessions_active.fetch_sub(1, Ordering::Relaxed);
        shared.publish_hosts(now());
    }
    let (code, reason) = match end {
        End::Shutdown => (ErrorCode::SHUTTING_DOWN, "arbiter shutting down".to_string()),
        End::Superseded => (ErrorCode::SUPERSEDED, "superseded by a newer session for this host".to_string()),
        End::SlowConsumer => (ErrorCode::SLOW_CONSUMER, "agent does not read its decisions".to_string()),
        End::NotLeader(r) => {
            bump(&shared.stats.redirects);
            (ErrorCode::NOT_LEADER, r.reason)
        }
        End::Frame(FrameError::Finished) => {
            bump(&shared.stats.sessions_closed_cleanly);
            info!(%session, "agent finished its stream; session closed");
            (ErrorCode(0), "bye".to_string())
        }
        End::Frame(FrameError::Read { source: quinn::ReadError::ConnectionLost(cause) }) => {
            match &cause {
                quinn::ConnectionError::ApplicationClosed(c) if c.error_code.into_inner() == 0 => {
                    bump(&shared.stats.sessions_closed_cleanly);
                    info!(%session, "agent disconnected");
                }
                _ => warn!(%session, %cause, "connection lost"),
            }
            return;
        }
        End::Frame(e) => {
            bump(&shared.stats.frames_rejected);
            (ErrorCode::MALFORMED_FRAME, format!("{:#}", Chain(&e)))
        }
    };
    if code.0 != 0 {
        warn!(%session, %code, %reason, "closing session");
    }
    close(&conn, code, &reason);
}

pub(crate) use truce_common::chain::Chain;
