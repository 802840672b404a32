//! Human and JSON renderings of a replay.

use super::ReplayReport;
use std::io::{self, Write};
use std::path::Path;
use truce_common::model::{Bid, Credits, WorkloadId};

pub(super) fn bid_line(b: &Bid) -> String {
    let mut s = format!("bid #{} {} at {} ms:", b.id.0, b.workload.path, b.at.0);
    for a in &b.asks {
        s.push_str(&format!(" ask {} {} @≤{:.3e}", a.resource, a.amount, a.max_price));
    }
    for r in &b.releases {
        s.push_str(&format!(" release {} {} @≥{:.3e}", r.resource, r.amount, r.min_price));
    }
    for t in &b.trades {
        s.push_str(&format!(" trade {} {} for {} {}", t.give_amount, t.give, t.want_amount, t.want));
    }
    s.push_str(&format!(
        "; pay ≤ {:.4} credits, priority {}, lease {} s{}",
        b.willingness_to_pay.as_credits(),
        b.priority,
        b.lease_ms / 1000,
        if b.slo_breach { ", SLO BREACH" } else { "" }
    ));
    s
}

fn name(report: &ReplayReport, id: WorkloadId) -> String {
    report.names.get(&id).map(|(n, _)| n.clone()).unwrap_or_else(|| id.to_string())
}

pub(super) fn write_summary(out: &mut impl Write, report: &ReplayReport, file: &Path) -> io::Result<()> {
    let breaches = report.bids.iter().filter(|b| b.slo_breach).count();
    writeln!(
        out,
        "replayed {} periods ({} s) from {}: {} bids, {} with the SLO-breach flag",
        report.periods,
        report.last.at.ms_since(report.first) / 1000,
        file.display(),
        report.bids.len(),
        breaches
    )?;
    for e in &report.last.estimates {
        let (n, path) = report.names.get(&e.workload).cloned().unwrap_or_default();
        writeln!(out, "\n{n} ({}) {path}", e.workload)?;
        let parts: Vec<String> = e
            .components
            .iter()
            .map(|c| format!("{} {:.3} (baseline {:.3}, ×{} → {:.3})", c.name, c.value, c.baseline, c.weight, c.contribution))
            .collect();
        writeln!(out, "  interference score {:.3}: {}", e.score, parts.join("; "))?;
        if !e.unavailable.is_empty() {
            writeln!(out, "  unavailable: {}", e.unavailable.join(", "))?;
        }
        if e.antagonists.is_empty() {
            writeln!(out, "  antagonists: none")?;
        }
        for (i, a) in e.antagonists.iter().enumerate() {
            writeln!(out, "  antagonist {}: {}", i + 1, a.explanation)?;
        }
        for f in report.last.forecasts.iter().filter(|f| f.workload == e.workload) {
            writeln!(
                out,
                "  forecast {}: mean {:.0} [{:.0}, {:.0}] over {} s, model {}{}{}",
                f.resource,
                f.mean,
                f.lower,
                f.upper,
                f.horizon_ms / 1000,
                f.model,
                f.mase.map(|m| format!(", MASE {m:.2}")).unwrap_or_default(),
                if f.anomaly { ", ANOMALY" } else { "" }
            )?;
        }
        let last_bid = report.bids.iter().rev().find(|b| b.workload.id == e.workload);
        match last_bid {
            Some(b) => {
                writeln!(out, "  last {}", bid_line(b))?;
                for r in &b.reasons {
                    writeln!(out, "    {}: {}", r.code, r.detail)?;
                }
            }
            None => writeln!(out, "  no bids")?,
        }
    }
    let m = &report.last.matrix;
    writeln!(out, "\ninterference matrix (victim ← delayer, run-queue wait over the last {} periods):", m.window_periods)?;
    for c in &m.cells {
        writeln!(
            out,
            "  {:>20} ← {:<20} {:>9.0} ms  blame {:>3.0}%",
            name(report, c.victim),
            name(report, c.delayer),
            c.wait_ns as f64 / 1e6,
            c.blame * 100.0
        )?;
    }
    Ok(())
}

pub(super) fn summary_json(report: &ReplayReport) -> serde_json::Value {
    serde_json::json!({
        "periods": report.periods,
        "bids": report.bids.len(),
        "breach_bids": report.bids.iter().filter(|b| b.slo_breach).count(),
        "willingness_total_credits": Credits(report.bids.iter().map(|b| b.willingness_to_pay.0).sum()).as_credits(),
        "estimates": report.last.estimates,
        "matrix": report.last.matrix,
        "forecasts": report.last.forecasts,
    })
}
