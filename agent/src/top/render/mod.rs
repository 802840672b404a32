//! Drawing: state in, frame out. Nothing here reads a socket or the clock, so TestBackend
//! renders are exactly what a terminal shows.

mod cluster;
mod detail;
mod federation;
mod host;

use super::format::clock;
use super::model::cluster::ClusterModel;
use super::model::host::HostModel;
use super::model::{Connection, Status};
use super::state::{HELP, UiState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use truce_common::model::Timestamp;

/// Below this the full tables do not fit; a one-line-per-workload list is shown instead.
pub const FULL_MIN_WIDTH: u16 = 72;
pub const FULL_MIN_HEIGHT: u16 = 14;

pub enum Screen<'a> {
    Cluster(&'a ClusterModel),
    Host(&'a HostModel),
}

pub fn draw(frame: &mut Frame, screen: &Screen<'_>, ui: &UiState, status: &Status, now: Timestamp) {
    let area = frame.area();
    if area.width < 24 || area.height < 4 {
        frame.render_widget(Paragraph::new("truce top: terminal too small").wrap(Wrap { trim: true }), area);
        return;
    }
    let [title, body, foot] = Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(area);
    frame.render_widget(title_line(screen, ui, status, now), title);
    let full = area.width >= FULL_MIN_WIDTH && area.height >= FULL_MIN_HEIGHT;
    match screen {
        Screen::Cluster(m) if full => cluster::full(frame, body, m, ui, now),
        Screen::Cluster(m) => cluster::compact(frame, body, m, ui, now),
        Screen::Host(m) if full => host::full(frame, body, m, ui, now),
        Screen::Host(m) => host::compact(frame, body, m, ui),
    }
    frame.render_widget(footer(status, ui, full), foot);
    if ui.detail {
        let popup = centered(area, 90, 80);
        frame.render_widget(Clear, popup);
        let lines = match screen {
            Screen::Cluster(m) => detail::cluster(m, ui, now),
            Screen::Host(m) => detail::host(m, ui, now),
        };
        let block = Block::default().borders(Borders::ALL).title(" detail (Esc closes) ");
        frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), popup);
    }
    if ui.help {
        let popup = centered(area, 70, 70);
        frame.render_widget(Clear, popup);
        let lines: Vec<Line> = HELP
            .iter()
            .map(|(k, what)| Line::from(vec![Span::styled(format!("{k:<16}"), Style::default().add_modifier(Modifier::BOLD)), Span::raw(*what)]))
            .collect();
        let block = Block::default().borders(Borders::ALL).title(" truce top keys (any key closes) ");
        frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: true }), popup);
    }
}

fn title_line<'a>(screen: &Screen<'_>, ui: &UiState, status: &Status, now: Timestamp) -> Paragraph<'a> {
    let what = match screen {
        Screen::Cluster(_) => "cluster".to_string(),
        Screen::Host(m) => match m.view() {
            Some(v) => format!("host {}", v.host),
            None => "host".to_string(),
        },
    };
    let state = match &status.connection {
        Connection::Connecting => Span::styled("connecting", Style::default().fg(Color::Yellow)),
        Connection::Live => Span::styled("live", Style::default().fg(Color::Green)),
        Connection::Lost { .. } => Span::styled("DISCONNECTED", Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)),
    };
    let dir = if ui.reverse { "↑" } else { "↓" };
    let mut spans = vec![
        Span::styled("truce top", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" · {what} · {} · ", status.source)),
        state,
        Span::raw(format!(" · {} · sort {}{dir}", clock(now), ui.sort.label())),
    ];
    if !ui.filter.is_empty() || ui.editing.is_some() {
        spans.push(Span::raw(format!(" · filter /{}", ui.filter)));
    }
    if ui.paused {
        spans.push(Span::styled(" · PAUSED", Style::default().fg(Color::Yellow)));
    }
    Paragraph::new(Line::from(spans))
}

fn footer<'a>(status: &Status, ui: &UiState, full: bool) -> Paragraph<'a> {
    if let Some(_before) = &ui.editing {
        return Paragraph::new(format!("filter: /{}█  (Enter keeps, Esc drops)", ui.filter));
    }
    if let Connection::Lost { reason, since_ms } = &status.connection {
        let text = format!("{} unreachable: {reason} — showing data as of {}, retrying", status.source, clock(Timestamp(*since_ms)));
        return Paragraph::new(text).style(Style::default().fg(Color::Red));
    }
    let keys = if full {
        "? help  / filter  s sort  r reverse  Enter detail  m spark  Tab focus  Space pause  q quit"
    } else {
        "? help  / filter  s sort  q quit  (enlarge for the full view)"
    };
    Paragraph::new(keys).style(Style::default().fg(Color::DarkGray))
}

/// A rectangle of `pw`% × `ph`% in the middle of `area`.
fn centered(area: Rect, pw: u16, ph: u16) -> Rect {
    let w = (area.width * pw / 100).max(20).min(area.width);
    let h = (area.height * ph / 100).max(5).min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// One column a table may show: header, width, and how much it matters when space is short
/// (lower keeps longer).
pub(super) struct Column {
    pub header: &'static str,
    pub width: u16,
    pub priority: u8,
}

/// The columns that fit in `width` (one space between each), most important first, in their
/// original order. The last column kept may stretch.
pub(super) fn fit(columns: &[Column], width: u16) -> Vec<usize> {
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by_key(|&i| (columns[i].priority, i));
    let mut used = 0u16;
    let mut keep = Vec::new();
    for i in order {
        let w = columns[i].width + if keep.is_empty() { 0 } else { 1 };
        if used + w <= width {
            used += w;
            keep.push(i);
        }
    }
    keep.sort_unstable();
    keep
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_federation;
