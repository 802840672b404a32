//! The scenario's arbiter when it runs elsewhere: the benchmarks' host side starts and stops
//! it over a control connection (`cargo xtask bench reaction|mitigation --arbiter host`).
use crate::proc::Proc;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::time::Duration;

/// An arbiter another machine runs for this scenario: the benchmarks' host side
/// (`cargo xtask bench reaction|mitigation --arbiter host`) starts and stops it on request
/// over a control connection, each time with a fresh ledger and the config sent along.
#[derive(Clone, Debug)]
pub struct RemoteArbiter {
    /// Where the agent reaches its QUIC endpoint.
    pub endpoint: std::net::SocketAddr,
    /// The control connection: one JSON line per request, one line back (`ok` or an error).
    pub control: std::net::SocketAddr,
    /// The certificates the remote arbiter was given (CA, arbiter, this host's), copied into
    /// the scenario's own certs directory.
    pub certs: PathBuf,
}

impl RemoteArbiter {
    /// From `TRUCE_REMOTE_ARBITER`, `TRUCE_REMOTE_ARBITER_CONTROL` and
    /// `TRUCE_REMOTE_ARBITER_CERTS`, which the benchmarks' host side sets in the guest.
    pub fn from_env() -> Result<RemoteArbiter> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set (the host side of the benchmark sets it)"));
        let addr = |name: &str| -> Result<std::net::SocketAddr> {
            let v = var(name)?;
            v.parse().with_context(|| format!("{name}={v:?} is not an address such as 10.0.2.2:7447"))
        };
        Ok(RemoteArbiter {
            endpoint: addr("TRUCE_REMOTE_ARBITER")?,
            control: addr("TRUCE_REMOTE_ARBITER_CONTROL")?,
            certs: PathBuf::from(var("TRUCE_REMOTE_ARBITER_CERTS")?),
        })
    }
}

/// The scenario's arbiter, wherever it runs.
pub enum Arbiter {
    Local(Proc),
    Remote(RemoteSession),
}

impl Arbiter {
    /// Stop it (SIGTERM here, a `stop` request there); true when it exited cleanly.
    pub fn terminate(self, grace: Duration) -> bool {
        match self {
            Arbiter::Local(p) => p.terminate(grace),
            Arbiter::Remote(r) => r.stop(grace).map_err(|e| eprintln!("stopping the remote arbiter: {e:#}")).is_ok(),
        }
    }
}

/// A remote arbiter that is running; dropping it without `stop` closes the control
/// connection, which stops it too.
pub struct RemoteSession {
    pub(crate) control: std::io::BufReader<std::net::TcpStream>,
}

impl RemoteSession {
    pub(crate) fn request(&mut self, line: &serde_json::Value, grace: Duration) -> Result<()> {
        use std::io::{BufRead, Write};
        let stream = self.control.get_mut();
        stream.set_read_timeout(Some(grace))?;
        writeln!(stream, "{line}")?;
        let mut answer = String::new();
        self.control.read_line(&mut answer).context("reading the remote arbiter's answer")?;
        match answer.trim() {
            "ok" => Ok(()),
            "" => bail!("the control connection closed without an answer"),
            other => bail!("the remote arbiter's host answered: {other}"),
        }
    }

    fn stop(mut self, grace: Duration) -> Result<()> {
        self.request(&serde_json::json!({"stop": true}), grace + Duration::from_secs(5))
    }
}
