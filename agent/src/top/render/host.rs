//! The host view: workloads with sparklines of the last minutes, the who-delayed-whom heat
//! map, and the latest decisions with their reasons.

use super::{Column, fit};
use crate::top::format::{bytes, clip, clip_left, clock, compact as short, opt_f, opt_u, setting, spark, until};
use crate::top::model::host::{HeatMap, HostModel, HostWorkloadRow};
use crate::top::model::host_rows;
use crate::top::state::{Focus, UiState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use truce_common::model::Timestamp;

const COLUMNS: &[Column] = &[
    Column { header: "WORKLOAD", width: 20, priority: 0 },
    Column { header: "SCORE", width: 6, priority: 0 },
    Column { header: "CPU m", width: 6, priority: 1 },
    Column { header: "RQ%", width: 5, priority: 1 },
    Column { header: "MEM", width: 7, priority: 3 },
    Column { header: "TOP ANTAGONIST", width: 22, priority: 0 },
    Column { header: "LAST MINUTES", width: 24, priority: 2 },
];

/// Heat map cells: one character column per delayer.
const CELL_W: u16 = 6;

fn antagonist(r: &HostWorkloadRow, w: usize) -> String {
    match &r.antagonist {
        Some((name, blame)) => {
            let pct = format!(" {:.0}%", blame * 100.0);
            format!("{}{pct}", clip_left(name, w.saturating_sub(pct.chars().count())))
        }
        None => "-".into(),
    }
}

fn heat_style(v: f64, max: f64) -> Style {
    let share = if max > 0.0 { v / max } else { 0.0 };
    let bg = if share >= 0.66 {
        Color::Red
    } else if share >= 0.33 {
        Color::LightRed
    } else if share >= 0.1 {
        Color::Yellow
    } else {
        Color::DarkGray
    };
    Style::default().bg(bg).fg(Color::Black)
}

fn heat_table<'a>(map: &HeatMap, label_w: u16) -> Table<'a> {
    let max = map.wait_ms.iter().flatten().flatten().copied().fold(0.0, f64::max);
    let header = Row::new(
        std::iter::once(Cell::from("victim \\ delayer"))
            .chain((1..=map.names.len()).map(|i| Cell::from(format!("{i:>5}")))),
    )
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = map
        .wait_ms
        .iter()
        .enumerate()
        .map(|(i, cells)| {
            let label = Cell::from(format!("{} {}", i + 1, clip_left(&map.names[i], (label_w as usize).saturating_sub(3))));
            Row::new(std::iter::once(label).chain(cells.iter().map(|c| match c {
                Some(ms) => Cell::from(format!("{:>5}", short(*ms))).style(heat_style(*ms, max)),
                None => Cell::from("    ·"),
            })))
        })
        .collect();
    let widths: Vec<Constraint> = std::iter::once(Constraint::Length(label_w)).chain(map.names.iter().map(|_| Constraint::Length(CELL_W - 1))).collect();
    Table::new(rows, widths).header(header)
}

pub fn full(frame: &mut Frame, area: Rect, model: &HostModel, ui: &UiState, now: Timestamp) {
    let Some(view) = model.view() else {
        frame.render_widget(Paragraph::new("waiting for the agent's first period…"), area);
        return;
    };
    let rows = host_rows(model, ui);
    let heat_limit = ((area.width.saturating_sub(24)) / CELL_W).clamp(1, 12) as usize;
    let map = model.heat_map(heat_limit);
    let heat_h = if map.names.is_empty() { 3 } else { map.names.len() as u16 + 3 };
    let heat_h = heat_h.min(area.height / 3);
    let decisions_h = (area.height / 4).max(4);
    let [top, mid, bottom] = Layout::vertical([Constraint::Min(4), Constraint::Length(heat_h), Constraint::Length(decisions_h)]).areas(area);

    // Workloads with their sparkline.
    let keep = fit(COLUMNS, top.width);
    let spark_w = if keep.contains(&6) {
        let fixed: u16 = keep.iter().filter(|&&i| i != 6).map(|&i| COLUMNS[i].width + 1).sum();
        top.width.saturating_sub(fixed).max(COLUMNS[6].width) as usize
    } else {
        0
    };
    let spark_max = rows.iter().flat_map(|r| r.spark.iter().rev().take(spark_w).flatten()).copied().fold(0.0f32, f32::max);
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let cells = [
                clip_left(&r.name, 20),
                opt_f(r.score, 2),
                opt_u(r.cpu_m),
                opt_f(r.rq_delay_pct, 0),
                bytes(r.memory_bytes),
                antagonist(r, 22),
                spark(&r.spark, spark_w, spark_max),
            ];
            Row::new(keep.iter().map(|&i| Cell::from(cells[i].clone())))
        })
        .collect();
    let widths: Vec<Constraint> = keep.iter().map(|&i| if i == 6 { Constraint::Min(COLUMNS[i].width) } else { Constraint::Length(COLUMNS[i].width) }).collect();
    let mut headers: Vec<String> = keep.iter().map(|&i| COLUMNS[i].header.to_string()).collect();
    if let Some(h) = keep.iter().position(|&i| i == 6) {
        headers[h] = format!("{} (last {}s)", ui.spark.label(), spark_w as u64 * view.period_ms.max(1) / 1000);
    }
    let focused = |f: Focus| if ui.focus == f { Style::default().fg(Color::Cyan) } else { Style::default() };
    let omitted = if view.omitted > 0 { format!(", {} quieter not sent", view.omitted) } else { String::new() };
    let title = format!(" workloads ({}{omitted}) by {} ", rows.len(), ui.sort.label());
    let table = Table::new(body, widths)
        .header(Row::new(headers).style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)))
        .block(Block::default().borders(Borders::TOP).title(title).border_style(focused(Focus::Workloads)))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let selected = (ui.focus == Focus::Workloads && !rows.is_empty()).then(|| ui.selected.min(rows.len() - 1));
    frame.render_stateful_widget(table, top, &mut TableState::default().with_selected(selected));

    // Who delayed whom.
    let block = Block::default().borders(Borders::TOP).title(format!(" who delayed whom: run-queue wait, ms over {} periods ", map.window_periods));
    let inner = block.inner(mid);
    frame.render_widget(block, mid);
    if map.names.is_empty() {
        frame.render_widget(Paragraph::new("no cross-workload run-queue wait in the window").style(Style::default().fg(Color::DarkGray)), inner);
    } else {
        frame.render_widget(heat_table(&map, 22), inner);
    }

    // Decisions, newest first.
    let lines: Vec<Line> = model
        .decisions()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let reason = d.reasons.first().map_or_else(String::new, |r| format!("{}: {}", r.code, r.detail));
            let text = format!(
                "{} r{} {:<18} {:<22} lease {} ({})  {reason}",
                clock(d.lease.start),
                d.round,
                clip_left(&d.workload.path, 18),
                clip(&setting(&d.setting), 22),
                d.lease.id.0,
                until(d.lease.expiry, now)
            );
            let style = if ui.focus == Focus::Decisions && i == ui.selected { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() };
            Line::styled(text, style)
        })
        .collect();
    let lines = if lines.is_empty() { vec![Line::styled("no decisions yet", Style::default().fg(Color::DarkGray))] } else { lines };
    let arbiter = if view.arbiter.is_empty() { "none (observe only)".to_string() } else { view.arbiter.clone() };
    let title = format!(" decisions (newest first) · {} leases enforced · arbiter: {} ", model.leases().len(), clip(&arbiter, 70));
    let block = Block::default().borders(Borders::TOP).title(title).border_style(focused(Focus::Decisions));
    let skip = if ui.focus == Focus::Decisions { ui.selected.saturating_sub(bottom.height.saturating_sub(2) as usize) } else { 0 };
    frame.render_widget(Paragraph::new(lines).block(block).scroll((skip as u16, 0)), bottom);
    if !model.unavailable().is_empty() {
        let text: Vec<Span> = std::iter::once(Span::styled(" unavailable: ", Style::default().fg(Color::Yellow)))
            .chain(model.unavailable().iter().map(|u| Span::raw(format!("{} ({})  ", u.signal, u.reason))))
            .collect();
        let at = Rect { y: bottom.y + bottom.height.saturating_sub(1), height: 1, ..bottom };
        frame.render_widget(Paragraph::new(Line::from(text)), at);
    }
}

/// One line per workload, for narrow terminals.
pub fn compact(frame: &mut Frame, area: Rect, model: &HostModel, ui: &UiState) {
    let rows = host_rows(model, ui);
    let w = area.width as usize;
    let name_w = (w / 2).saturating_sub(7).max(4);
    let lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .skip(ui.selected.saturating_sub(area.height.saturating_sub(1) as usize))
        .map(|(i, r)| {
            let text = format!("{:<name_w$} {:>5} ←{}", clip_left(&r.name, name_w), opt_f(r.score, 2), antagonist(r, w.saturating_sub(name_w + 8)));
            let style = if i == ui.selected { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() };
            Line::styled(clip(&text, w), style)
        })
        .collect();
    let lines = if lines.is_empty() { vec![Line::from("waiting for the agent…")] } else { lines };
    frame.render_widget(Paragraph::new(lines), area);
}
