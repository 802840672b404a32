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
        let certs = self.dir.join("certs");
        if !certs.join("ca.pem").exists() {
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
                "host = \"{HOST}\"\nperiod = \"{period}ms\"\npressure_onset = {onset}\nworkloads = \"{w}\"\n\n[arbiter]\nendpoints = [\"127.0.0.1:{port}\"]\nserver_name = \"localhost\"\ncerts_dir = \"{certs}\"\n\n[enforce]\nroots = [\"{ROOT}\"]\njournal = \"{journal}\"\nmemory_margin_bytes = 67108864\ncpu_floor_millicores = 50\n",
                period = self.period_ms,
                onset = self.pressure_onset,
                w = workloads.display(),
                port = self.port,
                certs = certs.display(),
                journal = self.journal().display(),
            ),
        )?;
        std::fs::write(
            self.dir.join("arbiter.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\ncerts_dir = \"{certs}\"\nstate_dir = \"{state}\"\nround_period_ms = {round}\n\n[capacity]\nmin_lease_ms = 1000\nmax_lease_ms = 120000\n\n[market]\nincome_per_second = 10.0\nfloor_fraction = 0.25\ndefault_lease_ms = {lease}\ncpu_cut = \"{cut}\"\n",
                port = self.port,
                certs = certs.display(),
                state = self.dir.join("state").display(),
                round = self.round_ms,
                lease = self.lease_ms,
                cut = self.cpu_cut,
            ),
        )?;
        Ok(())
    }

    /// Start the arbiter (after rewriting its config, so `cpu_cut` may change between runs).
    pub fn start_arbiter(&self) -> Result<Proc> {
        let mut cmd = Command::new(binary("TRUCE_ARBITER_BIN", "truce-arbiter"));
        cmd.args(["serve", "--config"])
            .arg(self.dir.join("arbiter.toml"));
        Proc::spawn("arbiter", cmd, &self.dir.join("arbiter.log"), Some(&self.system_cgroup()))
    }

    pub fn start_agent(&self) -> Result<Proc> {
        let mut cmd = Command::new(binary("TRUCE_AGENT_BIN", "truce-agent"));
        cmd.args(["run", "--config"]).arg(self.agent_config());
        Proc::spawn("agent", cmd, &self.dir.join("agent.log"), Some(&self.system_cgroup()))
    }

    /// Start a `truce-demo-load` mode inside one of the demo's cgroups.
    pub fn start_load(&self, cgroup: &str, args: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new(binary("TRUCE_LOAD_BIN", "truce-demo-load"));
        cmd.args(args);
        let log = self.dir.join(format!("{cgroup}.out"));
        Proc::spawn(cgroup, cmd, &log, Some(&self.cgroup(cgroup)))
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
