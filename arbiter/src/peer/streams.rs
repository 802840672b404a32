//! The long-lived streams: one ordered outgoing stream per peer, and serving what a peer
//! opens on a connection.

use super::{Inbound, PeerEndpoint};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use truce_common::wire::{FrameError, Message, read_frame, write_frame};

impl PeerEndpoint {
    pub(super) async fn serve(self: Arc<Self>, conn: quinn::Connection, from: String, tx: mpsc::Sender<Inbound>, cancel: CancellationToken) {
        let max = self.max_frame;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                uni = conn.accept_uni() => match uni {
                    Ok(mut recv) => {
                        let (tx, from, me) = (tx.clone(), from.clone(), self.clone());
                        tokio::spawn(async move {
                            loop {
                                match read_frame(&mut recv, max).await {
                                    Ok(_) if me.is_cut_off() => continue,
                                    Ok(msg) => if tx.send(Inbound::OneWay { from: from.clone(), msg }).await.is_err() { return },
                                    Err(FrameError::Finished) => return,
                                    Err(e) => return debug!(peer = %from, cause = %e, "peer stream ended"),
                                }
                            }
                        });
                    }
                    Err(_) => return,
                },
                bi = conn.accept_bi() => match bi {
                    Ok((reply, mut recv)) => {
                        let (tx, from, me) = (tx.clone(), from.clone(), self.clone());
                        tokio::spawn(async move {
                            match read_frame(&mut recv, max).await {
                                Ok(_) if me.is_cut_off() => drop(reply),
                                Ok(msg) => { let _ = tx.send(Inbound::Request { from, msg, reply }).await; }
                                Err(e) => debug!(peer = %from, cause = %e, "bad peer request"),
                            }
                        });
                    }
                    Err(_) => return,
                },
            }
        }
    }

}

/// One ordered stream per peer; reconnects (after a pause) when the peer goes away.
pub(super) async fn sender(me: Arc<PeerEndpoint>, peer: String, mut rx: mpsc::Receiver<Message>) {
    // The stream, and the id of the connection it is on.
    let mut stream: Option<(quinn::SendStream, usize)> = None;
    while let Some(msg) = rx.recv().await {
        if me.is_cut_off() {
            continue;
        }
        // An adopted inbound connection replaced the one the stream is on: move to it.
        if let Some((_, on)) = &stream
            && me.live_connection(&peer).is_some_and(|c| c.stable_id() != *on)
        {
            stream = None;
        }
        for attempt in 0..2 {
            if stream.is_none() {
                match me.connection(&peer).await {
                    Ok(conn) => match conn.open_uni().await {
                        Ok(s) => stream = Some((s, conn.stable_id())),
                        Err(e) => {
                            me.forget_connection(&peer, conn.stable_id());
                            debug!(peer, cause = %e, "cannot open a stream to the peer");
                        }
                    },
                    Err(e) => debug!(peer, cause = %e, "peer unreachable"),
                }
            }
            let Some((s, on)) = stream.as_mut() else { break };
            match write_frame(s, &msg, me.max_frame).await {
                Ok(()) => break,
                Err(e) => {
                    debug!(peer, attempt, cause = %e, "write to peer failed; reconnecting");
                    me.forget_connection(&peer, *on);
                    stream = None;
                }
            }
        }
    }
}
