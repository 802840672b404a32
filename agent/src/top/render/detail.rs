//! The detail pane: why a workload scores what it scores, who is blamed and why, what it
//! is forecast to need, what it holds, what it bid and what was decided.

use crate::top::format::{bytes, clock, opt_f, setting, until};
use crate::top::model::cluster::ClusterModel;
use crate::top::model::host::HostModel;
use crate::top::model::host_rows;
use crate::top::state::{Focus, UiState};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use std::collections::BTreeMap;
use truce_common::estimate::{DemandForecast, InterferenceEstimate};
use truce_common::model::{Decision, Timestamp};

fn heading(s: &str) -> Line<'static> {
    Line::styled(s.to_string(), Style::default().add_modifier(Modifier::BOLD))
}

fn estimate_lines(out: &mut Vec<Line<'static>>, est: Option<&InterferenceEstimate>, names: &BTreeMap<u64, String>) {
    let Some(e) = est else {
        out.push(Line::from("no estimate yet (the estimator learns a baseline first)"));
        return;
    };
    out.push(heading(&format!("interference score {:.3} = sum of contributions", e.score)));
    for c in &e.components {
        out.push(Line::from(format!("  {:<24} value {:>9.4}  baseline {:>9.4}  weight {:.2}  → {:+.4}", c.name, c.value, c.baseline, c.weight, c.contribution)));
    }
    if !e.unavailable.is_empty() {
        out.push(Line::from(format!("  unavailable: {}", e.unavailable.join(", "))));
    }
    out.push(heading("antagonists (worst first)"));
    if e.antagonists.is_empty() {
        out.push(Line::from("  none blamed"));
    }
    for a in &e.antagonists {
        let name = names.get(&a.workload.0).cloned().unwrap_or_else(|| a.workload.to_string());
        let corr = a.correlation.map_or_else(|| "n/a".into(), |c| format!("{c:.2}"));
        out.push(Line::from(format!("  {name}: blame {:.0}%, kernel-credited wait {:.1} ms, correlation {corr}", a.blame * 100.0, a.kernel_wait_ns as f64 / 1e6)));
        out.push(Line::from(format!("    {}", a.explanation)));
    }
}

fn forecast_lines(out: &mut Vec<Line<'static>>, forecasts: &[DemandForecast]) {
    out.push(heading("demand forecasts"));
    if forecasts.is_empty() {
        out.push(Line::from("  none yet"));
    }
    for f in forecasts {
        let overload = f.overload_probability.map_or_else(|| "n/a".into(), |p| format!("{:.0}%", p * 100.0));
        out.push(Line::from(format!(
            "  {}: {:.0} [{:.0}, {:.0}] at {:.0}% over {}s, model {} (MASE {}), overload {overload}{}",
            f.resource,
            f.mean,
            f.lower,
            f.upper,
            f.level * 100.0,
            f.horizon_ms / 1000,
            f.model,
            opt_f(f.mase, 2),
            if f.anomaly { ", ANOMALY" } else { "" }
        )));
    }
}

fn decision_lines(out: &mut Vec<Line<'static>>, decisions: &[Decision], now: Timestamp) {
    out.push(heading("decisions (newest first)"));
    if decisions.is_empty() {
        out.push(Line::from("  none"));
    }
    for d in decisions {
        out.push(Line::from(format!(
            "  {} round {}: {} — lease {} of {} {} at {:.4}, expires in {}, from bids {:?}",
            clock(d.lease.start),
            d.round,
            setting(&d.setting),
            d.lease.id.0,
            d.lease.amount,
            d.lease.resource,
            d.lease.price,
            until(d.lease.expiry, now),
            d.caused_by.iter().map(|b| b.0).collect::<Vec<_>>()
        )));
        for r in &d.reasons {
            out.push(Line::from(format!("    {}: {}", r.code, r.detail)));
        }
    }
}

