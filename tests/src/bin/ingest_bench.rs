//! The `cargo xtask bench ingest` driver: N simulated agents, each its own QUIC connection
//! with its own certificate, send bids to a real arbiter on loopback; we measure bids/s
//! answered and the time from a bid to the decision that names it. Side by side:
//! - `codec`: encode + decode of a bid and its decision, no network (upper bound);
//! - `echo`: the same QUIC + mTLS + framing path, but a bare server that acks each bid at
//!   once (no sessions, rounds or market);
//! - `arbiter`: the real server with `ProportionalResolver`, one round per host every `round_ms`.
//!
//! Echo and arbiter each run three times: protocol version 1 (one `bid` frame per bid, as
//! agents before version 2 send them), version 2 (each agent's bids of a tick in one `bids`
//! frame) and version 3 (the same, with `bids` and `decisions` packed).
//!
//! Each agent sends every `--tick-ms` (50 by default; a real agent bids once per 1 s period).
//! Agents' ticks are spread evenly over the tick, as independent hosts' clocks are;
//! `--aligned` makes them all tick at once, as this driver did before (bursts of N frames).
//!
//! Usage: ingest_bench [--agents 100,1000,2000] [--total-rate 120000] [--seconds 5] [--round-ms 10]
//!        [--tick-ms 50] [--aligned] [--paths echo-v1,arbiter-v1,echo-v2,arbiter-v2,echo-v3,arbiter-v3]

use anyhow::{Context, Result, bail};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use truce_agent::transport::{ArbiterEndpoint, Dialer, RawSession, quinn};
use truce_arbiter::server::tls::{TlsFiles, server_crypto};
use truce_arbiter::server::{CancellationToken, HostCapacity, ProportionalResolver, Server, ServerConfig, read_frame, write_frame};
use truce_common::model::{Decision, DecisionId, Lease, LeaseId, Lender, Resource, Setting, Timestamp};
use truce_common::wire::{self, Ack, Bids, Decisions, Message, SessionId, Welcome};
use truce_tests::loopback::{Pki, bid};

struct Opts {
    agents: Vec<usize>,
    total_rate: u64,
    seconds: u64,
    round_ms: u64,
    /// How often each agent sends what it owes.
    tick: Duration,
    /// All agents tick at the same instant instead of spread over the tick.
    aligned: bool,
    /// Which of `echo-v1`, `arbiter-v1`, `echo-v2`, `arbiter-v2`, `echo-v3`, `arbiter-v3` to
    /// run (all by default).
    paths: Vec<String>,
}

const PATHS: [&str; 6] = ["echo-v1", "arbiter-v1", "echo-v2", "arbiter-v2", "echo-v3", "arbiter-v3"];

fn parse() -> Result<Opts> {
    let mut o = Opts { agents: vec![100, 1000, 2000], total_rate: 120_000, seconds: 5, round_ms: 10, tick: Duration::from_millis(50), aligned: false, paths: PATHS.iter().map(|p| p.to_string()).collect() };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--aligned" {
            o.aligned = true;
            continue;
        }
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--agents" => o.agents = value.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?,
            "--total-rate" => o.total_rate = value.parse()?,
            "--seconds" => o.seconds = value.parse()?,
            "--round-ms" => o.round_ms = value.parse()?,
            "--tick-ms" => o.tick = Duration::from_millis(value.parse::<u64>()?.max(1)),
            "--paths" => {
                o.paths = value.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = o.paths.iter().find(|p| !PATHS.contains(&p.as_str())) {
                    bail!("unknown path {bad}; known: {}", PATHS.join(", "));
                }
            }
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(o)
}

