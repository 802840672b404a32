//! The benchmark's controls for the yield cut: its setting written by hand, with no agent or
//! with a stand-in daemon (`--cuts static,static-burst`; `static-observe` runs the agent and
//! uses `yield_by_hand` from the agent phases' loop).
use crate::{Phase, arg, phase};
use anyhow::{Context, Result};
use std::time::Duration;
use truce_tests::scenario::{CPU_HOG, IO_HOG, Setup};

/// A control for the yield cut: its setting (both antagonists at `cpu.weight` 1) written by
/// hand before the antagonists start, with no agent and no arbiter. What the setting alone
/// gives the victim, without the agent's own cost and without a reaction to wait for.
/// With `burst`, a stand-in daemon runs in the daemons' cgroup meanwhile (by default about
/// the agent's CPU under TCG, none of its code), to tell a daemon's CPU from what else the
/// agent does.
pub fn static_yield(s: &Setup, round: u32, seconds: u64, io_device: Option<&str>, burst: Option<&Burst>) -> Result<Phase> {
    s.prepare()?;
    yield_by_hand(s, "1")?;
    let daemon = match burst {
        Some(b) => {
            let (secs, us, pieces) = ((seconds + 5).to_string(), b.us.to_string(), b.pieces.to_string());
            Some(s.start_daemon_load(&["burst", "--seconds", &secs, "--busy-us", &us, "--pieces", &pieces, "--policy", &b.policy])?)
        }
        None => None,
    };
    let name = if burst.is_some() { format!("static yield, burst #{round}") } else { format!("static yield #{round}") };
    let result = phase(s, &name, seconds, true, io_device, None);
    if let Some(d) = daemon {
        d.terminate(Duration::from_secs(10));
    }
    yield_by_hand(s, "100")?;
    result
}

/// The stand-in daemon of the `static-burst` control: `us` of CPU every 500 ms in `pieces`
/// pieces 1 ms apart, under `policy` (normal or batch).
pub struct Burst {
    pub us: u64,
    pub pieces: u64,
    pub policy: String,
}

impl Burst {
    /// `--burst-us` (default 25,000: about the agent's own CPU a period under TCG, mitigation
    /// runs 43–44), `--burst-pieces` (default 4) and `--burst-policy` (default normal).
    pub fn from_args(args: &[String]) -> Result<Burst> {
        Ok(Burst { us: arg(args, "--burst-us", 25_000)?, pieces: arg(args, "--burst-pieces", 4)?, policy: arg(args, "--burst-policy", "normal".to_string())? })
    }
}

/// Both antagonists' `cpu.weight`, written by hand.
pub fn yield_by_hand(s: &Setup, weight: &str) -> Result<()> {
    for cg in [CPU_HOG, IO_HOG] {
        let file = s.cgroup(cg).join("cpu.weight");
        std::fs::write(&file, weight).with_context(|| format!("writing {weight} to {}", file.display()))?;
    }
    Ok(())
}
