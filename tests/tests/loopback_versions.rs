//! Every protocol version this build speaks is served, over real QUIC + mutual TLS on
//! loopback: a version 1 agent (a `bid` frame per bid, named `decisions`), version 2 (`bids`,
//! named `decisions`) and version 3 (packed `bids` and `decisions`) each get their bid
//! decided, in frames of their own version. The frame's type id is read off the stream
//! itself, so a server that sent packed frames to an old agent fails here.

use std::time::Duration;
use truce_agent::transport::{Dialer, RawSession};
use truce_common::model::Decision;
use truce_common::wire::{self, Bids, FRAME_HEADER_LEN, Message};
use truce_tests::loopback::{Arbiter, Pki, bid};

const GUARD: Duration = Duration::from_secs(60);

/// The next frame as its type id and decoded message.
async fn next_frame(raw: &mut RawSession) -> anyhow::Result<(u16, Message)> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    raw.recv.read_exact(&mut header).await?;
    let len = wire::frame_len(header, wire::MAX_FRAME_BYTES)?;
    let mut payload = vec![0u8; len];
    raw.recv.read_exact(&mut payload).await?;
    let type_id = u16::from_be_bytes([payload[0], payload[1]]);
    Ok((type_id, wire::decode_payload(&payload)?))
}

/// The decision for `bid_id` and the type id of the frame that carried it.
async fn decided(raw: &mut RawSession, bid_id: u64) -> anyhow::Result<(u16, Decision)> {
    tokio::time::timeout(GUARD, async {
        loop {
            if let (id, Message::Decisions(d)) = next_frame(raw).await?
                && let Some(x) = d.decisions.into_iter().find(|x| x.caused_by.iter().any(|b| b.0 == bid_id))
            {
                return anyhow::Ok((id, x));
            }
        }
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_every_version_are_served_in_their_own_frames() -> anyhow::Result<()> {
    let pki = Pki::new("versions")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    for version in wire::VERSION_MIN..=wire::VERSION_MAX {
        let host = format!("node-v{version}");
        pki.issue(&host)?;
        let mut cfg = pki.client(&host, &[arbiter.addr]);
        cfg.versions = (wire::VERSION_MIN, version);
        let dialer = Dialer::new(&cfg)?;
        let (mut raw, welcome) = tokio::time::timeout(GUARD, dialer.handshake(&cfg.endpoints[0])).await??;
        assert_eq!(welcome.version, version);
        // What an agent of this version sends: a `bid`, a `bids`, a packed `bids`.
        let bid_id = 100 + u64::from(version);
        let msg = if version >= wire::VERSION_BIDS { Message::Bids(Bids { bids: vec![bid(bid_id, 7, 250)] }) } else { Message::Bid(bid(bid_id, 7, 250)) };
        let mut frame = Vec::new();
        wire::encode_for(version, &msg, &mut frame, wire::MAX_FRAME_BYTES)?;
        raw.send_bytes(&frame).await?;
        let (type_id, decision) = decided(&mut raw, bid_id).await?;
        let want = if version >= wire::VERSION_PACKED { Message::DECISIONS_PACKED } else { Message::DECISIONS };
        assert_eq!(type_id, want, "version {version} got decisions as type {type_id}");
        assert_eq!((decision.lease.amount, decision.workload.id.0), (250, 7), "version {version}");
        raw.conn.close(0u32.into(), b"bye");
    }
    arbiter.shutdown().await
}
