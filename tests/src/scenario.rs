//! The demo scenario as parts: a cgroup tree with a latency-sensitive victim and antagonists,
//! and the real `truce-arbiter` and `truce-agent` processes, configured on loopback with
//! freshly minted certificates. The VM tests, `cargo xtask demo` and the reaction and
//! mitigation benchmarks all drive these same parts (inside the VM, or with `--host` on a host
//! whose cgroup v2 can enforce).
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use truce_agent::enforce::{Journal, Status, status_path};

pub use crate::proc::Proc;
pub use crate::remote_arbiter::{Arbiter, RemoteArbiter, RemoteSession};

pub const HOST: &str = "demo-host";
/// The subtree truce may write under, relative to the cgroup2 mount.
pub const ROOT: &str = "/truce-demo";
pub const VICTIM: &str = "victim";
pub const CPU_HOG: &str = "cpu-hog";
pub const IO_HOG: &str = "io-hog";
/// Where the arbiter and the agent run, next to the demo's subtree: their own cgroup, as
/// systemd gives each unit one (system.slice/truce-agent.service). Left in the root cgroup,
/// each of their threads would weigh as much as the whole demo subtree.
pub const SYSTEM: &str = "/truce-system";
/// Where the scenario's agent serves /metrics (written into its config, read by the scenario).
const AGENT_METRICS: &str = "127.0.0.1:9447";

/// Where the binaries are: `TRUCE_AGENT_BIN`, `TRUCE_ARBITER_BIN`, `TRUCE_LOAD_BIN`, else next
/// to this executable, else on PATH.
pub fn binary(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)));
    match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from(name),
    }
}

/// Knobs of one scenario run.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Scratch directory for certificates, configs, logs, the journal and the ledger.
    pub dir: PathBuf,
    /// The cgroup2 mount.
    pub mount: PathBuf,
    pub period_ms: u64,
    pub round_ms: u64,
    pub lease_ms: u64,
    /// The victim's SLO on its own p99 latency, in ms.
    pub victim_slo_ms: f64,
    pub port: u16,
    /// The market's `cpu_cut`: "quota" (cpu.max), "weight" or "yield" (cpu.weight).
    pub cpu_cut: String,
    /// The agent's `pressure_onset`: sample early on a PSI trigger.
    pub pressure_onset: bool,
    /// An arbiter outside this machine (the VM's host), as in production; None runs it here.
    pub remote: Option<RemoteArbiter>,
    /// The agent logs JSON at debug level, for a timeline (`agent_trace`).
    pub trace_agent: bool,
    /// The agent's `forecast.cpu_share` (None: its default; 0 turns forecasting off).
    pub forecast_cpu_share: Option<f64>,
    /// `cpu.weight` of the daemons' cgroup ([`SYSTEM`]), next to the demo subtree's 100 (None:
    /// the kernel's default, 100): how much of a contended CPU the agent is given against the
    /// workloads, which a host sets with the unit's `CPUWeight=`.
    pub system_weight: Option<u32>,
    /// The agent's `cpu_policy` ("batch" or "normal"; None: its default).
    pub agent_cpu_policy: Option<String>,
    /// The agent's probe groups: "sched" turns `probes.block` and `probes.net` off (None or
    /// "all": its default, every group).
    pub agent_probes: Option<String>,
}

impl Setup {
    pub fn new(dir: &Path, mount: &Path) -> Setup {
        Setup {
            dir: dir.to_path_buf(),
            mount: mount.to_path_buf(),
            period_ms: 500,
            round_ms: 200,
            lease_ms: 10_000,
            victim_slo_ms: 5.0,
            port: 7447,
            cpu_cut: "quota".into(),
            pressure_onset: true,
            remote: None,
            trace_agent: false,
            forecast_cpu_share: None,
            system_weight: None,
            agent_cpu_policy: None,
            agent_probes: None,
        }
    }

    pub fn cgroup(&self, name: &str) -> PathBuf {
        self.mount.join(ROOT.trim_start_matches('/')).join(name)
    }

    pub fn system_cgroup(&self) -> PathBuf {
        self.mount.join(SYSTEM.trim_start_matches('/'))
    }

    pub fn latency_file(&self) -> PathBuf {
        self.dir.join("victim.p99")
    }

    /// The victim's requests of the last run, one "arrival_ms latency_us" per line.
    pub fn requests_file(&self) -> PathBuf {
        self.dir.join("victim.requests")
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.join("state/journal.jsonl")
    }