pub fn cluster(model: &ClusterModel, ui: &UiState, now: Timestamp) -> Vec<Line<'static>> {
    let Some(row) = super::cluster::selected(model, ui, now) else { return vec![Line::from("nothing selected")] };
    let Some(d) = model.detail(&row.host, row.id, now) else { return vec![Line::from("the workload is gone")] };
    let mut out = vec![
        heading(&format!("{} on {} (cg{})", d.row.name, d.row.host, d.row.id)),
        Line::from(format!("path {}  memory {}  credits {}  reputation {}", d.row.path, bytes(d.row.memory_bytes), opt_f(d.row.credits, 2), d.row.reputation.map_or_else(|| "n/a".into(), |r| r.to_string()))),
    ];
    estimate_lines(&mut out, d.estimate.as_ref(), &d.names);
    forecast_lines(&mut out, &d.forecasts);
    out.push(heading("leases held"));
    if d.leases.is_empty() {
        out.push(Line::from("  none"));
    }
    for l in &d.leases {
        out.push(Line::from(format!("  lease {}: {} {} at {:.4} from {:?}, expires in {}", l.id.0, l.amount, l.resource, l.price, l.lender, until(l.expiry, now))));
    }
    out.push(heading("last bid"));
    match &d.bid {
        Some(b) => {
            let asks: Vec<String> = b.asks.iter().map(|a| format!("{} {} ≤ {:.4}", a.resource, a.amount, a.max_price)).collect();
            let releases: Vec<String> = b.releases.iter().map(|r| format!("{} {} ≥ {:.4}", r.resource, r.amount, r.min_price)).collect();
            out.push(Line::from(format!(
                "  bid {}: asks [{}] releases [{}] pays ≤ {:.2} credits, priority {}{}",
                b.id.0,
                asks.join(", "),
                releases.join(", "),
                b.willingness_to_pay.as_credits(),
                b.priority,
                if b.slo_breach { ", SLO BREACH" } else { "" }
            )));
            for r in &b.reasons {
                out.push(Line::from(format!("    {}: {}", r.code, r.detail)));
            }
        }
        None => out.push(Line::from("  none seen")),
    }
    decision_lines(&mut out, &d.decisions, now);
    out
}

pub fn host(model: &HostModel, ui: &UiState, now: Timestamp) -> Vec<Line<'static>> {
    let Some(view) = model.view() else { return vec![Line::from("no data yet")] };
    if ui.focus == Focus::Decisions {
        let Some(d) = model.decisions().get(ui.selected) else { return vec![Line::from("no decision selected")] };
        let mut out = vec![heading(&format!("decision {} for {}", d.id.0, d.workload.path))];
        decision_lines(&mut out, std::slice::from_ref(d), now);
        return out;
    }
    let rows = host_rows(model, ui);
    let Some(row) = rows.get(ui.selected.min(rows.len().saturating_sub(1))) else { return vec![Line::from("nothing selected")] };
    let names: BTreeMap<u64, String> = view.matrix.workloads.iter().map(|w| (w.workload.0, w.name.clone())).chain(view.workloads.iter().map(|w| (w.workload.id.0, w.name.clone()))).collect();
    let mut out = vec![heading(&format!("{} (cg{})  {}", row.name, row.id, row.path))];
    let est = view.estimates.iter().find(|e| e.workload.0 == row.id);
    estimate_lines(&mut out, est, &names);
    let forecasts: Vec<DemandForecast> = view.forecasts.iter().filter(|f| f.workload.0 == row.id).cloned().collect();
    forecast_lines(&mut out, &forecasts);
    out.push(heading("leases enforced"));
    let leases: Vec<_> = view.leases.iter().filter(|l| l.cgroup == row.path).collect();
    if leases.is_empty() {
        out.push(Line::from("  none"));
    }
    for l in leases {
        out.push(Line::from(format!("  lease {}: {} (decision {}), reverts in {}", l.lease.0, setting(&l.setting), l.decision.0, until(l.expiry, now))));
    }
    let mine: Vec<Decision> = view.decisions.iter().filter(|d| d.workload.id.0 == row.id).cloned().collect();
    decision_lines(&mut out, &mine, now);
    out
}
