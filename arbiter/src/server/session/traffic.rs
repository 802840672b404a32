//! An open session's traffic: the loop that gathers the agent's bids into rounds, and the
//! reader and writer tasks on its stream.

use super::{Chain, End, LINGER};
use crate::server::io::{FrameError, read_frame};
use crate::server::rate::TokenBucket;
use crate::server::round::SessionState;
use crate::server::state::{Shared, bump, now};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};
use truce_common::wire::{self, ErrorCode, ErrorMessage, Message};

/// How long a round waits after the first bid of a batch. An agent sends its period's bids as
/// back-to-back frames; a round run on the first of them would take the others as absent, and
/// a workload whose bid was still in flight lost its loan, reopened a round later
/// (loopback_market saw every lease reopened, 1 run in 5, when rounds split the batch).
const GATHER: Duration = Duration::from_millis(10);

pub(super) async fn session_loop(
    conn: &quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    mut state: SessionState,
    session_cancel: &CancellationToken,
    server_cancel: &CancellationToken,
) -> End {
    let shared = state.shared.clone();
    let cfg = &shared.config;
    let (out_tx, out_rx) = mpsc::channel::<Message>(cfg.outbound_queue);
    let (in_tx, mut in_rx) = mpsc::channel::<Result<Message, FrameError>>(64);
    let writer = tokio::spawn(write_loop(send, out_rx, cfg.max_frame_bytes, state.version).in_current_span());
    let reader = tokio::spawn(read_loop(recv, in_tx, shared.clone()).in_current_span());
    state.out = Some(out_tx);
    // A round runs when bids wait, at most once per period: a bid after a quiet spell is
    // decided after GATHER, a steady stream is batched per period, and idle hosts cost no timer.
    let period = cfg.round_period;
    let mut last_round: Option<Instant> = None;
    let mut pending_since: Option<Instant> = None;
    let end = loop {
        if !state.has_pending() {
            pending_since = None;
        }
        let due = state.has_pending().then(|| {
            let gathered = *pending_since.get_or_insert_with(Instant::now) + GATHER;
            last_round.map_or(gathered, |t| (t + period).max(gathered))
        });
        // Due already: run it now rather than through a timer that fires on the next tick.
        if due.is_some_and(|t| t <= Instant::now()) {
            last_round = Some(Instant::now());
            if let Err(end) = state.run_round(now()).await {
                break end;
            }
            continue;
        }
        tokio::select! {
            _ = session_cancel.cancelled() => {
                break if server_cancel.is_cancelled() { End::Shutdown } else { End::Superseded };
            }
            _ = sleep_until_opt(due), if due.is_some() => {
                last_round = Some(Instant::now());
                if let Err(end) = state.run_round(now()).await { break end; }
            }
            msg = in_rx.recv() => {
                // Take what else has arrived too, so one round answers all of it.
                let mut next = Some(msg);
                let mut taken = 0;
                let mut ended = None;
                while let Some(msg) = next.take() {
                    let r = match msg {
                        Some(Ok(msg)) => state.handle(msg, now()),
                        Some(Err(e)) => Err(End::Frame(e)),
                        None => Err(End::Frame(FrameError::Finished)),
                    };
                    if let Err(end) = r {
                        ended = Some(end);
                        break;
                    }
                    taken += 1;
                    if taken < DRAIN_MAX {
                        next = in_rx.try_recv().ok().map(Some);
                    }
                }
                if let Some(end) = ended { break end; }
            }
            ev = state.next_inspect_event(), if state.subscribed() => {
                if let Err(end) = state.forward_inspect(ev) { break end; }
            }
        }
    };
    reader.abort();
    // Tell the agent why, through the writer so the frame follows everything already queued.
    let parting = match &end {
        End::Shutdown => Some(Message::Error(ErrorMessage { seq: None, code: ErrorCode::SHUTTING_DOWN, message: "arbiter shutting down".to_string() })),
        End::Frame(FrameError::Decode { source }) => Some(Message::Error(ErrorMessage { seq: None, code: ErrorCode::MALFORMED_FRAME, message: source.to_string() })),
        End::NotLeader(r) => Some(Message::Redirect(r.clone())),
        _ => None,
    };
    if let (Some(msg), Some(out)) = (parting, state.out.as_ref()) {
        let _ = out.try_send(msg);
    }
    state.out = None;
    if !matches!(end, End::Frame(FrameError::Read { .. })) {
        let _ = tokio::time::timeout(LINGER * 2, writer).await;
    } else {
        writer.abort();
    }
    let _ = conn;
    end
}

async fn sleep_until_opt(due: Option<Instant>) {
    if let Some(t) = due {
        tokio::time::sleep_until(t.into()).await;
    }
}

/// Write queued frames. Whatever is already queued when the writer wakes goes out in one
/// stream write (up to [`COALESCE_BYTES`]), so a round's decisions and the acks around them
/// cost one wake-up of the connection, not one each. Frames take the form of the session's
/// protocol `version` (packed `decisions` from version 3 on).
async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Message>, max: u32, version: u16) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(msg) = rx.recv().await {
        buf.clear();
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            if let Err(source) = wire::encode_for(version, &msg, &mut buf, max) {
                debug!(cause = %Chain(&source), message = msg.name(), "writer stopped: frame not encodable");
                return;
            }
            if buf.len() < COALESCE_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if let Err(cause) = send.write_all(&buf).await {
            debug!(%cause, "writer stopped");
            return;
        }
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(LINGER, send.stopped()).await;
}

/// Inbound messages handled in one go before the session looks at its round again.
const DRAIN_MAX: usize = 64;

/// Bytes gathered into one stream write before it is issued.
const COALESCE_BYTES: usize = 64 * 1024;

async fn read_loop(mut recv: quinn::RecvStream, tx: mpsc::Sender<Result<Message, FrameError>>, shared: Arc<Shared>) {
    let cfg = &shared.config;
    let mut bucket = TokenBucket::new(cfg.agent_rate_per_s, cfg.agent_burst, Instant::now());
    loop {
        // Out of tokens: stop reading. QUIC flow control then slows this agent, and only it.
        while let Err(wait) = bucket.ready(Instant::now()) {
            bump(&shared.stats.throttled);
            tokio::time::sleep(wait).await;
        }
        let frame = read_frame(&mut recv, cfg.max_frame_bytes).await;
        // A `bids` frame pays for each bid in it, so the limit is on bids, not frames.
        let cost = match &frame {
            Ok(Message::Bids(b)) => u32::try_from(b.bids.len()).unwrap_or(u32::MAX).max(1),
            _ => 1,
        };
        bucket.charge(cost, Instant::now());
        let last = frame.is_err();
        if tx.send(frame).await.is_err() || last {
            return;
        }
    }
}
