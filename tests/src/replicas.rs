//! A group of real arbiter replica processes on loopback. Each is this test binary executed
//! again as a child (`child_main`), running `truce_arbiter::daemon::serve_with` on a
//! configuration file with a `[cluster]` section: the code path of `truce-arbiter serve`.
//! The parent kills (SIGKILL), stops (SIGTERM) and restarts them, asks them for their raft
//! status over the raft endpoint (as `truce-arbiter cluster status` does), and can cut one
//! off from its peers (its raft traffic is dropped inside its transport: a partition).

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use truce_arbiter::config::FileConfig;
use truce_arbiter::peer::{PeerEndpoint, PeerTls};
use truce_arbiter::server::{CancellationToken, certs};
use truce_common::wire::{ClusterOp, ClusterRequest, ClusterStatus, Message, RAFT_ALPN};

/// The child reads its configuration path from here.
pub const CHILD_ENV: &str = "TRUCE_REPLICA_CONFIG";

/// The body of the `#[ignore]`d child test of a test binary: run one replica until stdin
/// closes or the process is killed. stdin lines: `cut` (drop all raft traffic), `heal`.
pub fn child_main() {
    let Ok(path) = std::env::var(CHILD_ENV) else { panic!("run only as a replica child ({CHILD_ENV} unset)") };
    // TRUCE_REPLICA_LOG=<filter> (e.g. `openraft=info,truce_arbiter=info`): the replicas' logs on stderr.
    if let Ok(filter) = std::env::var("TRUCE_REPLICA_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).with_ansi(false).try_init();
    }
    let settings = FileConfig::load(Path::new(&path)).and_then(|f| f.validate()).expect("replica configuration");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let serve = truce_arbiter::daemon::serve_with(settings, cancel, move |replica| {
            let endpoint = replica.endpoint.clone();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    match line.trim() {
                        "cut" => endpoint.cut_off(true),
                        "heal" => endpoint.cut_off(false),
                        _ => {}
                    }
                    println!("done {line}");
                }
                // stdin closed: the parent is gone or wants us to stop.
                stop.cancel();
            });
        });
        if let Err(e) = serve.await {
            eprintln!("replica failed: {:#}", anyhow::Error::from(e));
            std::process::exit(1);
        }
    });
}

/// The `truce-arbiter` binary for tests that run the command line itself: `TRUCE_ARBITER_BIN`
/// (`cargo xtask test` builds it and sets this), else `target/<profile>/truce-arbiter` beside
/// this test's `deps` directory. Never one from PATH: that may be another build.
pub fn arbiter_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TRUCE_ARBITER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(Path::parent).context("test executable without a target directory")?;
    let bin = profile_dir.join("truce-arbiter");
    if !bin.is_file() {
        bail!("{} is missing: run `cargo build -p truce-arbiter` first or set TRUCE_ARBITER_BIN", bin.display());
    }
    Ok(bin)
}