/// 2,000 connections need more descriptors than some defaults allow.
fn raise_nofile(need: u64) -> Result<()> {
    use nix::sys::resource::{Resource as R, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(R::RLIMIT_NOFILE)?;
    if soft < need {
        setrlimit(R::RLIMIT_NOFILE, need.min(hard), hard).context("raise RLIMIT_NOFILE")?;
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn decision_for(b: &truce_common::model::Bid) -> Decision {
    Decision {
        id: DecisionId(b.id.0),
        round: 1,
        workload: b.workload.clone(),
        lease: Lease { id: LeaseId(b.id.0), holder: b.workload.id, lender: Lender::Pool, resource: Resource::Cpu, amount: 1, price: 0.0, start: Timestamp(1), expiry: Timestamp(2) },
        setting: Setting::CpuMax { millicores: 1, period_us: 100_000 },
        caused_by: vec![b.id],
        reasons: vec![],
    }
}

/// Frame codec alone, one core: encode a bid, decode it, encode its decision, decode that,
/// in the frames of protocol `version` (a `bid` frame in 1, a one-bid `bids` frame in 2 and
/// 3, packed in 3).
fn codec_baseline(seconds: u64, version: u16) -> Result<f64> {
    let b = bid(1, 1, 1);
    let start = Instant::now();
    let mut n = 0u64;
    let max = wire::MAX_FRAME_BYTES;
    let mut f = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..1000 {
            f.clear();
            let msg = if version >= wire::VERSION_BIDS { Message::Bids(Bids { bids: vec![b.clone()] }) } else { Message::Bid(b.clone()) };
            wire::encode_for(version, &msg, &mut f, max)?;
            let back = match wire::decode_frame(&f, max)? {
                Some((Message::Bid(back), _)) => back,
                Some((Message::Bids(Bids { mut bids }), _)) if bids.len() == 1 => bids.remove(0),
                _ => bail!("codec lost the bid"),
            };
            let d = Message::Decisions(Decisions { round: 1, at: Timestamp(1), decisions: vec![decision_for(&back)] });
            f.clear();
            wire::encode_for(version, &d, &mut f, max)?;
            wire::decode_frame(&f, max)?;
            n += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The baseline server: same TLS, QUIC and framing; acks each bid at once.
async fn echo_server(pki: &Pki, cancel: CancellationToken) -> Result<SocketAddr> {
    let crypto = server_crypto(&TlsFiles::in_dir(&pki.dir))?;
    let socket = wire::bind_endpoint_socket("127.0.0.1:0".parse()?, wire::UDP_BUFFER_BYTES)?.socket;
    let endpoint = wire::endpoint_on(socket, Some(quinn::ServerConfig::with_crypto(Arc::new(crypto))))?;
    let addr = endpoint.local_addr()?;
    tokio::spawn(async move {
        loop {
            let incoming = tokio::select! { _ = cancel.cancelled() => break, i = endpoint.accept() => match i { Some(i) => i, None => break } };
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
                let max = wire::MAX_FRAME_BYTES;
                let Ok(Message::Hello(h)) = read_frame(&mut recv, max).await else { return };
                let version = wire::negotiate(h.min, h.max).unwrap_or(wire::VERSION_MIN);
                let welcome = Welcome { version, session: SessionId(0), host: h.host, round_ms: 0 };
                if write_frame(&mut send, &Message::Welcome(welcome), max).await.is_err() {
                    return;
                }
                while let Ok(msg) = read_frame(&mut recv, max).await {
                    let ids: Vec<u64> = match msg {
                        Message::Bid(b) => vec![b.id.0],
                        Message::Bids(b) => b.bids.iter().map(|b| b.id.0).collect(),
                        _ => continue,
                    };
                    // One ack per bid, all of a frame's acks in one write.
                    let mut out = Vec::new();
                    for seq in ids {
                        if wire::encode_into(&Message::Ack(Ack { seq }), &mut out, max).is_err() {
                            return;
                        }
                    }
                    if send.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
        endpoint.close(0u32.into(), b"done");
    });
    Ok(addr)
}

struct Outcome {
    answered: u64,
    window: f64,
    latencies_us: Vec<u32>,
}

/// When each of one agent's bids was written, by its sequence number (bid id = agent index
/// << 32 | seq, seq counting from 1). Answers come back nearly in order, so a queue from
/// the oldest unanswered seq costs a push per bid and a pop per answer: the simulated agents
/// should spend the shared cores on the protocol, not on their own bookkeeping.
#[derive(Default)]
struct SentAt {
    /// Seq of `times[0]`.
    first: u64,
    times: VecDeque<Option<Instant>>,
}

impl SentAt {
    fn push(&mut self, seq: u64, at: Instant) {
        if self.times.is_empty() {
            self.first = seq;
        }
        self.times.push_back(Some(at));
    }

    fn take(&mut self, seq: u64) -> Option<Instant> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        let at = self.times.get_mut(i)?.take();
        while let Some(None) = self.times.front() {
            self.times.pop_front();
            self.first += 1;
        }
        at
    }
}

/// One agent: send `rate` bids/s in 50 ms batches for `warmup + seconds`, and time answers.
/// From version 2 a tick's bids go in one `bids` frame, else one `bid` frame each; frames
/// take the form of the session's `version`.
/// `phase`: when in the tick this agent sends (its clock's offset from the others').
async fn agent(mut raw: RawSession, index: u64, rate: u64, load: &Opts, phase: Duration, version: u16) -> Outcome {
    let (warmup, window, tick_every) = (Duration::from_secs(1), Duration::from_secs(load.seconds), load.tick);
    let batched = version >= wire::VERSION_BIDS;
    let sent: Arc<Mutex<SentAt>> = Arc::default();
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop = measure_from + window;
    let per_tick = rate as f64 * tick_every.as_secs_f64();
    let sent_w = sent.clone();
    let mut send = raw.send;
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval_at((start + phase).into(), tick_every);
        let (mut seq, mut owed) = (0u64, 0.0f64);
        while Instant::now() < stop {
            tick.tick().await;
            owed += per_tick;
            let (mut batch, mut bids) = (Vec::new(), Vec::new());
            while owed >= 1.0 {
                owed -= 1.0;
                seq += 1;
                let id = (index << 32) | seq;
                let workload = index * 4 + seq % 4;
                bids.push(bid(id, workload, 1));
            }
            let ids: Vec<u64> = bids.iter().map(|b| b.id.0).collect();
            let frames = if batched { vec![Message::Bids(Bids { bids })] } else { bids.into_iter().map(Message::Bid).collect() };
            for f in &frames {
                if wire::encode_for(version, f, &mut batch, wire::MAX_FRAME_BYTES).is_err() {
                    return send;
                }
            }
            {
                let at = Instant::now();
                let mut sent = sent_w.lock().unwrap_or_else(|p| p.into_inner());
                for id in ids {
                    sent.push(id & 0xffff_ffff, at);
                }
            }
            if send.write_all(&batch).await.is_err() {
                return send;
            }
        }
        send
    });
    let mut out = Outcome { answered: 0, window: window.as_secs_f64(), latencies_us: Vec::new() };
    let reader = async {
        loop {
            let ids: Vec<u64> = match read_frame_raw(&mut raw.recv).await {
                Some(Message::Decisions(d)) => d.decisions.iter().flat_map(|x| x.caused_by.iter().map(|b| b.0)).collect(),
                Some(Message::Ack(a)) => vec![a.seq],
                Some(_) => continue,
                None => return,
            };
            let now = Instant::now();
            let mut sent = sent.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                if let Some(t) = sent.take(id & 0xffff_ffff)
                    && t >= measure_from
                    && t < stop
                {
                    out.answered += 1;
                    out.latencies_us.push(now.duration_since(t).as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
        }
    };
    // Answers to the last bids may take a round; give them a second past the window.
    let _ = tokio::time::timeout_at((stop + Duration::from_secs(1)).into(), reader).await;
    if let Ok(mut send) = writer.await {
        let _ = send.finish();
    }
    raw.conn.close(0u32.into(), b"bye");
    out
}

async fn read_frame_raw(recv: &mut quinn::RecvStream) -> Option<Message> {
    truce_agent::transport::read_frame(recv, wire::MAX_FRAME_BYTES).await.ok()
}

async fn run(pki: &Pki, addr: SocketAddr, agents: usize, load: &Arc<Opts>, version: u16) -> Result<(f64, f64, f64, f64)> {
    let mut negotiated = Vec::with_capacity(agents);
    let mut sessions = Vec::with_capacity(agents);
    let mut dialers = Vec::with_capacity(agents);
    let ep = ArbiterEndpoint { addr, server_name: "localhost".into() };
    // Every simulated agent has its own connection and certificate; they share one UDP
    // socket (as many hosts behind one NAT would), so the driver measures the arbiter rather
    // than thousands of client endpoints competing for the same two cores.
    // Its buffer is raised like the arbiter's: 1,000 agents' answers arrive in bursts.
    let shared = wire::endpoint_on(wire::bind_endpoint_socket("127.0.0.1:0".parse()?, wire::UDP_BUFFER_BYTES)?.socket, None)?;
    // Connect in waves so 2,000 handshakes do not all time out together.
    for chunk in (0..agents).collect::<Vec<_>>().chunks(100) {
        let mut wave = Vec::new();
        for &i in chunk {
            let mut cfg = pki.client(&format!("bench-{i}"), &[addr]);
            cfg.versions = (wire::VERSION_MIN, version);
            let dialer = Dialer::on_endpoint(&cfg, shared.clone())?;
            let ep = ep.clone();
            wave.push(tokio::spawn(async move {
                let r = dialer.handshake(&ep).await;
                (dialer, r)
            }));
        }
        for w in wave {
            let (dialer, r) = w.await?;
            let (raw, welcome) = r?;
            sessions.push(raw);
            negotiated.push(welcome.version);
            dialers.push(dialer);
        }
    }
    let rate = (load.total_rate / agents as u64).max(1);
    if let Some(v) = negotiated.iter().find(|v| **v != version) {
        bail!("asked for protocol version {version}, the server welcomed {v}");
    }
    let tasks: Vec<_> = sessions.into_iter().enumerate().map(|(i, raw)| {
            let phase = if load.aligned { Duration::ZERO } else { load.tick.mul_f64(i as f64 / agents as f64) };
            let load = load.clone();
            tokio::spawn(async move { agent(raw, i as u64, rate, &load, phase, version).await })
        })
        .collect();
    let (mut answered, mut lat, mut win) = (0u64, Vec::new(), 1.0);
    for t in tasks {
        let o = t.await?;
        answered += o.answered;
        lat.extend(o.latencies_us);
        win = o.window;
    }
    lat.sort_unstable();
    drop(dialers);
    Ok(((rate * agents as u64) as f64, answered as f64 / win, percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let o = Arc::new(parse()?);
    let max_agents = o.agents.iter().copied().max().unwrap_or(0);
    raise_nofile(max_agents as u64 * 2 + 256)?;
    let pki = Pki::new("bench-ingest")?;
    for i in 0..max_agents {
        pki.issue(&format!("bench-{i}"))?;
    }
    for version in [1, wire::VERSION_BIDS, wire::VERSION_PACKED] {
        println!("codec only, v{version} frames (1 core, bid + decision encode/decode): {:.0} bids/s", codec_baseline(2, version)?);
    }
    println!();
    println!("ticks every {} ms, {}", o.tick.as_millis(), if o.aligned { "all agents at once" } else { "agents spread over the tick" });
    println!("| agents | path | offered bids/s | answered bids/s | p50 ms | p99 ms |");
    println!("|---:|---|---:|---:|---:|---:|");
    for &n in &o.agents {
        let versions = [(1u16, "v1: a frame per bid"), (wire::VERSION_BIDS, "v2: a `bids` frame per tick"), (wire::VERSION_PACKED, "v3: packed `bids` per tick, packed `decisions`")];
        for (version, label) in versions {
            if o.paths.contains(&format!("echo-v{version}")) {
                let cancel = CancellationToken::new();
                let addr = echo_server(&pki, cancel.clone()).await?;
                let (offered, got, p50, p99) = run(&pki, addr, n, &o, version).await?;
                println!("| {n} | echo, {label} | {offered:.0} | {got:.0} | {p50:.2} | {p99:.2} |");
                cancel.cancel();
            }
            if !o.paths.contains(&format!("arbiter-v{version}")) {
                continue;
            }

            let mut cfg = ServerConfig::new("127.0.0.1:0".parse()?, TlsFiles::in_dir(&pki.dir));
            cfg.round_period = Duration::from_millis(o.round_ms);
            cfg.max_connections = n + 16;
            let server = Server::bind(cfg, Arc::new(ProportionalResolver::new(HostCapacity { cpu_millicores: u64::MAX / 4, ..Default::default() })))?;
            let addr = server.local_addr();
            let cancel = CancellationToken::new();
            let task = tokio::spawn(server.run(cancel.clone()));
            let (offered, got, p50, p99) = run(&pki, addr, n, &o, version).await?;
            println!("| {n} | arbiter ({} ms rounds), {label} | {offered:.0} | {got:.0} | {p50:.2} | {p99:.2} |", o.round_ms);
            cancel.cancel();
            task.await?;
        }
    }
    Ok(())
}
