//! The federation pane under the cluster view: the sites' riskiest hosts, then each proposal
//! with its votes, their weights (1/MASE × criticality), the tally and the verdict.

use crate::top::format::clip;
use crate::top::model::federation::{FederationModel, ProposalRow, VoteRow};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};

/// Lines the pane wants (its height is capped by the caller).
pub fn wanted_height(model: &FederationModel) -> u16 {
    let proposals: usize = model.proposal_rows().iter().take(3).map(|p| 1 + p.votes.len().max(1)).sum();
    (2 + proposals.max(1)) as u16
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

fn vote_line(v: &VoteRow, w: usize) -> Line<'static> {
    let mark = if v.approve { "yes" } else { "no " };
    let weight = match v.weight {
        Some(weight) => format!("w {weight:.3} = 1/MASE {} x crit {} (MASE {})", opt(v.accuracy_weight, 3), opt(v.criticality_weight, 2), opt(v.mase, 2)),
        None => "w - (not yet counted)".into(),
    };
    let text = format!("    {:<10} {mark}  {weight}  {}", clip(&v.voter, 10), v.reason);
    let style = if v.approve { Style::default().fg(Color::Green) } else { Style::default().fg(Color::Red) };
    Line::styled(clip(&text, w), style)
}

fn proposal_line(p: &ProposalRow, w: usize) -> Line<'static> {
    let tally = match p.share {
        Some((share, need)) => format!("share {share:.2} vs {need:.2} -> {}", p.outcome.to_uppercase()),
        None => "voting".into(),
    };
    let missing = if p.missing.is_empty() { String::new() } else { format!("  missing {}", p.missing.join(",")) };
    let verdict = p.verdict.as_ref().map_or_else(String::new, |v| format!("  | {v}"));
    let text = format!(
        "  {} {} -> {}  prio {}  P(overload) {:.2}  {} workloads  {tally}{missing}{verdict}",
        p.id, p.host, p.destination, p.priority, p.overload_probability, p.workloads
    );
    let style = match p.outcome.as_str() {
        "passed" => Style::default().add_modifier(Modifier::BOLD),
        "rejected" => Style::default().fg(Color::DarkGray),
        _ => Style::default().fg(Color::Yellow),
    };
    Line::styled(clip(&text, w), style)
}

pub fn pane(frame: &mut Frame, area: Rect, model: &FederationModel) {
    let w = area.width as usize;
    let sites: Vec<String> = model
        .site_rows()
        .iter()
        .map(|s| match &s.riskiest {
            Some((host, mean, p)) => format!("{} {host} fcst {mean:.2} P {p:.2}", s.site),
            None => format!("{} (no hosts)", s.site),
        })
        .collect();
    let mut lines = vec![Line::from(clip(&format!("  sites: {}", if sites.is_empty() { "-".into() } else { sites.join("  |  ") }), w))];
    let proposals = model.proposal_rows();
    if proposals.is_empty() {
        lines.push(Line::styled("  no proposals yet", Style::default().fg(Color::DarkGray)));
    }
    for p in &proposals {
        lines.push(proposal_line(p, w));
        if p.votes.is_empty() {
            lines.push(Line::styled("    no votes yet", Style::default().fg(Color::DarkGray)));
        }
        lines.extend(p.votes.iter().map(|v| vote_line(v, w)));
    }
    let title = format!(" federation: site {} ({} proposals) ", model.site.as_deref().unwrap_or("?"), proposals.len());
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::TOP).title(title)), area);
}