/// `n` UDP ports free on loopback a moment ago.
pub fn free_udp_ports(n: usize) -> Result<Vec<u16>> {
    let socks: Vec<std::net::UdpSocket> = (0..n).map(|_| std::net::UdpSocket::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    socks.iter().map(|s| Ok(s.local_addr()?.port())).collect()
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

pub struct ReplicaGroup {
    dir: PathBuf,
    child_test: String,
    agent_ports: Vec<u16>,
    raft_ports: Vec<u16>,
    procs: BTreeMap<u64, Proc>,
}

impl ReplicaGroup {
    /// Mint peer certificates in `pki_dir`, write one configuration per replica (`extra` is
    /// TOML added at the top level, e.g. `round_period_ms`), start them all (replica 1
    /// bootstraps the group). `child_test` is the name of the binary's child test.
    pub fn start(pki_dir: &Path, n: u64, child_test: &str, extra: &str) -> Result<ReplicaGroup> {
        ReplicaGroup::start_with_spares(pki_dir, n, 0, child_test, extra)
    }

    /// As [`ReplicaGroup::start`], and prepare `spares` more replicas (ids `n+1..`) that are
    /// not started and not members: certificates, ports and configurations without
    /// `bootstrap`, for `truce-arbiter cluster add`. Start one with [`ReplicaGroup::spawn`].
    pub fn start_with_spares(pki_dir: &Path, n: u64, spares: u64, child_test: &str, extra: &str) -> Result<ReplicaGroup> {
        ReplicaGroup::start_configured(pki_dir, n, spares, child_test, &|_| extra.to_string())
    }

    /// As [`ReplicaGroup::start`], with `extra(id)` added to replica `id`'s configuration
    /// (e.g. a `[federation]` section with its own `listen`).
    pub fn start_each(pki_dir: &Path, n: u64, child_test: &str, extra: &dyn Fn(u64) -> String) -> Result<ReplicaGroup> {
        ReplicaGroup::start_configured(pki_dir, n, 0, child_test, extra)
    }

    fn start_configured(pki_dir: &Path, n: u64, spares: u64, child_test: &str, extra: &dyn Fn(u64) -> String) -> Result<ReplicaGroup> {
        let all = n + spares;
        let ports = free_udp_ports(2 * all as usize)?;
        let (agent_ports, raft_ports) = ports.split_at(all as usize);
        let mut g = ReplicaGroup { dir: pki_dir.to_path_buf(), child_test: child_test.into(), agent_ports: agent_ports.to_vec(), raft_ports: raft_ports.to_vec(), procs: BTreeMap::new() };
        for id in 1..=all {
            certs::peer(pki_dir, &g.name(id)).context("peer certificate")?;
            // A spare knows the group and itself; the group learns of it from `cluster add`.
            let members: Vec<u64> = if id <= n { (1..=n).collect() } else { (1..=n).chain([id]).collect() };
            std::fs::write(g.config_path(id), g.config(id, &members, &extra(id))).context("replica configuration")?;
        }
        for id in 1..=n {
            g.spawn(id)?;
        }
        Ok(g)
    }

    pub fn name(&self, id: u64) -> String {
        format!("arbiter-{id}")
    }

    pub fn agent_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.agent_ports[id as usize - 1]))
    }

    pub fn agent_addrs(&self) -> Vec<SocketAddr> {
        (1..=self.agent_ports.len() as u64).map(|id| self.agent_addr(id)).collect()
    }

    pub fn raft_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.raft_ports[id as usize - 1]))
    }

    fn config_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("replica-{id}.toml"))
    }

    /// The replica's raft store (read it with `cluster::store::read_committed` once stopped).
    pub fn db(&self, id: u64) -> PathBuf {
        self.dir.join(format!("state-{id}")).join("raft.redb")
    }

    fn config(&self, id: u64, members: &[u64], extra: &str) -> String {
        let mut t = format!(
            "listen = \"{}\"\ncerts_dir = \"{}\"\nstate_dir = \"{}\"\n{extra}\n[metrics]\nenabled = false\n\n[cluster]\nenabled = true\nid = {id}\nname = \"{}\"\nraft_listen = \"{}\"\nbootstrap = {}\n",
            self.agent_addr(id),
            self.dir.display(),
            self.dir.join(format!("state-{id}")).display(),
            self.name(id),
            self.raft_addr(id),
            id == 1,
        );
        for &m in members {
            t.push_str(&format!(
                "\n[[cluster.members]]\nid = {m}\nname = \"{}\"\nraft_addr = \"{}\"\nagent_addr = \"{}\"\n",
                self.name(m),
                self.raft_addr(m),
                self.agent_addr(m)
            ));
        }
        t
    }

    /// Start (or restart, on its own store) replica `id`.
    pub fn spawn(&mut self, id: u64) -> Result<()> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["--exact", &self.child_test, "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, self.config_path(id))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn replica")?;
        let stdin = child.stdin.take();
        self.procs.insert(id, Proc { child, stdin });
        Ok(())
    }

    pub fn alive(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut p) = self.procs.remove(&id) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Close its stdin (it cancels and stops cleanly), wait up to `grace`, then SIGKILL.
    pub fn stop(&mut self, id: u64, grace: Duration) -> bool {
        let Some(mut p) = self.procs.remove(&id) else { return false };
        drop(p.stdin.take());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = p.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
        false
    }

    /// Send a control line (`cut`, `heal`).
    pub fn control(&mut self, id: u64, line: &str) -> Result<()> {
        let p = self.procs.get_mut(&id).context("no such replica")?;
        let stdin = p.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// `cluster status` from replica `id`, presenting `as_id`'s peer certificate.
    pub async fn status(&self, id: u64, as_id: u64, timeout: Duration) -> Result<ClusterStatus> {
        let tls = PeerTls::in_dir(&self.dir, &self.name(as_id));
        let peers = BTreeMap::from([(self.name(id), self.raft_addr(id))]);
        let endpoint = PeerEndpoint::bind("127.0.0.1:0".parse()?, &tls, RAFT_ALPN, peers)?;
        let answer = endpoint.request(&self.name(id), &Message::ClusterRequest(ClusterRequest { seq: 1, op: ClusterOp::Status }), timeout).await;
        endpoint.close();
        match answer? {
            Message::ClusterStatus(s) => Ok(s),
            other => bail!("replica {id} answered {}", other.name()),
        }
    }

    /// The leader a majority of the live replicas in `among` name, waiting up to `limit`.
    pub async fn leader(&self, among: &[u64], limit: Duration) -> Option<u64> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
            for &id in among {
                let as_id = *among.iter().find(|&&a| a != id).unwrap_or(&id);
                if let Ok(s) = self.status(id, as_id, Duration::from_millis(500)).await
                    && let Some(l) = s.leader
                {
                    *votes.entry(l).or_default() += 1;
                }
            }
            if let Some((l, _)) = votes.into_iter().find(|(l, n)| *n * 2 > among.len() && among.contains(l)) {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

impl Drop for ReplicaGroup {
    fn drop(&mut self) {
        for (_, mut p) in std::mem::take(&mut self.procs) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}
