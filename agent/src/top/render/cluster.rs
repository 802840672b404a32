//! The cluster view: hosts, then every workload by interference with its top antagonist,
//! CPU use / allocation / forecast, price, credits, reputation and leases.

use super::{Column, fit};
use crate::top::format::{clip, clip_left, compact as short, opt_f};
use crate::top::model::cluster::{ClusterModel, WorkloadRow};
use crate::top::model::cluster_rows;
use crate::top::state::UiState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use truce_common::model::Timestamp;

const HOST_COLUMNS: &[Column] = &[
    Column { header: "HOST", width: 16, priority: 0 },
    Column { header: "SESSION", width: 7, priority: 4 },
    Column { header: "WORKLOADS", width: 9, priority: 1 },
    Column { header: "WORST", width: 6, priority: 1 },
    Column { header: "LEASES", width: 6, priority: 2 },
    Column { header: "ROUND", width: 6, priority: 3 },
    Column { header: "PRICES (credits/unit/s)", width: 30, priority: 2 },
];

const WORKLOAD_COLUMNS: &[Column] = &[
    Column { header: "HOST", width: 12, priority: 2 },
    Column { header: "WORKLOAD", width: 20, priority: 0 },
    Column { header: "SCORE", width: 6, priority: 0 },
    Column { header: "TOP ANTAGONIST", width: 22, priority: 0 },
    Column { header: "CPU use/alloc/fcst", width: 18, priority: 1 },
    Column { header: "PRICE", width: 7, priority: 3 },
    Column { header: "CREDITS", width: 9, priority: 2 },
    Column { header: "REP", width: 5, priority: 3 },
    Column { header: "LEASES", width: 6, priority: 2 },
    Column { header: "LAST DECISION", width: 30, priority: 4 },
];

fn cpu_cell(r: &WorkloadRow) -> String {
    let used = r.cpu_used_m.map_or_else(|| "-".into(), |v| v.to_string());
    let alloc = r.cpu_alloc_m.map_or_else(|| "-".into(), |v| v.to_string());
    let fcst = r.cpu_forecast_m.map_or_else(|| "-".into(), |v| format!("{v:.0}"));
    format!("{used}/{alloc}/{fcst}m")
}

fn antagonist_cell(r: &WorkloadRow, w: usize) -> String {
    match &r.antagonist {
        Some(a) => {
            let pct = format!(" {:.0}%", a.blame * 100.0);
            format!("{}{pct}", clip_left(&a.name, w.saturating_sub(pct.chars().count())))
        }
        None => "-".into(),
    }
}

