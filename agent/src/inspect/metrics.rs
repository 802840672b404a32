//! The agent's Prometheus metrics. The daemon hands each period's figures over; the
//! collector encodes the newest at scrape time, so a workload that vanished leaves no
//! stale series behind. Missing signals have no sample at all, never a zero.

use crate::probes::ProgramRunStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use truce_common::estimate::ScoreComponent;
use truce_common::model::{Resource, WorkloadId};
use truce_common::signal::HostSample;
use truce_common::wire::SignalSummary;

/// One workload's figures for one period.
#[derive(Clone, Debug, Default)]
pub struct WorkloadFigures {
    pub path: String,
    pub name: String,
    pub signals: SignalSummary,
    pub score: Option<f64>,
    pub components: Vec<ScoreComponent>,
    /// (path, name, blame share) of each ranked antagonist.
    pub antagonists: Vec<(String, String, f64)>,
    /// (resource, mean, upper bound) of each demand forecast.
    pub forecasts: Vec<(Resource, f64, f64)>,
}

/// Running totals and the latest period.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub workloads: Vec<WorkloadFigures>,
    pub periods: u64,
    pub reports: u64,
    pub bids: u64,
    /// Decisions by outcome: `applied`, `not_applied`, `observe_only`.
    pub decisions: BTreeMap<&'static str, u64>,
    pub leases_active: u64,
    pub leases_lapsed: u64,
    pub outbox_dropped: u64,
    pub forecast_refits_deferred: u64,
    pub forecast_periods_recorded: u64,
    /// `None` without an arbiter (`observe`).
    pub arbiter_connected: Option<bool>,
    pub probe_errors: BTreeMap<String, u64>,
    /// `None` while the kernel does not count (BPF stats off): reported unavailable, not zero.
    pub run_stats: Option<Vec<ProgramRunStats>>,
}

impl Figures {
    /// Replace the per-workload figures with this period's and add its probe errors.
    pub fn observe(&mut self, sample: &HostSample, round: &crate::brain::Round) {
        let names: HashMap<WorkloadId, (&str, &str)> = sample.workloads.iter().map(|w| (w.workload.id, (w.workload.path.as_str(), w.name.as_str()))).collect();
        let label = |id: WorkloadId| names.get(&id).map_or((String::new(), id.to_string()), |(p, n)| (p.to_string(), n.to_string()));
        self.workloads = sample
            .workloads
            .iter()
            .map(|w| {
                let est = round.estimates.iter().find(|e| e.workload == w.workload.id);
                WorkloadFigures {
                    path: w.workload.path.clone(),
                    name: w.name.clone(),
                    signals: SignalSummary::from_sample(w, sample.period_ms),
                    score: est.map(|e| e.score),
                    components: est.map(|e| e.components.clone()).unwrap_or_default(),
                    antagonists: est
                        .map(|e| e.antagonists.iter().map(|a| {
                            let (p, n) = label(a.workload);
                            (p, n, a.blame)
                        }).collect())
                        .unwrap_or_default(),
                    forecasts: round.forecasts.iter().filter(|f| f.workload == w.workload.id).map(|f| (f.resource, f.mean, f.upper)).collect(),
                }
            })
            .collect();
        self.periods += 1;
        for (probe, n) in &sample.probe_errors {
            *self.probe_errors.entry(probe.clone()).or_default() += n;
        }
    }
}

#[derive(Debug, Clone)]
/// The agent's registry and the figures its collector encodes.
pub struct AgentMetrics {
    registry: Arc<Registry>,
    figures: Arc<Mutex<Figures>>,
}

#[derive(Debug)]
struct AgentCollector {
    figures: Arc<Mutex<Figures>>,
}