    pub fn agent_config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    /// Cgroups (fresh: whatever an earlier run left is killed and removed), certificates and
    /// configuration files.
    pub fn prepare(&self) -> Result<()> {
        self.remove_cgroups();
        std::fs::create_dir_all(self.dir.join("state"))?;
        enable_controllers(&self.mount, &["cpu", "io", "memory"])?;
        let root = self.mount.join(ROOT.trim_start_matches('/'));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        enable_controllers(&root, &["cpu", "io", "memory"])?;
        for name in [VICTIM, CPU_HOG, IO_HOG] {
            std::fs::create_dir_all(self.cgroup(name))?;
        }
        std::fs::create_dir_all(self.system_cgroup())?;
        if let Some(w) = self.system_weight {
            let file = self.system_cgroup().join("cpu.weight");
            std::fs::write(&file, w.to_string()).with_context(|| format!("writing {w} to {}", file.display()))?;
        }
        let certs = self.dir.join("certs");
        if let Some(remote) = &self.remote {
            // The remote arbiter's CA signed both ends: take its files, not fresh ones.
            copy_dir(&remote.certs, &certs)?;
        } else if !certs.join("ca.pem").exists() {
            let arbiter = binary("TRUCE_ARBITER_BIN", "truce-arbiter");
            run(Command::new(&arbiter)
                .args(["certs", "init", "--dir"])
                .arg(&certs))?;
            run(Command::new(&arbiter)
                .args(["certs", "issue", "--dir"])
                .arg(&certs)
                .args(["--host", HOST]))?;
        }
        let workloads = self.dir.join("workloads.toml");
        std::fs::write(
            &workloads,
            format!(
                "[defaults]\nlease_ms = {lease}\n\n[[workload]]\nmatch = \"{ROOT}/{VICTIM}\"\npriority = 50\nlease_ms = {lease}\n[workload.slo]\nlatency_file = \"{lat}\"\nlatency_ceiling_ms = {slo}\n",
                lease = self.lease_ms,
                lat = self.latency_file().display(),
                slo = self.victim_slo_ms,
            ),
        )?;
        std::fs::write(
            self.agent_config(),
            format!(
                "host = \"{HOST}\"\nperiod = \"{period}ms\"\npressure_onset = {onset}\n{policy}workloads = \"{w}\"\n\n[arbiter]\nendpoints = [\"{endpoint}\"]\nserver_name = \"localhost\"\ncerts_dir = \"{certs}\"\n\n[enforce]\nroots = [\"{ROOT}\"]\njournal = \"{journal}\"\nmemory_margin_bytes = 67108864\ncpu_floor_millicores = 50\n\n[metrics]\nenabled = true\nlisten = \"{AGENT_METRICS}\"\n",
                period = self.period_ms,
                onset = self.pressure_onset,
                policy = self.agent_cpu_policy.as_ref().map_or_else(String::new, |p| format!("cpu_policy = \"{p}\"\n")),
                w = workloads.display(),
                endpoint = self.remote.as_ref().map_or_else(|| format!("127.0.0.1:{}", self.port), |r| r.endpoint.to_string()),
                certs = certs.display(),
                journal = self.journal().display(),
            ) + &self.forecast_cpu_share.map_or_else(String::new, |share| format!("\n[forecast]\ncpu_share = {share:?}\n"))
                + if self.agent_probes.as_deref() == Some("sched") { "\n[probes]\nblock = false\nnet = false\n" } else { "" },
        )?;
        std::fs::write(self.dir.join("arbiter.toml"), self.arbiter_toml(&certs))?;
        Ok(())
    }

    /// The arbiter's configuration. A remote arbiter's host replaces `listen`, `certs_dir` and
    /// `state_dir` with its own.
    fn arbiter_toml(&self, certs: &Path) -> String {
        format!(
            "listen = \"127.0.0.1:{port}\"\ncerts_dir = \"{certs}\"\nstate_dir = \"{state}\"\nround_period_ms = {round}\n\n[capacity]\nmin_lease_ms = 1000\nmax_lease_ms = 120000\n\n[market]\nincome_per_second = 10.0\nfloor_fraction = 0.25\ndefault_lease_ms = {lease}\ncpu_cut = \"{cut}\"\n",
            port = self.port,
            certs = certs.display(),
            state = self.dir.join("state").display(),
            round = self.round_ms,
            lease = self.lease_ms,
            cut = self.cpu_cut,
        )
    }

    /// Start the arbiter (after rewriting its config, so `cpu_cut` may change between runs).
    pub fn start_arbiter(&self) -> Result<Proc> {
        let mut cmd = Command::new(binary("TRUCE_ARBITER_BIN", "truce-arbiter"));
        cmd.args(["serve", "--config"])
            .arg(self.dir.join("arbiter.toml"));
        Proc::spawn("arbiter", cmd, &self.dir.join("arbiter.log"), Some(&self.system_cgroup()))
    }

    /// Start the arbiter here, or ask the remote one's host to start it (fresh ledger, this
    /// run's config) when [`Setup::remote`] is set.
    pub fn start_arbiter_anywhere(&self) -> Result<Arbiter> {
        let Some(remote) = &self.remote else { return self.start_arbiter().map(Arbiter::Local) };
        let stream = std::net::TcpStream::connect_timeout(&remote.control, Duration::from_secs(10))
            .with_context(|| format!("connecting to the remote arbiter's control at {}", remote.control))?;
        let mut session = RemoteSession { control: std::io::BufReader::new(stream) };
        let config = self.arbiter_toml(&self.dir.join("certs"));
        session.request(&serde_json::json!({"start": config}), Duration::from_secs(60))?;
        Ok(Arbiter::Remote(session))
    }

