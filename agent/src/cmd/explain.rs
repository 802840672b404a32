//! `truce-agent explain WORKLOAD`: why a cgroup is where it is. It reads, without touching
//! anything: the cgroup's files now, the journal (what truce changed and the originals), and
//! the daemon's status file (the leases, the decisions' reasons, the bids behind them, and the
//! workload's interference estimate).

use crate::config::AgentConfig;
use crate::enforce::{Journal, Slot, Status, status_path};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use truce_common::model::Timestamp;

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The workload: its cgroup path (as `observe` shows it), its name, or its cgroup id.
    pub workload: String,
    /// The daemon's configuration file (for the journal, status file and roots).
    #[arg(long, short, env = "TRUCE_AGENT_CONFIG", default_value = "/etc/truce/agent.toml")]
    pub config: PathBuf,
}

/// Files whose values truce may change, in the order they are shown.
const KNOBS: [&str; 5] = ["cpu.max", "cpu.weight", "memory.high", "io.max", "io.weight"];

pub fn run(args: &ExplainArgs) -> Result<()> {
    let cfg = AgentConfig::load(&args.config)?;
    let host = crate::cgroupfs::discover().context("finding the cgroup2 mount")?;
    let status_file = status_path(&cfg.journal);
    let status = match Status::read(&status_file) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("note: no status from the daemon ({}: {e}); showing files and journal only", status_file.display());
            None
        }
    };
    let journal = Journal::read_pending(&cfg.journal)?;
    let cgroup = resolve(&args.workload, status.as_ref()).unwrap_or_else(|| args.workload.clone());
    let dir = host.mount.join(cgroup.trim_start_matches('/'));
    if !dir.is_dir() {
        anyhow::bail!("no cgroup {cgroup} under {} (give a path as `observe` shows it, a name, or an id)", host.mount.display());
    }
    let files: Vec<(String, String)> = KNOBS
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok().map(|v| (f.to_string(), v.trim().to_string())))
        .collect();
    print!("{}", explain(&cgroup, &files, &journal, status.as_ref(), &cfg.roots, crate::cmd::sampler::now()));
    Ok(())
}

/// Find the cgroup path for a name or id the status file knows; a path is taken as given.
fn resolve(query: &str, status: Option<&Status>) -> Option<String> {
    if query.starts_with('/') {
        return Some(query.to_string());
    }
    let s = status?;
    s.workloads.iter().find(|w| w.name == query || w.id.to_string() == query).map(|w| w.cgroup.clone())
}

