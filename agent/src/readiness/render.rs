//! The doctor's report and the daemon's start-up summary: the same checks, two outlets.
use super::{Level, Readiness};
use std::fmt::Write;

fn list(items: &[String]) -> String {
    if items.is_empty() { "nothing".to_string() } else { items.join(", ") }
}

fn enforce_line(r: &Readiness) -> String {
    match (r.enforces.is_empty(), r.roots.is_empty()) {
        (true, _) => "nothing (observe only)".to_string(),
        (false, true) => format!("{} (under enforce.roots)", r.enforces.join(", ")),
        (false, false) => format!("{} under {}", r.enforces.join(", "), r.roots.join(", ")),
    }
}

/// The `truce-agent doctor` report: one line per check, the fix under each gap, then what
/// the agent will observe and enforce, and the verdict.
pub fn report_text(r: &Readiness) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let _ = writeln!(out, "{:<9} {:<13} {}", c.level.label(), c.name, c.finding);
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "{:<23} fix: {fix}", "");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "observes:     {}", list(&r.observes));
    for (what, why) in &r.not_observed {
        let _ = writeln!(out, "not observed: {what}: {why}");
    }
    let _ = writeln!(out, "enforces:     {}", enforce_line(r));
    let gaps = r.checks.iter().filter(|c| c.level == Level::Gap).count();
    let blocking = r.checks.iter().filter(|c| c.level == Level::Blocking).count();
    let verdict = if blocking > 0 {
        format!("cannot run ({blocking} blocking, {gaps} gaps)")
    } else if gaps > 0 {
        format!("ready, with {gaps} gap{}", if gaps == 1 { "" } else { "s" })
    } else {
        "ready".to_string()
    };
    let _ = writeln!(out, "verdict:      {verdict}");
    out
}

/// The daemon's start-up summary: one info line, then one warning per gap with its fix.
pub fn log_summary(r: &Readiness) {
    tracing::info!(observes = %list(&r.observes), enforces = %enforce_line(r), "readiness");
    for c in r.gaps() {
        tracing::warn!(check = c.name, finding = %c.finding, fix = c.fix.as_deref().unwrap_or(""), "readiness gap");
    }
}