impl AgentMetrics {
    /// `probe_names` start the error counters at zero, so a dashboard sees the series before the first error.
    pub fn new(probe_names: &[&str]) -> AgentMetrics {
        let mut figures = Figures::default();
        for p in probe_names {
            figures.probe_errors.insert((*p).to_string(), 0);
        }
        let figures = Arc::new(Mutex::new(figures));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(AgentCollector { figures: figures.clone() }));
        AgentMetrics { registry: Arc::new(registry), figures }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Figures)) {
        f(&mut self.figures.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// A gauge family: every (labels, value) given; the header even when there is none.
fn gauges<'a>(enc: &mut DescriptorEncoder, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels<'a>, f64)>) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ConstGauge::new(0.0f64).metric_type())?;
    for (labels, v) in samples {
        // A label-less sample is written `name value`, not `name{} value`.
        if labels.is_empty() {
            return ConstGauge::new(v).encode(m);
        }
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family (the exposition adds `_total` to each sample's name).
fn counters<'a, V: prometheus_client::encoding::EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, v) in samples {
        if labels.is_empty() {
            return ConstCounter::new(v).encode(m);
        }
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn wl(w: &WorkloadFigures) -> Labels<'_> {
    vec![("workload", w.path.as_str()), ("name", w.name.as_str())]
}

impl Collector for AgentCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = self.figures.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let ws = &f.workloads;
        let e = &mut enc;
        let signal = |get: fn(&SignalSummary) -> Option<f64>| ws.iter().filter_map(move |w| get(&w.signals).map(|v| (wl(w), v)));
        gauges(e, "truce_agent_workload_cpu_millicores", "CPU used over the last period, millicores", signal(|s| s.cpu_millicores.map(|v| v as f64)))?;
        gauges(e, "truce_agent_workload_rq_delay_ratio", "Run-queue wait / (run + wait) over the last period", signal(|s| s.rq_delay_share))?;
        gauges(e, "truce_agent_workload_cpi", "Cycles per instruction (only where a PMU exists)", signal(|s| s.cpi))?;
        gauges(e, "truce_agent_workload_memory_bytes", "memory.current", signal(|s| s.memory_bytes.map(|v| v as f64)))?;
        let io = ws.iter().flat_map(|w| {
            [("read", w.signals.io_read_bps), ("write", w.signals.io_write_bps)]
                .into_iter()
                .filter_map(move |(d, v)| v.map(|v| ([wl(w), vec![("direction", d)]].concat(), v as f64)))
        });
        gauges(e, "truce_agent_workload_io_bytes_per_second", "Block I/O over the last period", io)?;
        let net = ws.iter().flat_map(|w| {
            [("rx", w.signals.net_rx_bps), ("tx", w.signals.net_tx_bps)]
                .into_iter()
                .filter_map(move |(d, v)| v.map(|v| ([wl(w), vec![("direction", d)]].concat(), v as f64)))
        });
        gauges(e, "truce_agent_workload_net_bytes_per_second", "Network traffic over the last period", net)?;
        let psi = ws.iter().flat_map(|w| {
            [("cpu", w.signals.psi_cpu_some_avg10), ("memory", w.signals.psi_memory_some_avg10), ("io", w.signals.psi_io_some_avg10)]
                .into_iter()
                .filter_map(move |(r, v)| v.map(|v| ([wl(w), vec![("resource", r)]].concat(), v)))
        });
        gauges(e, "truce_agent_workload_psi_some_avg10", "PSI some avg10 of the cgroup, percent", psi)?;
        gauges(e, "truce_agent_workload_interference_score", "Interference score (sum of the component contributions)", ws.iter().filter_map(|w| w.score.map(|s| (wl(w), s))))?;
        let contributions = ws.iter().flat_map(|w| w.components.iter().map(move |c| ([wl(w), vec![("component", c.name.as_str())]].concat(), c.contribution)));
        gauges(e, "truce_agent_workload_interference_contribution", "One component's contribution to the interference score", contributions)?;
        let values = ws.iter().flat_map(|w| w.components.iter().map(move |c| ([wl(w), vec![("component", c.name.as_str())]].concat(), c.value)));
        gauges(e, "truce_agent_workload_interference_signal", "A score component's measured value this period", values)?;
        let baselines = ws.iter().flat_map(|w| w.components.iter().map(move |c| ([wl(w), vec![("component", c.name.as_str())]].concat(), c.baseline)));
        gauges(e, "truce_agent_workload_interference_baseline", "A score component's learned uncontended baseline", baselines)?;
        let blame = ws.iter().flat_map(|w| {
            w.antagonists.iter().map(move |(p, n, b)| ([wl(w), vec![("antagonist", p.as_str()), ("antagonist_name", n.as_str())]].concat(), *b))
        });
        gauges(e, "truce_agent_workload_antagonist_blame", "Share of the workload's slowdown blamed on a neighbour, 0..1", blame)?;
        let resources: Vec<Vec<String>> = ws.iter().map(|w| w.forecasts.iter().map(|(r, _, _)| r.to_string()).collect()).collect();
        let forecasts = ws.iter().zip(&resources).flat_map(|(w, names)| {
            w.forecasts.iter().zip(names).flat_map(move |((_, mean, upper), r)| {
                [("mean", *mean), ("upper", *upper)].into_iter().map(move |(b, v)| ([wl(w), vec![("resource", r.as_str()), ("bound", b)]].concat(), v))
            })
        });
        gauges(e, "truce_agent_workload_demand_forecast", "Forecast demand over the horizon, in the resource's unit", forecasts)?;
        gauges(e, "truce_agent_workloads", "Workloads (cgroups) observed in the last period", [(vec![], ws.len() as f64)])?;

        counters(e, "truce_agent_periods", "Collection periods completed", [(vec![], f.periods)])?;
        counters(e, "truce_agent_reports", "Reports queued for the arbiter", [(vec![], f.reports)])?;
        counters(e, "truce_agent_bids", "Bids queued for the arbiter", [(vec![], f.bids)])?;
        counters(e, "truce_agent_decisions", "Decisions received, by outcome", f.decisions.iter().map(|(o, n)| (vec![("outcome", *o)], *n)))?;
        gauges(e, "truce_agent_leases", "Leases enforced now", [(vec![], f.leases_active as f64)])?;
        counters(e, "truce_agent_leases_lapsed", "Leases that lapsed without renewal and were reverted", [(vec![], f.leases_lapsed)])?;
        counters(e, "truce_agent_outbox_dropped", "Messages dropped because the arbiter outbox was full", [(vec![], f.outbox_dropped)])?;
        counters(e, "truce_agent_forecast_refits_deferred", "Costly forecast refits that waited for the forecaster's CPU budget (forecast.cpu_share)", [(vec![], f.forecast_refits_deferred)])?;
        counters(e, "truce_agent_forecast_periods_recorded", "Periods the forecaster only recorded, without forecasting, its CPU budget spent (forecast.cpu_share)", [(vec![], f.forecast_periods_recorded)])?;
        gauges(e, "truce_agent_arbiter_connected", "1 while a session to an arbiter is open", f.arbiter_connected.map(|c| (vec![], f64::from(u8::from(c)))))?;
        counters(e, "truce_agent_probe_errors", "Failures counted inside the eBPF probes, by kind, and runs the kernel skipped (skipped_<program>)", f.probe_errors.iter().map(|(p, n)| (vec![("probe", p.as_str())], *n)))?;
        gauges(e, "truce_agent_probe_run_stats_available", "1 when the kernel counts probe run time (BPF stats on)", [(vec![], f64::from(u8::from(f.run_stats.is_some())))])?;
        let stats = f.run_stats.as_deref().unwrap_or_default();
        counters(e, "truce_agent_probe_run_time_seconds", "Time the kernel spent in each probe program (only while BPF stats are on)", stats.iter().map(|s| (vec![("program", s.program.as_str())], s.run_time_ns as f64 / 1e9)))?;
        counters(e, "truce_agent_probe_runs", "Runs of each probe program (only while BPF stats are on)", stats.iter().map(|s| (vec![("program", s.program.as_str())], s.run_count)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::metrics::parse_exposition;

    fn text(m: &AgentMetrics) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &m.registry()).expect("encode");
        s
    }

    #[test]
    fn missing_signals_and_stats_have_no_sample_not_a_zero() {
        let m = AgentMetrics::new(&["sched_stats_update"]);
        m.update(|f| {
            f.workloads = vec![WorkloadFigures { path: "/a".into(), name: "a".into(), signals: SignalSummary { cpu_millicores: Some(5), ..Default::default() }, ..Default::default() }];
            f.run_stats = None;
        });
        let t = text(&m);
        let s = parse_exposition(&t).expect("parses");
        let has = |n: &str| s.iter().any(|x| x.name == n);
        assert!(has("truce_agent_workload_cpu_millicores"));
        assert!(!has("truce_agent_workload_cpi"), "no PMU: no CPI sample\n{t}");
        assert!(!has("truce_agent_workload_interference_score"), "no estimate yet: no score");
        assert!(!has("truce_agent_probe_run_time_seconds_total"), "stats off: unavailable, not zero");
        assert_eq!(s.iter().find(|x| x.name == "truce_agent_probe_run_stats_available").map(|x| x.value), Some(0.0));
        assert_eq!(s.iter().find(|x| x.name == "truce_agent_probe_errors_total").map(|x| x.value), Some(0.0));
        assert!(t.contains("\ntruce_agent_workloads 1.0\n"), "label-less samples carry no braces:\n{t}");
        assert!(!has("truce_agent_arbiter_connected"), "observe has no arbiter");
    }
}