fn secs(from: Timestamp, to: Timestamp) -> String {
    let ms = to.0 as i64 - from.0 as i64;
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The explanation, as text. Pure, so it is tested without a daemon or a cgroup.
pub fn explain(cgroup: &str, files: &[(String, String)], journal: &[(String, Slot, String)], status: Option<&Status>, roots: &[String], now: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{cgroup}");
    if !crate::enforce::under_roots(cgroup, roots) {
        let _ = writeln!(out, "  not under the configured roots {roots:?}: truce observes it but never writes to it");
    } else if let Some(own) = status.and_then(|s| s.own_cgroup.as_deref()).filter(|own| crate::enforce::holds(cgroup, own)) {
        let _ = writeln!(out, "  holds truce-agent itself ({own}): the agent never manages it, even under its roots");
    }
    if let Some(s) = status {
        let age = now.0.saturating_sub(s.at.0);
        if age > 3 * s.period_ms.max(1000) {
            let _ = writeln!(out, "  status is {} old (pid {}): the daemon may be down; its leases lapse on their own", secs(s.at, now), s.pid);
        }
        if !s.enforcing {
            let _ = writeln!(out, "  this host observes only: decisions are not applied");
        }
    }
    let _ = writeln!(out, "\n  now:");
    for (file, value) in files {
        let held = status.into_iter().flat_map(|s| &s.leases).find(|l| l.cgroup == cgroup && l.file.starts_with(file.as_str()));
        let original = journal.iter().find(|(c, slot, _)| c == cgroup && slot.file == *file).map(|(_, _, v)| v.as_str());
        let origin = match (held, original) {
            (Some(l), Some(orig)) => format!("set by truce (lease {}, {} left); original {orig:?}", l.lease, secs(now, l.expiry)),
            (None, Some(orig)) => format!("changed by truce, restore pending; original {orig:?}"),
            (Some(l), None) => format!("lease {} holds it", l.lease),
            (None, None) => "not changed by truce".to_string(),
        };
        let _ = writeln!(out, "    {file:<12} {value:<24} {origin}");
    }
    let leases: Vec<_> = status.into_iter().flat_map(|s| &s.leases).filter(|l| l.cgroup == cgroup).collect();
    if !leases.is_empty() {
        let _ = writeln!(out, "\n  leases:");
        for l in leases {
            let _ = writeln!(out, "    lease {} on {}: {:?}, decision {}, from bids {:?}, expires in {}", l.lease, l.file, l.setting, l.decision, l.bids, secs(now, l.expiry));
            for r in &l.reasons {
                let _ = writeln!(out, "      because {}: {}", r.code, r.detail);
            }
        }
    }
    if let Some(w) = status.into_iter().flat_map(|s| &s.workloads).find(|w| w.cgroup == cgroup) {
        let _ = writeln!(out, "\n  {} (cgroup id {}):", w.name, w.id);
        match w.score {
            Some(score) => {
                let _ = writeln!(out, "    interference score {score:.3}");
            }
            None => {
                let _ = writeln!(out, "    no interference estimate yet");
            }
        }
        if let Some(a) = &w.antagonist {
            let _ = writeln!(out, "    top antagonist: {a}");
        }
        match &w.last_bid {
            Some(b) => {
                let _ = writeln!(out, "    last bid {} ({} ago){}:", b.id, secs(b.at, now), if b.slo_breach { ", SLO breached" } else { "" });
                for a in &b.asks {
                    let _ = writeln!(out, "      asks {a}");
                }
                for r in &b.releases {
                    let _ = writeln!(out, "      offers {r}");
                }
                for r in &b.reasons {
                    let _ = writeln!(out, "      because {}: {}", r.code, r.detail);
                }
            }
            None => {
                let _ = writeln!(out, "    has not bid (nothing to ask, release or trade, and within its SLO)");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::{BidStatus, LeaseStatus, WorkloadStatus};
    use truce_common::model::{Reason, Setting};

    #[test]
    fn names_the_lease_its_reasons_the_original_and_the_bid() {
        let status = Status {
            host: "h".into(),
            pid: 7,
            at: Timestamp(10_000),
            period_ms: 1000,
            enforcing: true,
            leases: vec![LeaseStatus {
                lease: 42,
                cgroup: "/demo/hog".into(),
                file: "cpu.max".into(),
                setting: Setting::CpuMax { millicores: 500, period_us: 100_000 },
                start: Timestamp(9_000),
                expiry: Timestamp(19_000),
                decision: 3,
                bids: vec![11],
                reasons: vec![Reason { code: "cut".into(), detail: "gave 500 of its 1000 to /demo/victim".into() }],
            }],
            workloads: vec![WorkloadStatus {
                cgroup: "/demo/hog".into(),
                id: 99,
                name: "hog".into(),
                score: Some(0.02),
                antagonist: None,
                last_bid: Some(BidStatus { id: 11, at: Timestamp(9_500), asks: vec![], releases: vec!["cpu 300 at >= 0.1 /unit/s".into()], slo_breach: false, reasons: vec![] }),
            }],
            own_cgroup: None,
        };
        let files = vec![("cpu.max".to_string(), "50000 100000".to_string()), ("cpu.weight".to_string(), "100".to_string())];
        let journal = vec![("/demo/hog".to_string(), Slot { file: "cpu.max".into(), dev: None }, "max 100000".to_string())];
        let text = explain("/demo/hog", &files, &journal, Some(&status), &["/demo".into()], Timestamp(10_500));
        assert!(text.contains("set by truce (lease 42, 8.5 s left); original \"max 100000\""), "{text}");
        assert!(text.contains("because cut: gave 500 of its 1000 to /demo/victim"), "{text}");
        assert!(text.contains("offers cpu 300"), "{text}");
        assert!(text.contains("cpu.weight   100                      not changed by truce"), "{text}");
        let stale = explain("/other", &files, &[], Some(&status), &["/demo".into()], Timestamp(60_000));
        assert!(stale.contains("never writes to it") && stale.contains("daemon may be down"), "{stale}");
        assert!(!text.contains("truce-agent itself"), "{text}");
        let own = Status { own_cgroup: Some("/demo/truce/agent".into()), ..status };
        let slice = explain("/demo/truce", &files, &[], Some(&own), &["/demo".into()], Timestamp(10_500));
        assert!(slice.contains("holds truce-agent itself (/demo/truce/agent)"), "{slice}");
    }
}
