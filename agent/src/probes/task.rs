//! The one task that owns `aya::Ebpf` (lockc's EbpfCommand pattern). It runs on its own
//! thread because every map access is a blocking bpf() syscall; tokio code talks to it
//! over a bounded channel and awaits the replies.
use std::thread;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{Capabilities, ProbeConfig, ProbeError, ProbeSnapshot, Probes, ProgramRunStats, load::error_chain};

/// Commands in flight at most; senders wait when the owner is busy.
const COMMAND_QUEUE: usize = 16;

#[derive(Debug)]
enum ProbeCommand {
    Snapshot { reply: oneshot::Sender<Result<ProbeSnapshot, ProbeError>> },
    Forget { cgroups: Vec<u64>, reply: oneshot::Sender<Result<usize, ProbeError>> },
    RunStats { reply: oneshot::Sender<Vec<ProgramRunStats>> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// A cheap handle to the probe owner. Dropping every handle also detaches the probes.
#[derive(Clone, Debug)]
pub struct ProbeHandle {
    commands: mpsc::Sender<ProbeCommand>,
    capabilities: Capabilities,
}

/// Load and attach the probes on a dedicated owner thread. Blocks until they are attached
/// (or failed), so call it before the runtime's hot loop or from `spawn_blocking`.
pub fn spawn(config: ProbeConfig) -> Result<ProbeHandle, ProbeError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let (commands, mut inbox) = mpsc::channel::<ProbeCommand>(COMMAND_QUEUE);
    thread::Builder::new()
        .name("truce-probes".into())
        .spawn(move || {
            let mut probes = match Probes::load(&config) {
                Ok(p) => p,
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            if ready_tx.send(Ok(probes.capabilities().clone())).is_err() {
                return;
            }
            while let Some(command) = inbox.blocking_recv() {
                match command {
                    ProbeCommand::Snapshot { reply } => {
                        let _ = reply.send(probes.snapshot());
                    }
                    ProbeCommand::Forget { cgroups, reply } => {
                        let result = probes.forget(&cgroups);
                        if let Err(err) = &result {
                            warn!(cause = %error_chain(err), "forgetting vanished cgroups failed");
                        }
                        let _ = reply.send(result);
                    }
                    ProbeCommand::RunStats { reply } => {
                        let _ = reply.send(probes.run_stats());
                    }
                    ProbeCommand::Shutdown { reply } => {
                        drop(probes);
                        debug!("probes detached");
                        let _ = reply.send(());
                        return;
                    }
                }
            }
            // Every handle dropped: `probes` drops here and detaches everything.
        })
        .map_err(|source| ProbeError::Spawn { source })?;
    let capabilities = ready_rx.recv().map_err(|_| ProbeError::TaskGone)??;
    Ok(ProbeHandle { commands, capabilities })
}

impl ProbeHandle {
    /// Which probe groups are attached and whether perf counters are available.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Cumulative counters since load.
    pub async fn snapshot(&self) -> Result<ProbeSnapshot, ProbeError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(ProbeCommand::Snapshot { reply }).await.map_err(|_| ProbeError::TaskGone)?;
        rx.await.map_err(|_| ProbeError::TaskGone)?
    }

    /// Delete the map entries of cgroups that no longer exist. Returns entries removed.
    pub async fn forget(&self, cgroups: Vec<u64>) -> Result<usize, ProbeError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(ProbeCommand::Forget { cgroups, reply }).await.map_err(|_| ProbeError::TaskGone)?;
        rx.await.map_err(|_| ProbeError::TaskGone)?
    }

    /// The kernel's run time and count per loaded program (see [`Probes::run_stats`]).
    pub async fn run_stats(&self) -> Result<Vec<ProgramRunStats>, ProbeError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(ProbeCommand::RunStats { reply }).await.map_err(|_| ProbeError::TaskGone)?;
        rx.await.map_err(|_| ProbeError::TaskGone)
    }

    /// Detach every program and wait until it is done. Later calls on any clone of this
    /// handle return [`ProbeError::TaskGone`].
    pub async fn shutdown(&self) -> Result<(), ProbeError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(ProbeCommand::Shutdown { reply }).await.map_err(|_| ProbeError::TaskGone)?;
        rx.await.map_err(|_| ProbeError::TaskGone)
    }
}
