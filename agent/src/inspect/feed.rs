//! What the agent shows `truce top --agent`: each period's [`HostView`] and a rolling
//! history per workload for the sparklines. Pure: the daemon hands it the period's sample
//! and the core's conclusions; time is the sample's.

use crate::brain::Round;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use truce_common::model::{HostId, Timestamp, WorkloadId};
use truce_common::signal::{HostSample, Unavailable};
use truce_common::wire::{Decisions, EnforcedLease, HostHistory, HostView, SignalSummary, WorkloadSeries, WorkloadSummary};

/// Periods of history kept per workload (5 minutes at the default 1 s period).
pub const HISTORY_PERIODS: usize = 300;
/// Decisions kept for the view, newest first.
pub const DECISIONS_KEPT: usize = 32;
/// Workloads in one view; the least interfered beyond this are counted in `omitted`, so a
/// host with thousands of cgroups still fits in one frame.
pub const VIEW_WORKLOADS: usize = 200;
/// Workloads per history frame (each carries up to three series of [`HISTORY_PERIODS`]).
pub const HISTORY_PER_FRAME: usize = 64;

/// One period of a series: score, CPU millicores, run-queue delay share.
type Slot = (Option<f64>, Option<u64>, Option<f64>);

#[derive(Clone, Debug)]
struct Series {
    name: String,
    score: VecDeque<Option<f32>>,
    cpu_millicores: VecDeque<Option<u32>>,
    rq_delay_share: VecDeque<Option<f32>>,
}

impl Series {
    fn blank(name: &str, slots: usize) -> Series {
        Series {
            name: name.to_string(),
            score: std::iter::repeat_n(None, slots).collect(),
            cpu_millicores: std::iter::repeat_n(None, slots).collect(),
            rq_delay_share: std::iter::repeat_n(None, slots).collect(),
        }
    }

    fn push(&mut self, len: usize, score: Option<f64>, cpu: Option<u64>, rq: Option<f64>) {
        self.score.push_back(score.map(|v| v as f32));
        self.cpu_millicores.push_back(cpu.map(|v| v.min(u64::from(u32::MAX)) as u32));
        self.rq_delay_share.push_back(rq.map(|v| v as f32));
        for q in [&mut self.score, &mut self.rq_delay_share] {
            while q.len() > len {
                q.pop_front();
            }
        }
        while self.cpu_millicores.len() > len {
            self.cpu_millicores.pop_front();
        }
    }

    fn is_empty(&self) -> bool {
        self.score.iter().all(Option::is_none) && self.cpu_millicores.iter().all(Option::is_none)
    }
}

#[derive(Debug)]
pub struct HostFeed {
    host: HostId,
    history_len: usize,
    period_ms: u64,
    end: Timestamp,
    /// Periods observed so far.
    periods: usize,
    series: BTreeMap<WorkloadId, Series>,
    decisions: VecDeque<truce_common::model::Decision>,
    arbiter: String,
    /// Signals nobody can measure here, and why (fixed at start, plus what the daemon adds).
    unavailable: Vec<Unavailable>,
}

impl HostFeed {
    pub fn new(host: HostId, history_len: usize) -> HostFeed {
        HostFeed {
            host,
            history_len: history_len.max(1),
            period_ms: 0,
            end: Timestamp(0),
            periods: 0,
            series: BTreeMap::new(),
            decisions: VecDeque::new(),
            arbiter: String::new(),
            unavailable: Vec::new(),
        }
    }

    pub fn host(&self) -> &HostId {
        &self.host
    }

    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Signals this feed reports as unavailable besides the sample's own (e.g. probe run time).
    pub fn set_unavailable(&mut self, extra: Vec<Unavailable>) {
        self.unavailable = extra;
    }

    pub fn set_arbiter(&mut self, state: String) {
        self.arbiter = state;
    }

    pub fn decisions(&mut self, d: &Decisions) {
        for decision in &d.decisions {
            self.decisions.push_front(decision.clone());
        }
        self.decisions.truncate(DECISIONS_KEPT);
    }

    /// Add one period and build its view.
    pub fn observe(&mut self, sample: &HostSample, round: &Round, leases: Vec<EnforcedLease>) -> HostView {
        self.period_ms = sample.period_ms;
        self.end = sample.at;
        let scores: HashMap<WorkloadId, f64> = round.estimates.iter().map(|e| (e.workload, e.score)).collect();
        let mut summaries: Vec<(Option<f64>, WorkloadSummary)> = sample
            .workloads
            .iter()
            .map(|w| {
                let summary = WorkloadSummary { workload: w.workload.clone(), name: w.name.clone(), signals: SignalSummary::from_sample(w, sample.period_ms) };
                (scores.get(&w.workload.id).copied(), summary)
            })
            .collect();

        // Every series gets one slot per period, so they stay aligned on `end`.
        let len = self.history_len;
        let earlier = self.periods.min(len);
        let mut values: HashMap<WorkloadId, Slot> = HashMap::new();
        for (score, s) in &summaries {
            let series = self.series.entry(s.workload.id).or_insert_with(|| Series::blank(&s.name, earlier));
            series.name.clone_from(&s.name);
            values.insert(s.workload.id, (*score, s.signals.cpu_millicores, s.signals.rq_delay_share));
        }
        for (id, series) in self.series.iter_mut() {
            let (score, cpu, rq) = values.get(id).copied().unwrap_or((None, None, None));
            series.push(len, score, cpu, rq);
        }
        self.series.retain(|_, s| !s.is_empty());
        self.periods += 1;

        // Most interfered first; the view keeps the top VIEW_WORKLOADS.
        summaries.sort_by(|a, b| b.0.unwrap_or(0.0).total_cmp(&a.0.unwrap_or(0.0)).then_with(|| a.1.name.cmp(&b.1.name)));
        let omitted = summaries.len().saturating_sub(VIEW_WORKLOADS);
        summaries.truncate(VIEW_WORKLOADS);
        let kept: BTreeSet<WorkloadId> = summaries.iter().map(|(_, s)| s.workload.id).collect();
        let mut matrix = round.matrix.clone();
        matrix.cells.retain(|c| kept.contains(&c.victim));
        let named: BTreeSet<WorkloadId> = matrix.cells.iter().flat_map(|c| [c.victim, c.delayer]).chain(kept.iter().copied()).collect();
        matrix.workloads.retain(|w| named.contains(&w.workload));
        let mut unavailable = sample.unavailable.clone();
        unavailable.extend(self.unavailable.iter().cloned());
        HostView {
            host: self.host.clone(),
            at: sample.at,
            period_ms: sample.period_ms,
            workloads: summaries.into_iter().map(|(_, s)| s).collect(),
            estimates: round.estimates.iter().filter(|e| kept.contains(&e.workload)).cloned().collect(),
            matrix,
            forecasts: round.forecasts.iter().filter(|f| kept.contains(&f.workload)).cloned().collect(),
            leases,
            decisions: self.decisions.iter().cloned().collect(),
            arbiter: self.arbiter.clone(),
            unavailable,
            omitted: omitted as u32,
        }
    }