fn workload_cells(r: &WorkloadRow) -> Vec<String> {
    vec![
        clip(&r.host, 12),
        clip_left(&r.name, 20),
        opt_f(r.score, 2),
        antagonist_cell(r, 22),
        cpu_cell(r),
        r.cpu_price.map_or_else(|| "-".into(), |p| format!("{p:.4}")),
        r.credits.map_or_else(|| "n/a".into(), |c| if c.abs() < 1e4 { format!("{c:.2}") } else { short(c) }),
        r.reputation.map_or_else(|| "n/a".into(), |v| v.to_string()),
        r.leases.to_string(),
        r.last_reason.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn score_style(score: Option<f64>) -> Style {
    match score {
        Some(s) if s >= 0.5 => Style::default().fg(Color::Red),
        Some(s) if s >= 0.2 => Style::default().fg(Color::Yellow),
        _ => Style::default(),
    }
}

fn table<'a>(columns: &[Column], keep: &[usize], rows: Vec<(Vec<String>, Style)>, title: String) -> Table<'a> {
    let widths: Vec<Constraint> = keep
        .iter()
        .enumerate()
        .map(|(n, &i)| if n + 1 == keep.len() { Constraint::Min(columns[i].width) } else { Constraint::Length(columns[i].width) })
        .collect();
    let header = Row::new(keep.iter().map(|&i| Cell::from(columns[i].header))).style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let body: Vec<Row> = rows.into_iter().map(|(cells, style)| Row::new(keep.iter().map(|&i| Cell::from(cells[i].clone()))).style(style)).collect();
    Table::new(body, widths)
        .header(header)
        .block(Block::default().borders(Borders::TOP).title(title))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
}

pub fn full(frame: &mut Frame, area: Rect, model: &ClusterModel, ui: &UiState, now: Timestamp) {
    // An arbiter that is a federation site: its vote below the workloads, up to a third of the screen.
    let area = if model.federation.is_empty() {
        area
    } else {
        let height = super::federation::wanted_height(&model.federation).clamp(3, (area.height / 3).max(3));
        let [rest, fed] = Layout::vertical([Constraint::Min(6), Constraint::Length(height)]).areas(area);
        super::federation::pane(frame, fed, &model.federation);
        rest
    };
    let hosts = model.host_rows(now);
    let host_height = (hosts.len() as u16 + 2).clamp(3, area.height / 3);
    let [top, bottom] = Layout::vertical([Constraint::Length(host_height), Constraint::Min(3)]).areas(area);

    let keep = fit(HOST_COLUMNS, top.width);
    let host_rows = hosts
        .iter()
        .map(|h| {
            let prices = if h.prices.is_empty() { "-".to_string() } else { h.prices.iter().map(|(r, p)| format!("{r} {p:.4}")).collect::<Vec<_>>().join("  ") };
            let cells = vec![
                clip(&h.host, 16),
                h.session.map_or_else(|| "-".into(), |s| format!("s{s}")),
                h.workloads.to_string(),
                opt_f(h.worst_score, 2),
                h.leases.to_string(),
                h.round.to_string(),
                prices,
            ];
            (cells, score_style(h.worst_score))
        })
        .collect();
    frame.render_widget(table(HOST_COLUMNS, &keep, host_rows, format!(" hosts ({}) ", hosts.len())), top);

    let rows = cluster_rows(model, ui, now);
    let keep = fit(WORKLOAD_COLUMNS, bottom.width);
    let total = model.workload_rows(now).len();
    let title = if rows.len() == total { format!(" workloads ({total}) by {} ", ui.sort.label()) } else { format!(" workloads ({} of {total}) ", rows.len()) };
    let body = rows.iter().map(|r| (workload_cells(r), score_style(r.score))).collect();
    let mut state = TableState::default().with_selected((!rows.is_empty()).then_some(ui.selected.min(rows.len().saturating_sub(1))));
    frame.render_stateful_widget(table(WORKLOAD_COLUMNS, &keep, body, title), bottom, &mut state);
    if rows.is_empty() {
        let msg = if total == 0 { "no workloads reported yet" } else { "no workload matches the filter" };
        let inner = Rect { y: bottom.y + 2, height: 1, ..bottom };
        frame.render_widget(Paragraph::new(msg).style(Style::default().fg(Color::DarkGray)), inner);
    }
}

/// One line per workload: name, score and the antagonist, for narrow terminals.
pub fn compact(frame: &mut Frame, area: Rect, model: &ClusterModel, ui: &UiState, now: Timestamp) {
    let rows = cluster_rows(model, ui, now);
    let w = area.width as usize;
    let name_w = (w / 2).saturating_sub(7).max(4);
    let lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .skip(ui.selected.saturating_sub(area.height.saturating_sub(1) as usize))
        .map(|(i, r)| {
            let text = format!("{:<name_w$} {:>5} ←{}", clip_left(&format!("{}/{}", r.host, r.name), name_w), opt_f(r.score, 2), antagonist_cell(r, w.saturating_sub(name_w + 8)));
            let style = if i == ui.selected { Style::default().add_modifier(Modifier::REVERSED) } else { score_style(r.score) };
            Line::styled(clip(&text, w), style)
        })
        .collect();
    let lines = if lines.is_empty() { vec![Line::from("no workloads yet")] } else { lines };
    frame.render_widget(Paragraph::new(lines), area);
}

/// The selected row, for the detail pane.
pub fn selected(model: &ClusterModel, ui: &UiState, now: Timestamp) -> Option<WorkloadRow> {
    let rows = cluster_rows(model, ui, now);
    rows.get(ui.selected.min(rows.len().saturating_sub(1))).cloned()
}
