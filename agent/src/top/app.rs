//! The I/O edge of `truce top`: command line, the terminal (raw mode, keys, resize,
//! SIGTERM), `--json` lines and `--once` on stdout. [`App`] holds the pure state.

use super::model::cluster::ClusterModel;
use super::model::host::HostModel;
use super::model::{Connection, Status, cluster_rows, host_rows};
use super::render::{Screen, draw};
use super::source::{Source, SourceEvent, spawn_agent, spawn_arbiter};
use super::state::{Focus, UiState, ViewKind};
use crate::transport::ArbiterEndpoint;
use anyhow::{Context, Result};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use truce_common::model::{HostId, Timestamp};

/// The agent's default socket (`inspect.socket` in the agent configuration).
pub const DEFAULT_SOCKET: &str = "/run/truce/agent.sock";

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Keys: ? help, / filter, s sort, r reverse, Enter detail, m sparkline metric, Tab focus, Space pause, q quit.\n\n\
Without --arbiter, truce top watches the local agent at /run/truce/agent.sock (root only).\n\
To watch the cluster, mint a certificate once (`truce-arbiter certs issue --dir DIR --host operator`) and run\n\
`truce top --arbiter 10.0.0.1:7447 --certs DIR --as operator`. An observer session holds no host: it never\n\
replaces an agent's session, whichever certificate it uses.")]
pub struct TopArgs {
    /// Watch the cluster through this arbiter (repeat for replicas; tried in order).
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "agent")]
    pub arbiter: Vec<SocketAddr>,
    /// Directory holding ca.pem and hosts/NAME.{pem,key}.
    #[arg(long, value_name = "DIR", env = "TRUCE_CERTS", default_value = "/etc/truce/certs")]
    pub certs: PathBuf,
    /// The certificate to present: hosts/NAME.pem from `truce-arbiter certs issue --host NAME`.
    #[arg(long = "as", value_name = "NAME", env = "TRUCE_TOP_AS", default_value = "operator")]
    pub identity: String,
    /// The name the arbiter's certificate must carry.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub server_name: String,
    /// Watch one host through its agent's unix socket.
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Print JSON lines (one snapshot per --interval) instead of drawing.
    #[arg(long)]
    pub json: bool,
    /// Print one snapshot (a text screen, or one JSON line with --json) and exit.
    #[arg(long)]
    pub once: bool,
    /// How long --once waits for a complete picture before printing what it has.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Redraw and JSON interval.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Screen size for --once without --json (default: the terminal's, else 140x40).
    #[arg(long, value_name = "COLSxROWS", value_parser = parse_size)]
    pub size: Option<(u16, u16)>,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s.split_once('x').ok_or("expected COLSxROWS, e.g. 120x40")?;
    let w: u16 = w.parse().map_err(|e| format!("columns: {e}"))?;
    let h: u16 = h.parse().map_err(|e| format!("rows: {e}"))?;
    if w < 10 || h < 3 {
        return Err("at least 10x3".into());
    }
    Ok((w, h))
}

fn now() -> Timestamp {
    crate::cmd::sampler::now()
}

/// Everything `truce top` shows, independent of where it is shown.
#[derive(Debug)]
pub struct App {
    pub cluster: ClusterModel,
    pub host: HostModel,
    pub ui: UiState,
    pub status: Status,
    /// When data last arrived (ms), for "as of" after a loss.
    last_data: Option<u64>,
    changed: bool,
}

impl App {
    pub fn new(view: ViewKind, source: String) -> App {
        App {
            cluster: ClusterModel::default(),
            host: HostModel::default(),
            ui: UiState::new(view),
            status: Status { source, connection: Connection::Connecting },
            last_data: None,
            changed: false,
        }
    }

    pub fn on_source(&mut self, ev: SourceEvent, now: Timestamp) {
        match ev {
            SourceEvent::Live => self.status.connection = Connection::Live,
            SourceEvent::Lost(reason) => {
                self.status.connection = Connection::Lost { reason, since_ms: self.last_data.unwrap_or(now.0) };
            }
            SourceEvent::Inspect(ev) => {
                self.cluster.apply(*ev);
                self.last_data = Some(now.0);
            }
            SourceEvent::History(h) => self.host.apply_history(*h),
            SourceEvent::View(v) => {
                self.host.apply_view(*v);
                self.last_data = Some(now.0);
            }
        }
        self.changed = true;
    }

    /// What `--once` waits for.
    pub fn complete(&self) -> bool {
        match self.ui.view {
            ViewKind::Cluster => self.cluster.complete(),
            ViewKind::Host => self.host.has_view(),
        }
    }

    /// Rows in the list the keys move through.
    pub fn rows(&self, now: Timestamp) -> usize {
        match (self.ui.view, self.ui.focus) {
            (ViewKind::Cluster, _) => cluster_rows(&self.cluster, &self.ui, now).len(),
            (ViewKind::Host, Focus::Decisions) => self.host.decisions().len(),
            (ViewKind::Host, Focus::Workloads) => host_rows(&self.host, &self.ui).len(),
        }
    }

    pub fn draw(&self, frame: &mut ratatui::Frame, now: Timestamp) {
        let screen = match self.ui.view {
            ViewKind::Cluster => Screen::Cluster(&self.cluster),
            ViewKind::Host => Screen::Host(&self.host),
        };
        draw(frame, &screen, &self.ui, &self.status, now);
    }

