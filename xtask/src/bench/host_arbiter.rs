//! The arbiter outside the VM, as in production (a separate service on another machine): the
//! reaction and mitigation benchmarks with `--arbiter host` run it on this host, next to qemu,
//! and the guest's agent reaches it over qemu's user-mode network (the guest dials 10.0.2.2,
//! which slirp maps to this host's loopback; QUIC is plain UDP to slirp).
//!
//! The scenario in the guest starts a fresh arbiter for every phase or trial. It asks for one
//! over a control connection (TCP, also through 10.0.2.2): one JSON line per request,
//! `{"start": "<arbiter.toml>"}` or `{"stop": true}`, answered by one line, `ok` or the
//! reason it failed. The config comes from the guest (truce_tests::scenario writes it for both
//! arrangements); only `listen`, `certs_dir` and `state_dir` are replaced by this host's, and
//! /metrics is turned off (other arbiters on this machine may hold its port). A closed control
//! connection stops the arbiter too, so a guest that dies leaves nothing running.
use crate::util::{output, workspace_root};
use crate::vm::GuestFile;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The host name the scenario's agent uses (truce_tests::scenario::HOST): its client
/// certificate is issued for it.
const AGENT_HOST: &str = "demo-host";
/// Where the guest finds this host (qemu user networking's gateway).
const HOST_FROM_GUEST: &str = "10.0.2.2";
/// Where the certificates go in the guest.
const GUEST_CERTS: &str = "/payload/arbiter-certs";

pub struct HostArbiter {
    /// The certificates, for the guest.
    pub files: Vec<GuestFile>,
    /// `export ...` of the variables the scenario reads (`RemoteArbiter::from_env`).
    pub env: String,
    pub dir: PathBuf,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
}

/// Remove the directories earlier runs kept (their logs are for looking at soon after a run)
/// once they are as old as vm-setup's cache prune allows and their xtask is gone.
fn prune_old_runs(ours: &Path) {
    let Some(parent) = ours.parent() else { return };
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("host-arbiter-") else { continue };
        let alive = std::path::Path::new("/proc").join(pid).exists();
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > crate::vm::PRUNE_AFTER);
        if !alive && old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl HostArbiter {
    /// Mint certificates, pick the ports and serve the control connection in a thread.
    pub fn start(arbiter: &Path) -> Result<HostArbiter> {
        let dir = workspace_root().join("target/vm").join(format!("host-arbiter-{}", std::process::id()));
        prune_old_runs(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let certs = dir.join("certs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        output("host arbiter: certs init", Command::new(arbiter).args(["certs", "init", "--dir"]).arg(&certs))?;
        output("host arbiter: certs issue", Command::new(arbiter).args(["certs", "issue", "--dir"]).arg(&certs).args(["--host", AGENT_HOST]))?;
        let mut files = Vec::new();
        guest_files(&certs, &certs, &mut files)?;
        // A port free now; the arbiter binds it at each start (nothing else on loopback is
        // likely to take it in between, and a start that cannot bind says so).
        let quic_port = UdpSocket::bind("127.0.0.1:0").context("finding a free UDP port")?.local_addr()?.port();
        let control = TcpListener::bind("127.0.0.1:0").context("binding the control port")?;
        let control_port = control.local_addr()?.port();
        control.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (stop, arbiter, dir) = (Arc::clone(&stop), arbiter.to_path_buf(), dir.clone());
            std::thread::spawn(move || serve(&control, &stop, Launcher { arbiter, dir, certs, quic_port, started: 0 }))
        };
        let env = format!(
            "export TRUCE_REMOTE_ARBITER={HOST_FROM_GUEST}:{quic_port} TRUCE_REMOTE_ARBITER_CONTROL={HOST_FROM_GUEST}:{control_port} TRUCE_REMOTE_ARBITER_CERTS={GUEST_CERTS}"
        );
        eprintln!("xtask: host arbiter: QUIC on 127.0.0.1:{quic_port} (guest: {HOST_FROM_GUEST}), control on {control_port}, logs in {}", dir.display());
        Ok(HostArbiter { files, env, dir, stop, server: Some(server) })
    }
}

impl Drop for HostArbiter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
    }
}

fn guest_files(root: &Path, dir: &Path, out: &mut Vec<GuestFile>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            guest_files(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
            out.push(GuestFile { guest: format!("{GUEST_CERTS}/{rel}"), host: path, env: None });
        }
    }
    Ok(())
}

struct Launcher {
    arbiter: PathBuf,
    dir: PathBuf,
    certs: PathBuf,
    quic_port: u16,
    started: u32,
}

