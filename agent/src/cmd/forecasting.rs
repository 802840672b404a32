//! The forecaster off the control loop. Refitting the augurs models costs tens of ms per series
//! on hardware and ten times that under emulation; run inline, one refit delayed every sample,
//! bid and decision behind it. Here the daemon hands each sample to a background thread at a low
//! CPU priority and bids with the newest forecasts that thread has finished: at most a period
//! or two old, which a forecast over a 10-period horizon tolerates. Interference is still
//! estimated and bid on in the period it shows up.

use super::cpu_cost::thread_cpu_time;
use crate::brain::forecast::{CpuBudget, Effort};
use crate::brain::{Allocation, Forecaster, ForecasterParams};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use truce_common::estimate::DemandForecast;
use truce_common::model::WorkloadId;
use truce_common::signal::{HostSample, WorkloadSample};

/// Samples waiting for the forecaster. A full queue drops the newest sample (a gap in the
/// history, counted and logged) rather than stalling the control loop.
const QUEUE: usize = 8;
/// The thread's nice value: work-conserving, it yields to every workload and to the loop.
const NICE: libc::c_int = 10;
/// How often a forecaster that stays over its CPU budget says so.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

type Job = (HostSample, HashMap<WorkloadId, Allocation>);

pub struct ForecastWorker {
    jobs: Option<SyncSender<Job>>,
    latest: Arc<Mutex<Vec<DemandForecast>>>,
    /// Periods left out because the thread was behind (logged with each drop).
    dropped: AtomicU64,
    /// Costly refits that waited for the CPU budget (see [`CpuBudget`]).
    deferred: Arc<AtomicU64>,
    /// Periods only recorded, the CPU budget spent.
    recorded: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ForecastWorker {
    /// `cpu_share`: the forecaster's CPU budget as a share of one CPU, measured on its own
    /// thread (`forecast.cpu_share` in agent.toml).
    pub fn start(params: ForecasterParams, cpu_share: f64) -> std::io::Result<ForecastWorker> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let latest = Arc::new(Mutex::new(Vec::new()));
        let out = latest.clone();
        let deferred = Arc::new(AtomicU64::new(0));
        let deferred_out = deferred.clone();
        let recorded = Arc::new(AtomicU64::new(0));
        let recorded_out = recorded.clone();
        let thread = std::thread::Builder::new().name("truce-forecast".into()).spawn(move || {
            // SAFETY: setpriority(2) on this thread's own id; no memory is passed.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, NICE) } != 0 {
                tracing::warn!(cause = %std::io::Error::last_os_error(), "forecaster keeps the daemon's CPU priority");
            }
            let mut forecaster = Forecaster::new(params);
            let mut budget = CpuBudget::new(cpu_share);
            let origin = std::time::Instant::now();
            let mut warned = false;
            // Over budget is the steady state where the cheap models alone cost more than the
            // share (under emulation): said once a minute with the counts, not per period.
            let mut told: Option<std::time::Instant> = None;
            while let Ok((sample, allocations)) = rx.recv() {
                let effort = budget.effort(origin.elapsed());
                let within_budget = effort != Effort::Record;
                let (before, refits_before) = (thread_cpu_time(), forecaster.refits_run());
                let forecasts = forecaster.observe_within(&sample, &allocations, effort);
                match (before, thread_cpu_time()) {
                    (Some(b), Some(a)) => budget.charge(a.saturating_sub(b), forecaster.refits_run() - refits_before),
                    // Without a thread clock there is nothing to charge: the budget cannot
                    // hold and says so once.
                    _ if !warned => {
                        warned = true;
                        tracing::warn!("no thread CPU clock: the forecaster's CPU budget cannot be enforced");
                    }
                    _ => {}
                }
                let total = forecaster.deferred_refits();
                deferred_out.store(total, Ordering::Relaxed);
                if !within_budget {
                    let recorded = recorded_out.fetch_add(1, Ordering::Relaxed) + 1;
                    if told.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        told = Some(std::time::Instant::now());
                        tracing::info!(cpu_share, recorded, deferred = total, "forecaster over its CPU budget: periods are recorded without forecasting, the last forecasts serve");
                    }
                }
                *out.lock().unwrap_or_else(|p| p.into_inner()) = forecasts;
            }
        })?;
        Ok(ForecastWorker { jobs: Some(tx), latest, dropped: AtomicU64::new(0), deferred, recorded, thread: Some(thread) })
    }

    /// Costly refits that waited for the CPU budget so far.
    pub fn deferred_refits(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }

    /// Periods only recorded so far, the CPU budget spent.
    pub fn periods_recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Queue one period of the workloads `keep` selects for the forecaster; never blocks.
    /// Forecasts only feed bids (an overload ask on an allocation), and the agent bids only
    /// for the workloads it may change: forecasting the rest would be refits nobody reads.
    pub fn submit(&self, sample: &HostSample, allocations: &HashMap<WorkloadId, Allocation>, keep: impl Fn(&WorkloadSample) -> bool) {
        let Some(jobs) = &self.jobs else { return };
        // Only what `Forecaster::observe` reads: the time, the period and the kept workloads.
        let kept = HostSample {
            at: sample.at,
            period_ms: sample.period_ms,
            totals: sample.totals.clone(),
            workloads: sample.workloads.iter().filter(|w| keep(w)).cloned().collect(),
            delays: Vec::new(),
            probe_errors: Vec::new(),
            unavailable: Vec::new(),
        };
        match jobs.try_send((kept, allocations.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(dropped = n, "forecaster is behind: this period is left out of its history");
            }
            Err(TrySendError::Disconnected(_)) => tracing::error!("forecaster thread is gone: forecasts are stale"),
        }
    }

    /// The newest finished forecasts (empty until the first period is through).
    pub fn latest(&self) -> Vec<DemandForecast> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for ForecastWorker {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::testkit::{host, workload};
    use std::time::{Duration, Instant};

    #[test]
    fn forecasts_come_back_from_the_thread_without_blocking_the_caller() {
        let params = ForecasterParams { horizon: 4, season: 12, history: 48, refit_every: 8, min_evaluations: 2, models: vec![crate::brain::ModelKind::Ewma], ..Default::default() };
        let worker = ForecastWorker::start(params, 1.0).expect("thread");
        for t in 0..12 {
            worker.submit(&host(t, vec![workload(1, "a", 500, 0), workload(2, "b", 900, 0)], vec![]), &HashMap::new(), |w| w.workload.id == WorkloadId(1));
            // The budget is paid in wall time: periods submitted back to back would be recorded.
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            got = worker.latest();
        }
        let cpu = got.iter().find(|f| f.resource == truce_common::model::Resource::Cpu).expect("a CPU forecast");
        assert!((cpu.mean - 500.0).abs() < 50.0, "{cpu:?}");
        assert!(got.iter().all(|f| f.workload == WorkloadId(1)), "a workload left out was forecast: {got:?}");
    }
}
