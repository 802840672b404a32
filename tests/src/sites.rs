//! Federation sites as real `truce-arbiter serve` processes on loopback, and the hosts that
//! feed them: an agent transport per host (mutual TLS) reporting its workloads' CPU use.

use crate::loopback::{Pki, bid, report, workload};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use truce_agent::transport::{ArbiterClient, CancellationToken, Outbound};
use truce_arbiter::config::FileConfig;
use truce_common::model::Resource;
use truce_common::wire::{Capacity, Inventory, ManagedWorkload};

/// The site child reads its configuration path from here.
pub const SITE_CONFIG_ENV: &str = "TRUCE_SITE_CONFIG";

/// The body of a test binary's `#[ignore]`d site child: run one single-arbiter site until
/// stdin closes or the process is killed.
pub fn site_child_main() {
    let Ok(path) = std::env::var(SITE_CONFIG_ENV) else { panic!("run only as a site child ({SITE_CONFIG_ENV} unset)") };
    let settings = FileConfig::load(Path::new(&path)).and_then(|f| f.validate()).expect("site configuration");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        // stdin closed: the parent is gone or wants us to stop.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            stop.cancel();
        });
        if let Err(e) = truce_arbiter::daemon::serve(settings, cancel).await {
            eprintln!("site failed: {:#}", anyhow::Error::from(e));
            std::process::exit(1);
        }
    });
}

/// A site process, killed on drop.
pub struct SiteProcess {
    child: Child,
}

impl SiteProcess {
    /// Run this test binary's child test `child_test` on the configuration at `config`.
    pub fn spawn(child_test: &str, config: &Path) -> anyhow::Result<SiteProcess> {
        let child = Command::new(std::env::current_exe()?)
            .args(["--exact", child_test, "--ignored", "--nocapture", "--test-threads=1"])
            .env(SITE_CONFIG_ENV, config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(SiteProcess { child })
    }
}

impl Drop for SiteProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a site's `[federation]` section needs from a test.
pub struct SiteSection<'a> {
    pub name: &'a str,
    pub listen: SocketAddr,
    /// The other sites, each with every address it may answer at.
    pub peers: Vec<(&'a str, Vec<SocketAddr>)>,
    /// The command hook appends each order to `<hook_log>`.
    pub hook_log: &'a Path,
    pub period_ms: u64,
    pub vote_timeout_ms: u64,
}

impl SiteSection<'_> {
    /// The `[federation]` tables (a hook that logs `ACTION ROLE {order}` lines).
    pub fn toml(&self) -> String {
        let hook = format!("{{ printf '%s %s ' \"$TRUCE_MIGRATION_ACTION\" \"$TRUCE_MIGRATION_ROLE\"; cat; echo; }} >> {}", self.hook_log.display());
        let mut t = format!(
            "[federation]\nenabled = true\nlisten = \"{}\"\nexecutor = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {hook:?}]\nhost_stale_ms = 3000\n",
            self.listen
        );
        for (peer, addrs) in &self.peers {
            let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
            t.push_str(&format!("\n[[federation.peers]]\nname = \"{peer}\"\naddr = [{}]\n", list.join(", ")));
        }
        t.push_str(&format!(
            "\n[federation.site]\nname = \"{}\"\nperiod_ms = {}\nhistory = 40\nhorizon_steps = 5\nwatch_periods = 4\ncooldown_periods = 1000\nvote_timeout_ms = {}\n",
            self.name, self.period_ms, self.vote_timeout_ms
        ));
        t
    }

    /// A whole single-arbiter site configuration, agents served on `agent_port`.
    pub fn single_arbiter(&self, pki: &Pki, agent_port: u16) -> String {
        format!(
            "listen = \"127.0.0.1:{agent_port}\"\ncerts_dir = \"{}\"\nstate_dir = \"{}\"\nround_period_ms = 200\n\n[metrics]\nenabled = false\n\n{}",
            pki.path().display(),
            pki.path().join(format!("state-{}", self.name)).display(),
            self.toml()
        )
    }
}

/// The sites' common clock: periods of `period` since `started`.
#[derive(Clone, Copy)]
pub struct Pace {
    pub started: Instant,
    pub period: Duration,
}

/// One host reporting three workloads' CPU use (splitting `load(p)` of its 2000 millicores,
/// in period `p` of `pace`) twice a period, and bidding, so its site's market runs rounds.
/// `arbiters` are tried in turn (a replica group's followers redirect to the leader).
pub fn spawn_host(
    pki: &Pki,
    host: &str,
    ids: [u64; 3],
    arbiters: &[SocketAddr],
    pace: Pace,
    load: impl Fn(u64) -> f64 + Send + 'static,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let Pace { started, period } = pace;
    pki.issue(host)?;
    let (client, mut inbound) = ArbiterClient::spawn(pki.client(host, arbiters), cancel.clone())?;
    let host = host.to_string();
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        let mut seq = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = inbound.recv() => continue,
                _ = tick.tick() => {}
            }
            seq += 1;
            let p = (started.elapsed().as_millis() / period.as_millis().max(1)) as u64;
            let used = (load(p).clamp(0.0, 1.0) * 2000.0) as u64;
            let mut r = report(&host, seq, &ids);
            r.inventory = Some(Inventory {
                capacity: vec![Capacity { resource: Resource::Cpu, amount: 2000 }],
                managed: ids
                    .iter()
                    .enumerate()
                    .map(|(k, w)| ManagedWorkload {
                        workload: workload(*w),
                        priority: 10,
                        bounds: vec![],
                        usage: vec![Capacity { resource: Resource::Cpu, amount: used * (k as u64 + 1) / 6 }],
                    })
                    .collect(),
            });
            client.send(Outbound::Report(r));
            client.send(Outbound::Bid(bid(seq, ids[0], 100)));
        }
        client.join().await;
    }))
}