    pub fn start_agent(&self) -> Result<Proc> {
        let mut cmd = Command::new(binary("TRUCE_AGENT_BIN", "truce-agent"));
        cmd.args(["run", "--config"]).arg(self.agent_config());
        if self.trace_agent {
            // The kernel's BPF run-time stats too: what the probes cost the workloads they run on.
            cmd.arg("--probe-run-time");
            cmd.env("TRUCE_LOG", "info,truce_agent=debug").env("TRUCE_LOG_FORMAT", "json");
        }
        Proc::spawn("agent", cmd, &self.dir.join("agent.log"), Some(&self.system_cgroup()))
    }

    /// Start a `truce-demo-load` mode in the daemons' cgroup, where the agent would run.
    pub fn start_daemon_load(&self, args: &[&str]) -> Result<Proc> {
        self.spawn_load("daemon-load", &self.system_cgroup(), args)
    }

    /// Start a `truce-demo-load` mode inside one of the demo's cgroups.
    pub fn start_load(&self, cgroup: &str, args: &[&str]) -> Result<Proc> {
        self.spawn_load(cgroup, &self.cgroup(cgroup), args)
    }

    /// `truce-demo-load ARGS` in `cgroup`, its output in `<name>.out`.
    fn spawn_load(&self, name: &str, cgroup: &Path, args: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new(binary("TRUCE_LOAD_BIN", "truce-demo-load"));
        cmd.args(args);
        Proc::spawn(name, cmd, &self.dir.join(format!("{name}.out")), Some(cgroup))
    }

    pub fn status(&self) -> Option<Status> {
        Status::read(&status_path(&self.journal())).ok()
    }

    /// What the journal says truce changed and has not restored: (cgroup, file, original).
    pub fn journal_pending(&self) -> Result<Vec<(String, String, String)>> {
        Ok(Journal::read_pending(&self.journal())?
            .into_iter()
            .map(|(c, s, v)| (c, s.to_string(), v))
            .collect())
    }

    pub fn read(&self, cgroup: &str, file: &str) -> Result<String> {
        let path = self.cgroup(cgroup).join(file);
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string())
    }

    /// One unlabelled sample of the agent's Prometheus endpoint (`AGENT_METRICS`),
    /// None when it cannot be read. Parsed by the same strict parser the loopback scrapes use.
    pub fn agent_counter(&self, name: &str) -> Option<f64> {
        crate::loopback::metric(&self.agent_metrics()?, name, &[])
    }

    /// Every sample of `name` on the agent's endpoint, by the value of its label `label`.
    pub fn agent_counters_by(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let samples = self.agent_metrics().unwrap_or_default();
        samples.into_iter().filter(|s| s.name == name).filter_map(|s| Some((s.labels.get(label)?.clone(), s.value))).collect()
    }

    fn agent_metrics(&self) -> Option<Vec<truce_common::metrics::Sample>> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect_timeout(&AGENT_METRICS.parse().ok()?, Duration::from_secs(2)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply).ok()?;
        truce_common::metrics::parse_exposition(reply.split_once("\r\n\r\n")?.1).ok()
    }

    /// The knobs truce may set, for every demo cgroup: (cgroup, file, value).
    pub fn knobs(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for cg in [VICTIM, CPU_HOG, IO_HOG] {
            for file in [
                "cpu.max",
                "cpu.weight",
                "memory.high",
                "io.max",
                "io.weight",
            ] {
                if let Ok(v) = self.read(cg, file) {
                    out.push((cg.to_string(), file.to_string(), v));
                }
            }
        }
        out
    }

    /// Kill what still runs in the demo's cgroups and remove them.
    pub fn remove_cgroups(&self) {
        for name in [VICTIM, CPU_HOG, IO_HOG] {
            let dir = self.cgroup(name);
            if !dir.exists() {
                continue;
            }
            // cgroup.kill (5.14+) SIGKILLs every process in the cgroup; rmdir needs it empty.
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            let _ = wait_for(Duration::from_secs(5), || std::fs::remove_dir(&dir).ok());
        }
        let _ = std::fs::remove_dir(self.mount.join(ROOT.trim_start_matches('/')));
        // Never killed: a daemon still in it gets to restore what it changed. Removed once empty.
        let _ = std::fs::remove_dir(self.system_cgroup());
    }
}

fn enable_controllers(cgroup: &Path, wanted: &[&str]) -> Result<()> {
    let available = std::fs::read_to_string(cgroup.join("cgroup.controllers")).unwrap_or_default();
    for c in wanted {
        if available.split_whitespace().any(|a| a == *c) {
            let file = cgroup.join("cgroup.subtree_control");
            std::fs::write(&file, format!("+{c}"))
                .with_context(|| format!("enabling {c} in {}", file.display()))?;
        }
    }
    Ok(())
}

/// Copy the files of `from` (and its subdirectories) into `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).with_context(|| format!("copying {} to {}", entry.path().display(), dest.display()))?;
        }
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}


/// The last JSON line a `truce-demo-load` run printed.
pub fn summary(output: &str) -> Result<serde_json::Value> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no summary line in: {output}"))?;
    Ok(serde_json::from_str(line)?)
}

/// Poll until `f` returns Some, or the limit passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
