//! What the arbiter refuses, over real QUIC + mutual TLS on loopback, and that refusing one
//! connection never disturbs the others.

use std::time::Duration;
use truce_agent::transport::{Dialer, RawSession, TransportError};
use truce_common::model::HostId;
use truce_common::wire::{self, ErrorCode, Message};
use truce_tests::loopback::{Arbiter, Pki, bid, count, eventually, report};

const GUARD: Duration = Duration::from_secs(60);

/// A welcomed session; keep the `Dialer` alive as long as the session.
async fn session(pki: &Pki, host: &str, arbiter: &Arbiter) -> anyhow::Result<(RawSession, Dialer)> {
    let cfg = pki.client(host, &[arbiter.addr]);
    let dialer = Dialer::new(&cfg)?;
    let (raw, welcome) = tokio::time::timeout(GUARD, dialer.handshake(&cfg.endpoints[0])).await??;
    anyhow::ensure!(welcome.host == HostId(host.into()), "bound to {} not {host}", welcome.host);
    Ok((raw, dialer))
}

/// Read until a frame matches `want` (decisions for other rounds, acks etc. are skipped).
async fn expect<T>(raw: &mut RawSession, mut want: impl FnMut(&Message) -> Option<T>) -> anyhow::Result<T> {
    tokio::time::timeout(GUARD, async {
        loop {
            let msg = raw.recv().await?;
            if let Some(t) = want(&msg) {
                return anyhow::Ok(t);
            }
        }
    })
    .await?
}

