//! Load and attach truce's probes, print `attached` on stdout, and hold them until SIGTERM
//! or SIGINT. Used by `cargo xtask bench overhead` to measure the probes from outside.
use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use truce_agent::probes::{PerfMode, ProbeConfig, Probes};

fn main() -> Result<()> {
    // Block the signals first so they queue for sigwait instead of killing us before
    // the programs are detached.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().context("blocking SIGTERM/SIGINT")?;

    let probes = Probes::load(&ProbeConfig { perf: PerfMode::Hardware, ..Default::default() })
        .map_err(|e| anyhow::anyhow!("{}", truce_agent::probes::error_chain(&e)))?;
    eprintln!("hold_probes: {:?}", probes.capabilities());
    println!("attached");
    let signal = signals.wait().context("waiting for a signal")?;
    drop(probes);
    eprintln!("hold_probes: {signal:?}, probes detached");
    Ok(())
}
