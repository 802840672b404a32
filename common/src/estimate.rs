//! What the agent's pure core concludes: interference estimates, antagonists and forecasts.
//! Carried in reports to the arbiter and shown by `observe` and `truce top`.

use crate::model::{Resource, Timestamp, WorkloadId};
use serde::{Deserialize, Serialize};

/// One explained part of an interference score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreComponent {
    /// Stable name: `rq_delay_share`, `cpi_inflation`, `io_latency_inflation`, `psi_cpu_some`, ...
    pub name: String,
    /// This period's value.
    pub value: f64,
    /// The workload's learned uncontended baseline for it.
    pub baseline: f64,
    pub weight: f64,
    /// weight × slowdown against the baseline; the score is the sum of contributions.
    pub contribution: f64,
}

/// A neighbour blamed for part of a victim's slowdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Antagonist {
    pub workload: WorkloadId,
    /// Share of the victim's attributed slowdown, 0..=1.
    pub blame: f64,
    /// Run-queue wait the kernel credited to this neighbour over the window.
    pub kernel_wait_ns: u64,
    /// Lagged correlation of the neighbour's usage with the victim's slowdown, where computed.
    pub correlation: Option<f64>,
    pub explanation: String,
}

/// How much a workload is slowed, why, and by whom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterferenceEstimate {
    pub workload: WorkloadId,
    pub at: Timestamp,
    /// Sum of the available components' contributions; unavailable components are left out.
    pub score: f64,
    pub components: Vec<ScoreComponent>,
    /// Components that could not be computed (for example `cpi_inflation` without a PMU).
    pub unavailable: Vec<String>,
    /// Ranked, worst first.
    pub antagonists: Vec<Antagonist>,
}

/// A demand forecast for one workload and resource, with an interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemandForecast {
    pub workload: WorkloadId,
    pub resource: Resource,
    pub at: Timestamp,
    pub horizon_ms: u64,
    /// In the resource's unit (millicores, bytes, bytes/s).
    pub mean: f64,
    pub lower: f64,
    pub upper: f64,
    /// Interval coverage, for example 0.9.
    pub level: f64,
    /// The model serving this series (lowest rolling MASE).
    pub model: String,
    pub mase: Option<f64>,
    /// Probability that demand exceeds the current allocation within the horizon.
    pub overload_probability: Option<f64>,
    pub anomaly: bool,
}

/// A workload named in an [`InterferenceMatrix`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixWorkload {
    pub workload: WorkloadId,
    pub name: String,
}

/// One victim × delayer cell of the interference matrix, over the attribution window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixCell {
    pub victim: WorkloadId,
    pub delayer: WorkloadId,
    /// Run-queue wait the kernel credited to `delayer` while `victim` waited.
    pub wait_ns: u64,
    /// The delayer's blame share in the victim's ranking (0 when not ranked).
    pub blame: f64,
}

/// Who hurts whom on one host: the live view for `observe` and `truce top`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InterferenceMatrix {
    pub at: Timestamp,
    /// Periods the cells sum over.
    pub window_periods: u32,
    pub workloads: Vec<MatrixWorkload>,
    /// Non-empty cells only, sorted by victim then descending wait.
    pub cells: Vec<MatrixCell>,
}