    /// The same data as the screen, as one JSON object (rows unfiltered, worst first).
    pub fn snapshot(&self, now: Timestamp) -> serde_json::Value {
        match self.ui.view {
            ViewKind::Cluster => json!({
                "view": "cluster",
                "at_ms": now.0,
                "source": self.status.source,
                "connection": self.status.connection,
                "hosts": self.cluster.host_rows(now),
                "workloads": self.cluster.workload_rows(now),
            }),
            ViewKind::Host => {
                let ui = UiState::new(ViewKind::Host);
                let v = self.host.view();
                json!({
                    "view": "host",
                    "at_ms": now.0,
                    "source": self.status.source,
                    "connection": self.status.connection,
                    "host": v.map(|v| v.host.0.clone()),
                    "period_ms": v.map(|v| v.period_ms),
                    "arbiter": v.map(|v| v.arbiter.clone()),
                    "workloads": host_rows(&self.host, &ui),
                    "matrix": self.host.heat_map(usize::MAX),
                    "leases": self.host.leases(),
                    "decisions": self.host.decisions(),
                    "unavailable": self.host.unavailable(),
                })
            }
        }
    }

    /// The screen as text, `width` × `height`.
    pub fn screen_text(&self, width: u16, height: u16, now: Timestamp) -> String {
        let Ok(mut terminal) = Terminal::new(TestBackend::new(width, height));
        let _ = terminal.draw(|f| self.draw(f, now));
        buffer_text(terminal.backend().buffer())
    }
}

/// A rendered buffer as lines of text, trailing blanks trimmed.
pub fn buffer_text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in area.y..area.y + area.height {
        let mut line = String::new();
        for x in area.x..area.x + area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub async fn run(args: &TopArgs) -> Result<()> {
    let cancel = CancellationToken::new();
    let (view, shown, source) = if args.arbiter.is_empty() {
        let path = args.agent.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        (ViewKind::Host, path.display().to_string(), spawn_agent(path, cancel.clone()))
    } else {
        let endpoints = args.arbiter.iter().map(|&addr| ArbiterEndpoint { addr, server_name: args.server_name.clone() }).collect();
        let source = spawn_arbiter(endpoints, HostId(args.identity.clone()), args.certs.clone(), cancel.clone())
            .with_context(|| format!("cannot use certificate `{}` from {}", args.identity, args.certs.display()))?;
        let shown = args.arbiter.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        (ViewKind::Cluster, shown, source)
    };
    let app = App::new(view, shown);
    let Source { events, task } = source;
    let result = if args.once {
        once(args, app, events).await
    } else if args.json {
        stream_json(args, app, events).await
    } else {
        interactive(args, app, events).await
    };
    cancel.cancel();
    // Close the session properly (bounded): the arbiter then forgets the observer at once.
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    result
}

async fn once(args: &TopArgs, mut app: App, mut rx: mpsc::Receiver<SourceEvent>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + args.wait;
    while !app.complete() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => app.on_source(ev, now()),
            Ok(None) | Err(_) => break,
        }
    }
    if !app.complete() {
        let why = match &app.status.connection {
            Connection::Lost { reason, .. } => format!(": {reason}"),
            _ => String::new(),
        };
        if app.last_data.is_none() {
            anyhow::bail!("no data from {} within {}{why}", app.status.source, humantime::format_duration(args.wait));
        }
        eprintln!("truce top: the picture is incomplete after {}{why}", humantime::format_duration(args.wait));
    }
    let t = now();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &app.snapshot(t))?;
        writeln!(out)?;
    } else {
        let (w, h) = args.size.or_else(|| crossterm::terminal::size().ok()).unwrap_or((140, 40));
        write!(out, "{}", app.screen_text(w, h, t))?;
    }
    out.flush()?;
    Ok(())
}

async fn stream_json(args: &TopArgs, mut app: App, mut rx: mpsc::Receiver<SourceEvent>) -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            ev = rx.recv() => match ev {
                Some(ev) => app.on_source(ev, now()),
                None => return Ok(()),
            },
            _ = ticker.tick() => {
                if !app.changed {
                    continue;
                }
                app.changed = false;
                let mut out = std::io::stdout().lock();
                let line = serde_json::to_string(&app.snapshot(now()))?;
                // A closed pipe (`| head`) ends the command cleanly.
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Keys arrive on their own thread (crossterm's reads block); it stops when `stop` is set.
fn spawn_input(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> mpsc::Receiver<crossterm::event::Event> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match crossterm::event::poll(Duration::from_millis(200)) {
                Ok(true) => match crossterm::event::read() {
                    Ok(ev) => {
                        if tx.blocking_send(ev).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    rx
}

async fn interactive(args: &TopArgs, mut app: App, mut rx: mpsc::Receiver<SourceEvent>) -> Result<()> {
    use crossterm::event::{Event, KeyEventKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut terminal = ratatui::try_init().context("cannot take over the terminal (use --json or --once when not on a terminal)")?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut keys = spawn_input(stop.clone());
    let mut ticker = tokio::time::interval(args.interval.min(Duration::from_millis(500)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result: Result<()> = loop {
        let mut redraw = false;
        tokio::select! {
            _ = term.recv() => break Ok(()),
            ev = keys.recv() => match ev {
                Some(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                    let t = now();
                    let rows = app.rows(t);
                    app.ui.on_key(k, rows);
                    redraw = true;
                }
                Some(Event::Resize(..)) => redraw = true,
                Some(_) => {}
                None => break Ok(()),
            },
            ev = rx.recv() => match ev {
                Some(ev) => app.on_source(ev, now()),
                None => break Ok(()),
            },
            _ = ticker.tick() => redraw = app.changed && !app.ui.paused,
        }
        if app.ui.quit {
            break Ok(());
        }
        if redraw {
            app.changed = false;
            let t = now();
            let rows = app.rows(t);
            app.ui.clamp(rows);
            if let Err(e) = terminal.draw(|f| app.draw(f, t)) {
                break Err(e).context("drawing failed");
            }
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    ratatui::restore();
    result
}