/// Accept control connections one at a time until told to stop.
fn serve(listener: &TcpListener, stop: &AtomicBool, mut launcher: Launcher) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = session(stream, stop, &mut launcher) {
                    eprintln!("xtask: host arbiter: control connection: {e:#}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                eprintln!("xtask: host arbiter: accept: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

impl Launcher {
    /// A fresh state directory and this host's settings in the guest's config; returns the
    /// running arbiter once its UDP port is bound.
    fn launch(&mut self, guest_config: &str) -> Result<Child> {
        self.started += 1;
        let n = self.started;
        let state = self.dir.join(format!("state-{n}"));
        std::fs::create_dir_all(&state)?;
        let config = host_config(guest_config, &format!("127.0.0.1:{}", self.quic_port), &self.certs, &state);
        let path = self.dir.join(format!("arbiter-{n}.toml"));
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(self.dir.join(format!("arbiter-{n}.log")))?;
        let mut child = Command::new(&self.arbiter)
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", std::env::var("TRUCE_HOST_ARBITER_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.arbiter.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !udp_bound(self.quic_port) {
            if let Some(status) = child.try_wait()? {
                bail!("the arbiter exited at start ({status}); see {}", self.dir.join(format!("arbiter-{n}.log")).display());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the arbiter did not bind UDP port {} within 20 s", self.quic_port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }
}

/// One guest's control connection: start and stop requests until it closes.
fn session(stream: TcpStream, stop: &AtomicBool, launcher: &mut Launcher) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut running: Option<Child> = None;
    let mut line = String::new();
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match reader.read_line(&mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => break Err(e.into()),
        }
        let request: serde_json::Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(e) => {
                writeln!(writer, "error: not a JSON request: {e}")?;
                line.clear();
                continue;
            }
        };
        line.clear();
        let answer = if let Some(config) = request.get("start").and_then(serde_json::Value::as_str) {
            if let Some(old) = running.take() {
                terminate(old);
            }
            match launcher.launch(config) {
                Ok(child) => {
                    running = Some(child);
                    "ok".to_string()
                }
                Err(e) => format!("error: {e:#}"),
            }
        } else if request.get("stop").is_some() {
            match running.take().map(terminate) {
                Some(true) | None => "ok".to_string(),
                Some(false) => "error: the arbiter did not exit cleanly on SIGTERM".to_string(),
            }
        } else {
            format!("error: unknown request {request}")
        };
        writeln!(writer, "{answer}")?;
    };
    if let Some(child) = running.take() {
        terminate(child);
    }
    result
}

/// SIGTERM, then SIGKILL after 10 s; true when it exited with success.
fn terminate(mut child: Child) -> bool {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Whether something on this host has bound UDP 127.0.0.1:`port` (/proc/net/udp).
fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| t.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some(want.as_str())))
}

/// The guest's config with this host's top-level `listen`, `certs_dir` and `state_dir`, and
/// /metrics off.
fn host_config(guest: &str, listen: &str, certs: &Path, state: &Path) -> String {
    let mut out = String::new();
    let mut top_level = true;
    for line in guest.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        top_level &= !line.trim_start().starts_with('[');
        let replaced = match key {
            "listen" if top_level => format!("listen = \"{listen}\""),
            "certs_dir" if top_level => format!("certs_dir = \"{}\"", certs.display()),
            "state_dir" if top_level => format!("state_dir = \"{}\"", state.display()),
            _ => line.to_string(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    if !guest.lines().any(|l| l.trim() == "[metrics]") {
        out.push_str("\n[metrics]\nenabled = false\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_config_replaces_only_the_top_level_addresses_and_paths() {
        let guest = "listen = \"127.0.0.1:7447\"\ncerts_dir = \"/tmp/d/certs\"\nstate_dir = \"/tmp/d/state\"\nround_period_ms = 100\n\n[market]\ncpu_cut = \"quota\"\nlisten = \"kept\"\n";
        let host = host_config(guest, "127.0.0.1:40000", Path::new("/h/certs"), Path::new("/h/state-1"));
        assert_eq!(
            host,
            "listen = \"127.0.0.1:40000\"\ncerts_dir = \"/h/certs\"\nstate_dir = \"/h/state-1\"\nround_period_ms = 100\n\n[market]\ncpu_cut = \"quota\"\nlisten = \"kept\"\n\n[metrics]\nenabled = false\n"
        );
    }

    #[test]
    fn a_guest_metrics_section_is_left_as_it_is() {
        let host = host_config("[metrics]\nenabled = true\n", "a", Path::new("c"), Path::new("s"));
        assert_eq!(host, "[metrics]\nenabled = true\n");
    }
}
