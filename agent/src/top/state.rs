//! What the operator chose: sort, filter, selection, detail, help. Keys follow htop and
//! k9s habits (see [`HELP`]). Pure: a key in, the state changes; nothing is drawn here.

use super::model::host::SparkMetric;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The help overlay's lines: key, what it does.
pub const HELP: &[(&str, &str)] = &[
    ("?  F1  h", "this help (Esc closes)"),
    ("q  Ctrl-C", "quit"),
    ("↑↓  j k", "select a workload"),
    ("PgUp PgDn  g G", "page, first, last"),
    ("Enter", "detail of the selection (Esc closes)"),
    ("/", "filter by host, name or path (Enter keeps, Esc drops)"),
    ("s  >  <", "next / previous sort column"),
    ("r  I", "reverse the sort order"),
    ("m", "host view: sparkline metric (score, cpu, rq delay)"),
    ("Tab", "host view: move focus between workloads and decisions"),
    ("Space  p", "pause the display (data keeps arriving)"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    Cluster,
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    Score,
    Name,
    Host,
    Cpu,
    RqDelay,
    Credits,
    Leases,
}

impl SortKey {
    fn order(view: ViewKind) -> &'static [SortKey] {
        match view {
            ViewKind::Cluster => &[SortKey::Score, SortKey::Name, SortKey::Host, SortKey::Cpu, SortKey::Credits, SortKey::Leases],
            ViewKind::Host => &[SortKey::Score, SortKey::Name, SortKey::Cpu, SortKey::RqDelay],
        }
    }

    fn step(self, view: ViewKind, forward: bool) -> SortKey {
        let keys = Self::order(view);
        let i = keys.iter().position(|k| *k == self).unwrap_or(0);
        let n = keys.len();
        keys[if forward { (i + 1) % n } else { (i + n - 1) % n }]
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Score => "score",
            SortKey::Name => "name",
            SortKey::Host => "host",
            SortKey::Cpu => "cpu",
            SortKey::RqDelay => "rq delay",
            SortKey::Credits => "credits",
            SortKey::Leases => "leases",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Workloads,
    Decisions,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UiState {
    pub view: ViewKind,
    pub sort: SortKey,
    /// Descending by default for numbers (worst first); `reverse` flips it.
    pub reverse: bool,
    pub filter: String,
    /// `Some` while the filter is being typed; the text before editing is kept to undo.
    pub editing: Option<String>,
    pub selected: usize,
    pub detail: bool,
    pub help: bool,
    pub paused: bool,
    pub focus: Focus,
    pub spark: SparkMetric,
    pub quit: bool,
}

impl UiState {
    pub fn new(view: ViewKind) -> UiState {
        UiState {
            view,
            sort: SortKey::Score,
            reverse: false,
            filter: String::new(),
            editing: None,
            selected: 0,
            detail: false,
            help: false,
            paused: false,
            focus: Focus::Workloads,
            spark: SparkMetric::Score,
            quit: false,
        }
    }

    /// Apply one key; `rows` is how many rows the focused list shows now.
    pub fn on_key(&mut self, key: KeyEvent, rows: usize) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(before) = &self.editing {
            match key.code {
                KeyCode::Enter => self.editing = None,
                KeyCode::Esc => {
                    self.filter = before.clone();
                    self.editing = None;
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return;
        }
        if self.help {
            // Any key closes help, as in htop; q still quits.
            self.help = false;
            if key.code == KeyCode::Char('q') {
                self.quit = true;
            }
            return;
        }
        let page = 10;
        let last = rows.saturating_sub(1);
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => self.help = true,
            KeyCode::Esc => {
                if self.detail {
                    self.detail = false;
                } else {
                    self.filter.clear();
                }
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(page),
            KeyCode::PageDown => self.selected = (self.selected + page).min(last),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = last,
            KeyCode::Enter => self.detail = !self.detail,
            KeyCode::Char('/') => self.editing = Some(self.filter.clone()),
            KeyCode::Char('s') | KeyCode::Char('>') => self.sort = self.sort.step(self.view, true),
            KeyCode::Char('<') => self.sort = self.sort.step(self.view, false),
            KeyCode::Char('r') | KeyCode::Char('I') => self.reverse = !self.reverse,
            KeyCode::Char('m') => self.spark = self.spark.next(),
            KeyCode::Tab => {
                self.focus = match self.focus {
                    Focus::Workloads => Focus::Decisions,
                    Focus::Decisions => Focus::Workloads,
                };
                self.selected = 0;
            }
            KeyCode::Char(' ') | KeyCode::Char('p') => self.paused = !self.paused,
            _ => {}
        }
    }

    /// Keep the selection on a row that exists.
    pub fn clamp(&mut self, rows: usize) {
        self.selected = self.selected.min(rows.saturating_sub(1));
    }

    pub fn matches(&self, fields: &[&str]) -> bool {
        let needle = self.filter.to_lowercase();
        needle.is_empty() || fields.iter().any(|f| f.to_lowercase().contains(&needle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn filter_is_typed_kept_or_dropped() {
        let mut s = UiState::new(ViewKind::Cluster);
        for k in [KeyCode::Char('/'), KeyCode::Char('d'), KeyCode::Char('b'), KeyCode::Enter] {
            s.on_key(key(k), 5);
        }
        assert_eq!(s.filter, "db");
        for k in [KeyCode::Char('/'), KeyCode::Char('x'), KeyCode::Esc] {
            s.on_key(key(k), 5);
        }
        assert_eq!(s.filter, "db", "Esc while typing restores the filter");
        assert!(s.matches(&["node-a", "DB.service"]));
        s.on_key(key(KeyCode::Esc), 5);
        assert!(s.filter.is_empty(), "Esc outside typing clears it");
    }

    #[test]
    fn selection_stays_in_range_and_sort_cycles() {
        let mut s = UiState::new(ViewKind::Host);
        for _ in 0..10 {
            s.on_key(key(KeyCode::Down), 3);
        }
        assert_eq!(s.selected, 2);
        s.on_key(key(KeyCode::Char('g')), 3);
        assert_eq!(s.selected, 0);
        let first = s.sort;
        for _ in 0..SortKey::order(ViewKind::Host).len() {
            s.on_key(key(KeyCode::Char('s')), 3);
        }
        assert_eq!(s.sort, first, "s cycles through the view's columns");
        s.on_key(key(KeyCode::Char('<')), 3);
        assert_eq!(s.sort, SortKey::RqDelay);
    }

    #[test]
    fn help_closes_on_any_key_and_q_quits() {
        let mut s = UiState::new(ViewKind::Cluster);
        s.on_key(key(KeyCode::Char('?')), 0);
        assert!(s.help);
        s.on_key(key(KeyCode::Char('j')), 0);
        assert!(!s.help && !s.quit);
        s.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL), 0);
        assert!(s.quit);
    }
}
