//! The host view's state, built from an agent's `host_history` and `host_view` frames.
//! Pure: frames in, rows, a heat map and sparkline series out.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use truce_common::model::{Decision, Timestamp, WorkloadId};
use truce_common::signal::Unavailable;
use truce_common::wire::{EnforcedLease, HostHistory, HostView};

/// Periods kept per sparkline (5 minutes at 1 s).
pub const SPARK_PERIODS: usize = 300;

/// What the sparklines plot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SparkMetric {
    #[default]
    Score,
    Cpu,
    RqDelay,
}

impl SparkMetric {
    pub fn next(self) -> SparkMetric {
        match self {
            SparkMetric::Score => SparkMetric::Cpu,
            SparkMetric::Cpu => SparkMetric::RqDelay,
            SparkMetric::RqDelay => SparkMetric::Score,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SparkMetric::Score => "score",
            SparkMetric::Cpu => "cpu",
            SparkMetric::RqDelay => "rq delay",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Series {
    name: String,
    score: VecDeque<Option<f32>>,
    cpu: VecDeque<Option<f32>>,
    rq: VecDeque<Option<f32>>,
}

impl Series {
    fn push(&mut self, score: Option<f32>, cpu: Option<f32>, rq: Option<f32>) {
        for (q, v) in [(&mut self.score, score), (&mut self.cpu, cpu), (&mut self.rq, rq)] {
            q.push_back(v);
            while q.len() > SPARK_PERIODS {
                q.pop_front();
            }
        }
    }

    fn get(&self, m: SparkMetric) -> &VecDeque<Option<f32>> {
        match m {
            SparkMetric::Score => &self.score,
            SparkMetric::Cpu => &self.cpu,
            SparkMetric::RqDelay => &self.rq,
        }
    }
}

#[derive(Debug, Default)]
pub struct HostModel {
    view: Option<HostView>,
    series: BTreeMap<WorkloadId, Series>,
    last_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostWorkloadRow {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub score: Option<f64>,
    pub cpu_m: Option<u64>,
    pub rq_delay_pct: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// (name, blame share) of the worst antagonist.
    pub antagonist: Option<(String, f64)>,
    pub explanation: Option<String>,
    /// The sparkline metric's recent values, oldest first.
    pub spark: Vec<Option<f32>>,
}

/// The who-delayed-whom matrix over the attribution window: `wait_ms[victim][delayer]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HeatMap {
    pub names: Vec<String>,
    pub wait_ms: Vec<Vec<Option<f64>>>,
    pub window_periods: u32,
}

impl HostModel {
    pub fn has_view(&self) -> bool {
        self.view.is_some()
    }

    pub fn view(&self) -> Option<&HostView> {
        self.view.as_ref()
    }

    /// Backfill: replaces the series it names (history arrives before the first view).
    pub fn apply_history(&mut self, h: HostHistory) {
        for s in h.series {
            let series = Series {
                name: s.name,
                score: s.score.into_iter().collect(),
                cpu: s.cpu_millicores.into_iter().map(|v| v.map(|m| m as f32)).collect(),
                rq: s.rq_delay_share.iter().map(|v| v.map(|x| x * 100.0)).collect(),
            };
            self.series.insert(s.workload, series);
            self.last_at = Some(self.last_at.map_or(s.end, |t| t.max(s.end)));
        }
    }

    pub fn apply_view(&mut self, v: HostView) {
        // A view already in the backfill is not counted twice.
        if self.last_at.is_none_or(|t| v.at > t) {
            let scores: HashMap<WorkloadId, f64> = v.estimates.iter().map(|e| (e.workload, e.score)).collect();
            let mut seen = Vec::with_capacity(v.workloads.len());
            for w in &v.workloads {
                let s = self.series.entry(w.workload.id).or_default();
                s.name.clone_from(&w.name);
                s.push(
                    scores.get(&w.workload.id).map(|x| *x as f32),
                    w.signals.cpu_millicores.map(|m| m as f32),
                    w.signals.rq_delay_share.map(|x| (x * 100.0) as f32),
                );
                seen.push(w.workload.id);
            }
            for (id, s) in self.series.iter_mut() {
                if !seen.contains(id) {
                    s.push(None, None, None);
                }
            }
            self.series.retain(|_, s| s.score.iter().chain(&s.cpu).any(Option::is_some));
            self.last_at = Some(v.at);
        }
        self.view = Some(v);
    }

    pub fn rows(&self, metric: SparkMetric) -> Vec<HostWorkloadRow> {
        let Some(v) = &self.view else { return Vec::new() };
        let names: HashMap<WorkloadId, &str> = v.matrix.workloads.iter().map(|w| (w.workload, w.name.as_str())).chain(v.workloads.iter().map(|w| (w.workload.id, w.name.as_str()))).collect();
        v.workloads
            .iter()
            .map(|w| {
                let est = v.estimates.iter().find(|e| e.workload == w.workload.id);
                let top = est.and_then(|e| e.antagonists.first());
                HostWorkloadRow {
                    id: w.workload.id.0,
                    name: w.name.clone(),
                    path: w.workload.path.clone(),
                    score: est.map(|e| e.score),
                    cpu_m: w.signals.cpu_millicores,
                    rq_delay_pct: w.signals.rq_delay_share.map(|x| x * 100.0),
                    memory_bytes: w.signals.memory_bytes,
                    antagonist: top.map(|a| (names.get(&a.workload).map_or_else(|| a.workload.to_string(), |n| n.to_string()), a.blame)),
                    explanation: top.map(|a| a.explanation.clone()),
                    spark: self.series.get(&w.workload.id).map(|s| s.get(metric).iter().copied().collect()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The `limit` workloads most involved in delays (as victim or delayer), as a square matrix.
    pub fn heat_map(&self, limit: usize) -> HeatMap {
        let Some(v) = &self.view else { return HeatMap::default() };
        let mut involvement: HashMap<WorkloadId, u64> = HashMap::new();
        for c in &v.matrix.cells {
            *involvement.entry(c.victim).or_default() += c.wait_ns;
            *involvement.entry(c.delayer).or_default() += c.wait_ns;
        }
        let mut ids: Vec<(WorkloadId, u64)> = involvement.into_iter().filter(|(_, w)| *w > 0).collect();
        ids.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ids.truncate(limit);
        let name = |id: WorkloadId| {
            v.matrix.workloads.iter().find(|w| w.workload == id).map(|w| w.name.clone()).unwrap_or_else(|| id.to_string())
        };
        let index: HashMap<WorkloadId, usize> = ids.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        let mut wait_ms = vec![vec![None; ids.len()]; ids.len()];
        for c in &v.matrix.cells {
            if let (Some(&r), Some(&col)) = (index.get(&c.victim), index.get(&c.delayer)) {
                wait_ms[r][col] = Some(c.wait_ns as f64 / 1e6);
            }
        }
        HeatMap { names: ids.iter().map(|(id, _)| name(*id)).collect(), wait_ms, window_periods: v.matrix.window_periods }
    }

    pub fn decisions(&self) -> &[Decision] {
        self.view.as_ref().map_or(&[], |v| &v.decisions)
    }

    pub fn leases(&self) -> &[EnforcedLease] {
        self.view.as_ref().map_or(&[], |v| &v.leases)
    }

    pub fn unavailable(&self) -> &[Unavailable] {
        self.view.as_ref().map_or(&[], |v| &v.unavailable)
    }
}