/// A healthy session gets a decision for a bid: proof the server still serves it.
async fn still_served(raw: &mut RawSession, bid_id: u64, workload: u64) -> anyhow::Result<()> {
    raw.send(&Message::Bid(bid(bid_id, workload, 100))).await?;
    expect(raw, |m| match m {
        Message::Decisions(d) if d.decisions.iter().any(|x| x.caused_by.iter().any(|b| b.0 == bid_id)) => Some(()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new("refuse-ca")?;
    pki.issue("node-good")?;
    let rogue = Pki::new("refuse-ca-rogue")?;
    rogue.issue("node-good")?; // same host name, wrong CA
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let mut cfg = pki.client("node-good", &[arbiter.addr]);
    (cfg.cert, cfg.key) = rogue.cert_paths("node-good");
    let dialer = Dialer::new(&cfg)?;
    let refused = tokio::time::timeout(GUARD, dialer.handshake(&cfg.endpoints[0])).await?;
    assert!(matches!(refused, Err(TransportError::Connection { .. } | TransportError::Frame { .. })), "rogue certificate accepted: {:?}", refused.map(|(_, w)| w));
    assert!(eventually(GUARD, || count(&arbiter.stats.handshakes_failed) == 1).await);
    assert_eq!(count(&arbiter.stats.sessions_opened), 0);
    let (mut good, _good_dialer) = session(&pki, "node-good", &arbiter).await?;
    still_served(&mut good, 1, 11).await?;
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_version_gets_unsupported_version() -> anyhow::Result<()> {
    let pki = Pki::new("refuse-version")?;
    pki.issue("node-v")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let mut cfg = pki.client("node-v", &[arbiter.addr]);
    cfg.versions = (wire::VERSION_MAX + 1, wire::VERSION_MAX + 3);
    let dialer = Dialer::new(&cfg)?;
    match tokio::time::timeout(GUARD, dialer.handshake(&cfg.endpoints[0])).await? {
        Err(TransportError::UnsupportedVersion { supported_min, supported_max, .. }) => {
            assert_eq!((supported_min, supported_max), (wire::VERSION_MIN, wire::VERSION_MAX));
        }
        other => panic!("expected UnsupportedVersion, got {:?}", other.map(|(_, w)| w)),
    }
    assert_eq!(count(&arbiter.stats.sessions_opened), 0);
    arbiter.shutdown().await
}

async fn bad_frame_closes_only_that_connection(tag: &str, bytes: Vec<u8>, reason_has: &str) -> anyhow::Result<()> {
    let pki = Pki::new(tag)?;
    pki.issue("node-ok")?;
    pki.issue("node-bad")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let (mut ok, _ok_dialer) = session(&pki, "node-ok", &arbiter).await?;
    let (mut bad, _bad_dialer) = session(&pki, "node-bad", &arbiter).await?;
    bad.send_bytes(&bytes).await?;
    let told = expect(&mut bad, |m| match m {
        Message::Error(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(told.code, ErrorCode::MALFORMED_FRAME);
    assert!(told.message.contains(reason_has), "error message {:?} lacks {reason_has:?}", told.message);
    let closed = tokio::time::timeout(GUARD, bad.closed_by_peer()).await?;
    let (code, reason) = closed.ok_or_else(|| anyhow::anyhow!("connection not closed by the arbiter"))?;
    assert_eq!(code, u64::from(ErrorCode::MALFORMED_FRAME.0));
    assert!(reason.contains(reason_has), "close reason {reason:?} lacks {reason_has:?}");
    assert_eq!(count(&arbiter.stats.frames_rejected), 1);
    still_served(&mut ok, 7, 70).await?;
    // And a new agent is still welcome.
    pki.issue("node-new")?;
    let (mut new, _new_dialer) = session(&pki, "node-new", &arbiter).await?;
    still_served(&mut new, 8, 80).await?;
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_closes_that_connection_and_others_are_served() -> anyhow::Result<()> {
    // Only the header is sent: the arbiter must refuse on the length alone.
    let header = (wire::MAX_FRAME_BYTES + 1).to_be_bytes().to_vec();
    bad_frame_closes_only_that_connection("refuse-oversize", header, "exceeds the maximum").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frame_closes_that_connection_and_others_are_served() -> anyhow::Result<()> {
    // A well-sized frame claiming to be a bid, whose body is not MessagePack for a bid.
    let mut frame = 7u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&Message::BID.to_be_bytes());
    frame.extend_from_slice(&[0xc1, 0xde, 0xad, 0xbe, 0xef]);
    bad_frame_closes_only_that_connection("refuse-garbage", frame, "malformed bid body").await
}

/// The first decision that answers `bid_id`, skipping other frames.
async fn decision_for(raw: &mut RawSession, bid_id: u64) -> anyhow::Result<truce_common::model::Decision> {
    expect(raw, |m| match m {
        Message::Decisions(d) => d.decisions.iter().find(|x| x.caused_by.iter().any(|b| b.0 == bid_id)).cloned(),
        Message::Error(e) => panic!("expected a decision for bid {bid_id}, got {e:?}"),
        _ => None,
    })
    .await
}

/// Regression: ownership was keyed by the cgroup inode alone, so a second host whose cgroup
/// had the same inode number was refused (`foreign_workload`) as if it bid for the first
/// host's workload. Workload ids are per host: both must be served, each for its own cgroup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_whose_cgroups_share_an_inode_are_each_served() -> anyhow::Result<()> {
    let pki = Pki::new("refuse-inode-clash")?;
    pki.issue("node-a")?;
    pki.issue("node-b")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let (mut a, _a_dialer) = session(&pki, "node-a", &arbiter).await?;
    let (mut b, _b_dialer) = session(&pki, "node-b", &arbiter).await?;
    // Both hosts have a cgroup with inode 100 (inodes are only unique per host).
    a.send(&Message::Report(report("node-a", 1, &[100]))).await?;
    expect(&mut a, |m| matches!(m, Message::Ack(x) if x.seq == 1).then_some(())).await?;
    b.send(&Message::Report(report("node-b", 1, &[100]))).await?;
    expect(&mut b, |m| match m {
        Message::Ack(x) if x.seq == 1 => Some(()),
        Message::Error(e) => panic!("node-b's own workload 100 was refused: {e:?}"),
        _ => None,
    })
    .await?;

    // Each bids for its own inode 100 and gets its own decision, on its own session only.
    b.send(&Message::Bid(bid(555, 100, 100))).await?;
    let for_b = decision_for(&mut b, 555).await?;
    a.send(&Message::Bid(bid(557, 100, 100))).await?;
    let for_a = decision_for(&mut a, 557).await?;
    assert_eq!((for_a.workload.id.0, for_b.workload.id.0), (100, 100));
    assert!(for_a.caused_by.iter().all(|x| x.0 != 555), "node-a was sent node-b's decision: {for_a:?}");
    assert!(for_b.caused_by.iter().all(|x| x.0 != 557), "node-b was sent node-a's decision: {for_b:?}");

    // Speaking in another host's name is still refused: the certificate decides the host.
    b.send(&Message::Report(report("node-a", 2, &[200]))).await?;
    let e = expect(&mut b, |m| match m {
        Message::Error(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert_eq!((e.code, e.seq), (ErrorCode::HOST_MISMATCH, Some(2)));
    still_served(&mut b, 556, 100).await?;
    still_served(&mut a, 558, 100).await?;
    assert_eq!(count(&arbiter.stats.refusals), 1);
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_in_another_hosts_name_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new("refuse-hello")?;
    pki.issue("node-a")?;
    pki.issue("node-b")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let mut cfg = pki.client("node-b", &[arbiter.addr]);
    cfg.host = HostId("node-a".into()); // claims node-a, presents node-b's certificate
    let dialer = Dialer::new(&cfg)?;
    match tokio::time::timeout(GUARD, dialer.handshake(&cfg.endpoints[0])).await? {
        Err(TransportError::Refused { code, message, .. }) => {
            assert_eq!(code, ErrorCode::HOST_MISMATCH);
            assert!(message.contains("node-b"), "{message}");
        }
        other => panic!("expected a host_mismatch refusal, got {:?}", other.map(|(_, w)| w)),
    }
    assert_eq!(count(&arbiter.stats.sessions_opened), 0);
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_agent_is_throttled_and_does_not_starve_another() -> anyhow::Result<()> {
    let pki = Pki::new("refuse-flood")?;
    pki.issue("node-flood")?;
    pki.issue("node-calm")?;
    let arbiter = Arbiter::start(&pki, |c| {
        c.agent_rate_per_s = 200;
        c.agent_burst = 20;
    })?;
    let (mut flood, _flood_dialer) = session(&pki, "node-flood", &arbiter).await?;
    let (mut calm, _calm_dialer) = session(&pki, "node-calm", &arbiter).await?;
    // Queue far more than the bucket allows; written without waiting for the arbiter.
    let mut burst = Vec::new();
    for i in 0..2000u64 {
        burst.extend(wire::encode(&Message::Bid(bid(10_000 + i, 900 + i % 4, 1)), wire::MAX_FRAME_BYTES)?);
    }
    let writer = tokio::spawn(async move {
        let r = flood.send_bytes(&burst).await;
        (flood, r)
    });
    assert!(eventually(GUARD, || count(&arbiter.stats.throttled) > 0).await, "the flood was never throttled");
    still_served(&mut calm, 1, 1).await?;
    assert!(count(&arbiter.stats.bids) < 2000, "calm agent was served only after the whole flood");
    writer.abort();
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_naming_more_workloads_than_its_limit_is_refused_and_still_served() -> anyhow::Result<()> {
    let pki = Pki::new("refuse-workloads")?;
    pki.issue("node-many")?;
    let arbiter = Arbiter::start(&pki, |c| c.max_workloads_per_host = 3)?;
    let (mut raw, _dialer) = session(&pki, "node-many", &arbiter).await?;
    // A report naming workloads 1 and 2, then bids for 2 (known) and 3 (the third): all fit.
    raw.send(&Message::Report(report("node-many", 7, &[1, 2]))).await?;
    expect(&mut raw, |m| matches!(m, Message::Ack(a) if a.seq == 7).then_some(())).await?;
    still_served(&mut raw, 1, 2).await?;
    still_served(&mut raw, 2, 3).await?;
    // A fourth distinct workload, by bid and by report, is refused with the reason...
    raw.send(&Message::Bid(bid(3, 4, 100))).await?;
    let refusal = expect(&mut raw, |m| match m {
        Message::Error(e) if e.seq == Some(3) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(refusal.code, ErrorCode::TOO_MANY_WORKLOADS);
    assert!(refusal.message.contains("limit is 3"), "{}", refusal.message);
    raw.send(&Message::Report(report("node-many", 8, &[1, 5]))).await?;
    let refusal = expect(&mut raw, |m| match m {
        Message::Error(e) if e.seq == Some(8) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(refusal.code, ErrorCode::TOO_MANY_WORKLOADS);
    // ...and the session goes on serving the workloads it already named.
    still_served(&mut raw, 4, 1).await?;
    assert_eq!(count(&arbiter.stats.refusals), 2);
    arbiter.shutdown().await
}