    /// The history as frames of at most `per_frame` workloads, most interfered (by latest
    /// score) first.
    pub fn history(&self, per_frame: usize) -> Vec<HostHistory> {
        let mut all: Vec<(&WorkloadId, &Series)> = self.series.iter().collect();
        let last = |s: &Series| s.score.back().copied().flatten().unwrap_or(0.0);
        all.sort_by(|a, b| last(b.1).total_cmp(&last(a.1)));
        all.chunks(per_frame.max(1))
            .map(|chunk| HostHistory {
                host: self.host.clone(),
                period_ms: self.period_ms,
                series: chunk
                    .iter()
                    .map(|(id, s)| WorkloadSeries {
                        workload: **id,
                        name: s.name.clone(),
                        end: self.end,
                        score: s.score.iter().copied().collect(),
                        cpu_millicores: s.cpu_millicores.iter().copied().collect(),
                        rq_delay_share: s.rq_delay_share.iter().copied().collect(),
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::testkit::{host, workload};
    use crate::brain::{Brain, BrainParams, RoundInputs};
    use truce_common::signal::DelayCell;

    fn run(feed: &mut HostFeed, brain: &mut Brain, t: u64, with_late: bool) -> HostView {
        let mut ws = vec![workload(10, "burner", 950, 10), workload(11, "victim", 300, 600)];
        if with_late {
            let mut late = workload(12, "late", 100, 0);
            // SignalSummary reads CPU from cpu.stat, which the testkit leaves out.
            late.files.cpu_usage_us = Some(100_000);
            ws.push(late);
        }
        let sample = host(t, ws, vec![DelayCell { victim: 11, delayer: 10, wait_ns: 550_000_000, count: 40 }]);
        let round = brain.observe(&sample, &RoundInputs::default());
        feed.observe(&sample, &round, Vec::new())
    }

    #[test]
    fn views_carry_the_matrix_and_history_stays_aligned() {
        let mut feed = HostFeed::new(HostId("h".into()), 5);
        let mut brain = Brain::new(BrainParams::default(), 1);
        let mut view = None;
        for t in 0..8 {
            view = Some(run(&mut feed, &mut brain, t, t >= 6));
        }
        let view = view.expect("a view");
        assert_eq!(view.workloads.len(), 3);
        assert!(view.matrix.cells.iter().any(|c| c.victim == WorkloadId(11) && c.delayer == WorkloadId(10) && c.wait_ns > 0));
        let history = feed.history(2);
        assert_eq!(history.len(), 2, "three workloads in frames of two");
        let series: Vec<&WorkloadSeries> = history.iter().flat_map(|h| &h.series).collect();
        assert!(series.iter().all(|s| s.score.len() == 5 && s.cpu_millicores.len() == 5), "capped and aligned");
        let late = series.iter().find(|s| s.name == "late").expect("late series");
        assert_eq!(late.cpu_millicores[..3], [None, None, None], "absent periods are gaps, not zeros");
        assert_eq!(late.cpu_millicores[4], Some(100));
    }

    #[test]
    fn decisions_are_kept_newest_first_and_bounded() {
        use truce_common::model::*;
        let mut feed = HostFeed::new(HostId("h".into()), 5);
        let d = |id: u64| Decision {
            id: DecisionId(id),
            round: id,
            workload: WorkloadRef { id: WorkloadId(1), path: "/a".into() },
            lease: Lease { id: LeaseId(id), holder: WorkloadId(1), lender: Lender::Pool, resource: Resource::Cpu, amount: 1, price: 0.0, start: Timestamp(0), expiry: Timestamp(1) },
            setting: Setting::CpuWeight { weight: 100 },
            caused_by: vec![],
            reasons: vec![],
        };
        for id in 0..40 {
            feed.decisions(&Decisions { round: id, at: Timestamp(0), decisions: vec![d(id)] });
        }
        assert_eq!(feed.decisions.len(), DECISIONS_KEPT);
        assert_eq!(feed.decisions.front().map(|d| d.id), Some(DecisionId(39)));
    }
}
