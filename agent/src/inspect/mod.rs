//! Inspection: what the agent sees, shown to operators. The host view and its recent
//! history go to `truce top --agent` over a root-only unix socket ([`socket`]); Prometheus
//! metrics go to `/metrics` ([`metrics`]). [`Telemetry`] is the one handle the daemon feeds.

pub mod feed;
pub mod frames;
pub mod metrics;
pub mod socket;

use crate::brain::Round;
use crate::enforce::LeaseTable;
use crate::probes::{ProgramRunStats, RunStatsGuard, counting_by_sysctl, enable_run_stats};
use crate::transport::ConnectionState;
use feed::{HISTORY_PERIODS, HostFeed};
use metrics::AgentMetrics;
use socket::{InspectSocket, SocketError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use truce_common::metrics::{MetricsError, MetricsServer};
use truce_common::model::HostId;
use truce_common::signal::{HostSample, Unavailable};
use truce_common::wire::{Decisions, EnforcedLease, HostView};

#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    /// The unix socket for `truce top --agent`; `None` serves none.
    pub socket: Option<PathBuf>,
    /// Where to serve `/metrics`; `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// Turn kernel BPF run-time stats on while the agent runs (two clock reads per probe run).
    pub probe_run_time: bool,
}

/// Command-line overrides of the `[inspect]` and `[metrics]` settings.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TelemetryArgs {
    /// Serve Prometheus /metrics on this address (overrides `metrics.listen` and enables it).
    #[arg(long, env = "TRUCE_AGENT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the host view for `truce top --agent` on this unix socket (overrides `inspect.socket`).
    #[arg(long, env = "TRUCE_AGENT_SOCKET")]
    pub inspect_socket: Option<PathBuf>,
    /// Turn on kernel BPF run-time stats for the probe metrics (overrides `metrics.probe_run_time`).
    #[arg(long)]
    pub probe_run_time: bool,
}

impl TelemetryArgs {
    pub fn apply(&self, cfg: &mut TelemetryConfig) {
        if let Some(a) = self.metrics_listen {
            cfg.metrics_listen = Some(a);
        }
        if let Some(p) = &self.inspect_socket {
            cfg.socket = Some(p.clone());
        }
        cfg.probe_run_time |= self.probe_run_time;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot serve inspect.socket")]
    Socket {
        #[source]
        source: SocketError,
    },
    #[error("cannot serve metrics.listen")]
    Metrics {
        #[source]
        source: MetricsError,
    },
}

/// One period, as the daemon hands it over.
pub struct Period<'a> {
    pub sample: &'a HostSample,
    pub round: &'a Round,
    /// What the agent enforces now.
    pub leases: Vec<EnforcedLease>,
    pub run_stats: Vec<ProgramRunStats>,
    /// Messages queued for the arbiter this period.
    pub reports: u64,
    pub bids: u64,
    pub outbox_dropped: u64,
    /// Costly forecast refits that waited for the forecaster's CPU budget, since start.
    pub forecast_refits_deferred: u64,
    /// Periods the forecaster only recorded (its CPU budget spent), since start.
    pub forecast_periods_recorded: u64,
}

pub struct Telemetry {
    feed: Arc<Mutex<HostFeed>>,
    views: watch::Sender<Option<Arc<HostView>>>,
    socket: Option<InspectSocket>,
    metrics: Option<(AgentMetrics, MetricsServer)>,
    stats_guard: Option<RunStatsGuard>,
    stats_refused: Option<String>,
    last_down: String,
    cancel: CancellationToken,
}

impl Telemetry {
    /// Serve what `cfg` asks for. An endpoint that cannot be served (a socket another agent
    /// holds, a port in use) is left out and returned with the reason: the caller decides
    /// whether that is fatal (the daemon logs it and keeps enforcing; leases matter more).
    pub async fn start(cfg: &TelemetryConfig, host: HostId, cancel: &CancellationToken) -> (Telemetry, Vec<TelemetryError>) {
        let cancel = cancel.child_token();
        let feed = Arc::new(Mutex::new(HostFeed::new(host, HISTORY_PERIODS)));
        let (views, rx) = watch::channel(None);
        let mut problems = Vec::new();
        let socket = match &cfg.socket {
            Some(path) => match InspectSocket::bind(path, feed.clone(), rx, cancel.clone()) {
                Ok(s) => Some(s),
                Err(source) => {
                    problems.push(TelemetryError::Socket { source });
                    None
                }
            },
            None => None,
        };
        let metrics = match cfg.metrics_listen {
            Some(addr) => {
                let m = AgentMetrics::new(&truce_common::abi::probe_error::NAMES);
                match MetricsServer::bind(addr, m.registry(), cancel.clone()).await {
                    Ok(server) => Some((m, server)),
                    Err(source) => {
                        problems.push(TelemetryError::Metrics { source });
                        None
                    }
                }
            }
            None => None,
        };
        let (stats_guard, stats_refused) = if cfg.probe_run_time {
            match enable_run_stats() {
                Ok(g) => (Some(g), None),
                Err(reason) => {
                    tracing::warn!(%reason, "probe run time unavailable");
                    (None, Some(reason))
                }
            }
        } else {
            (None, None)
        };
        (Telemetry { feed, views, socket, metrics, stats_guard, stats_refused, last_down: String::new(), cancel }, problems)
    }

    /// The `/metrics` address actually bound (port 0 picks one).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, s)| s.local_addr())
    }

    fn run_time_unavailable(&self) -> Option<String> {
        if self.stats_guard.is_some() || counting_by_sysctl() {
            return None;
        }
        Some(self.stats_refused.clone().unwrap_or_else(|| {
            "kernel BPF stats are off (metrics.probe_run_time = true, or sysctl kernel.bpf_stats_enabled=1)".into()
        }))
    }

    /// Whether [`Period::run_stats`] is shown anywhere: `/metrics` is served and the kernel
    /// counts the probes' run time.
    pub fn wants_run_stats(&self) -> bool {
        self.metrics.is_some() && self.run_time_unavailable().is_none()
    }

    pub fn period(&mut self, p: Period<'_>) {
        let unavailable = self.run_time_unavailable();
        if let Some((m, _)) = &self.metrics {
            m.update(|f| {
                f.observe(p.sample, p.round);
                f.reports += p.reports;
                f.bids += p.bids;
                f.outbox_dropped = p.outbox_dropped;
                f.forecast_refits_deferred = p.forecast_refits_deferred;
                f.forecast_periods_recorded = p.forecast_periods_recorded;
                f.leases_active = p.leases.len() as u64;
                f.run_stats = unavailable.is_none().then(|| p.run_stats.clone());
            });
        }
        if self.socket.is_some() {
            let view = {
                let mut feed = self.feed.lock().unwrap_or_else(|e| e.into_inner());
                feed.set_unavailable(unavailable.into_iter().map(|reason| Unavailable { signal: "probe run time".into(), reason }).collect());
                feed.observe(p.sample, p.round, p.leases)
            };
            self.views.send_replace(Some(Arc::new(view)));
        }
    }

    /// Decisions received; `outcome` is `applied`, `not_applied` or `observe_only`, counted per decision.
    pub fn decisions(&mut self, d: &Decisions, outcomes: &[(&'static str, u64)]) {
        if let Some((m, _)) = &self.metrics {
            m.update(|f| {
                for (o, n) in outcomes {
                    *f.decisions.entry(o).or_default() += n;
                }
            });
        }
        self.feed.lock().unwrap_or_else(|e| e.into_inner()).decisions(d);
    }

    pub fn lapsed(&mut self, n: usize) {
        if let Some((m, _)) = &self.metrics {
            m.update(|f| f.leases_lapsed += n as u64);
        }
    }

    pub fn connection(&mut self, s: &ConnectionState) {
        let (text, up) = match s {
            ConnectionState::Connected { endpoint, session, version } => (format!("connected to {endpoint} ({session}, protocol v{version})"), true),
            ConnectionState::Disconnected { endpoint, reason } => {
                self.last_down = format!("down: {endpoint}: {reason}");
                (self.last_down.clone(), false)
            }
            ConnectionState::Backoff { delay, next } => (format!("{}; retrying {next} in {:.1}s", self.last_down, delay.as_secs_f64()), false),
        };
        if let Some((m, _)) = &self.metrics {
            m.update(|f| f.arbiter_connected = Some(up));
        }
        self.feed.lock().unwrap_or_else(|e| e.into_inner()).set_arbiter(text);
    }

    /// Stop serving; removes the socket file.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Some(s) = self.socket {
            s.shutdown().await;
        }
        if let Some((_, server)) = self.metrics {
            server.join().await;
        }
        drop(self.stats_guard);
    }
}

/// The enforcer's live leases, as the host view shows them.
pub fn enforced(table: &LeaseTable) -> Vec<EnforcedLease> {
    table
        .iter()
        .map(|l| EnforcedLease { lease: l.id, cgroup: l.cgroup.clone(), setting: l.setting.clone(), start: l.start, expiry: l.expiry, decision: l.decision })
        .collect()
}
