//! Contention onset between periods. The daemon arms PSI triggers on the workloads it may
//! enforce and samples at once when one fires, instead of up to a period later: at a 500 ms
//! period, waiting for the tick is most of the time from onset to a decision.
//!
//! A trigger fires once per window for as long as the stall lasts, so a firing counts as an
//! onset only for a workload whose 10 s PSI average was still below the threshold at the last
//! sample, and whose same trigger had not fired within [`QUIET`] before; a workload already
//! known to be contended is left to the regular period. The second rule catches what the
//! average misses: a stall that hovers around the threshold (an I/O-bound workload waiting for
//! CPU now and then, a neighbour of the agent's own sampling burst) keeps its average under
//! 10 % and fired every window or two, each firing an early sample and its follow-ups (bench
//! mitigation, session 10: 60–82 samples in 30 periods). Early samples are also spaced by
//! `min_gap`, so pressure cannot make the agent sample faster than that however many triggers
//! fire.

use crate::cgroupfs::{PressureTrigger, TriggerEvent};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use truce_common::signal::{HostSample, Pressure, PsiSignals};

/// The kernel's resource files a trigger is armed on, by the name logs use.
const FILES: [(&str, &str); 3] = [("cpu", "cpu.pressure"), ("memory", "memory.pressure"), ("io", "io.pressure")];

#[derive(Clone, Debug)]
pub struct OnsetParams {
    /// Stall within `window` that fires a trigger.
    pub stall: Duration,
    pub window: Duration,
    /// At most this many cgroups armed (each costs the kernel a poller).
    pub max_cgroups: usize,
}

impl Default for OnsetParams {
    fn default() -> OnsetParams {
        // 10 % of the kernel's shortest window: a victim waiting a tenth of the time.
        OnsetParams { stall: Duration::from_millis(50), window: Duration::from_millis(500), max_cgroups: 64 }
    }
}

/// A trigger that fired again within this long of its last firing is the same contention,
/// not an onset: four of the kernel's shortest (500 ms) windows.
pub const QUIET: Duration = Duration::from_secs(2);

/// A trigger that fired: which cgroup, which resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    pub cgroup: PathBuf,
    pub resource: &'static str,
}

pub struct OnsetWatch {
    params: OnsetParams,
    armed: HashMap<PathBuf, Vec<JoinHandle<()>>>,
    /// Per armed cgroup and resource, its `some avg10` at the last sample (percent).
    avg10: HashMap<(PathBuf, &'static str), f64>,
    /// When each cgroup's trigger per resource last fired, onset or not.
    last_fired: LastFired,
    tx: mpsc::Sender<Fired>,
    rx: mpsc::Receiver<Fired>,
    /// Whether arming failed for a reason every cgroup shares (logged once).
    warned: bool,
}

impl OnsetWatch {
    pub fn new(params: OnsetParams) -> OnsetWatch {
        let (tx, rx) = mpsc::channel(64);
        OnsetWatch { params, armed: HashMap::new(), avg10: HashMap::new(), last_fired: LastFired::default(), tx, rx, warned: false }
    }

    /// Arm the enforce `roots` and the managed cgroups in `sample` that are not yet armed, drop
    /// the ones gone, and remember each one's pressure for the onset filter.
    ///
    /// A root's pressure covers every cgroup under it, including one that has no task yet
    /// and so is not in `sample`: an antagonist usually arrives as a new cgroup (a container
    /// starting), and its stall then fires the root's trigger at once instead of waiting for
    /// the sample that first sees it. Roots come first, so the cap never leaves them out.
    pub fn reconcile(&mut self, sample: &HostSample, mount: &std::path::Path, roots: &[String], managed: impl Fn(&str) -> bool) {
        let mut keep = Vec::new();
        self.avg10.clear();
        for root in roots {
            let dir = mount.join(root.trim_start_matches('/'));
            // Unreadable: armed anyway, and counted as quiet (its trigger fails to arm too,
            // if the directory is gone, and that is logged once below).
            self.remember(&dir, &crate::cgroupfs::read_pressure(&dir).unwrap_or_default());
            keep.push(dir);
        }
        for w in sample.workloads.iter().filter(|w| managed(&w.workload.path)) {
            let dir = mount.join(w.workload.path.trim_start_matches('/'));
            self.remember(&dir, &w.psi);
            keep.push(dir);
        }
        self.armed.retain(|dir, tasks| {
            let stay = keep.contains(dir);
            if !stay {
                tasks.iter().for_each(JoinHandle::abort);
            }
            stay
        });
        // Cgroups come and go (containers): forget the firings of the ones no longer kept.
        self.last_fired.retain(|dir| keep.contains(dir));
        let before = self.armed.len();
        for dir in keep {
            if self.armed.contains_key(&dir) || self.armed.len() >= self.params.max_cgroups {
                continue;
            }
            let tasks = self.arm(&dir);
            tracing::debug!(cgroup = %dir.display(), triggers = tasks.len(), "PSI triggers armed");
            self.armed.insert(dir, tasks);
        }
        if self.armed.len() != before {
            tracing::info!(cgroups = self.armed.len(), "watching managed workloads' pressure for contention onsets");
        }
    }

    /// Keep `dir`'s `some avg10` per resource for the onset filter (absent counts as quiet).
    fn remember(&mut self, dir: &std::path::Path, psi: &PsiSignals) {
        for (name, p) in [("cpu", &psi.cpu), ("memory", &psi.memory), ("io", &psi.io)] {
            self.avg10.insert((dir.to_path_buf(), name), p.as_ref().map_or(0.0, |p: &Pressure| p.some_avg10));
        }
    }

    fn arm(&mut self, dir: &std::path::Path) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (resource, file) in FILES {
            let trigger = match PressureTrigger::arm(&dir.join(file), self.params.stall, self.params.window) {
                Ok(t) => t,
                Err(e) => {
                    // Without a trigger this cgroup is still sampled every period.
                    if !self.warned {
                        tracing::warn!(cause = %crate::probes::error_chain(&e), "no PSI trigger: contention is seen at the next period only");
                        self.warned = true;
                    }
                    continue;
                }
            };
            let tx = self.tx.clone();
            let cgroup = dir.to_path_buf();
            tasks.push(tokio::spawn(async move {
                loop {
                    match trigger.next().await {
                        Ok(TriggerEvent::Fired) => {
                            // Full queue: an early sample is already due.
                            let _ = tx.try_send(Fired { cgroup: cgroup.clone(), resource });
                        }
                        Ok(TriggerEvent::Gone) => break,
                        Err(e) => {
                            tracing::debug!(cause = %crate::probes::error_chain(&e), "PSI trigger stopped");
                            break;
                        }
                    }
                }
            }));
        }
        tasks
    }

    /// The next firing that counts as an onset (see the module docs).
    pub async fn onset(&mut self) -> Fired {
        loop {
            let Some(f) = self.rx.recv().await else { return std::future::pending().await };
            let key = (f.cgroup.clone(), f.resource);
            let before = self.avg10.get(&key).copied().unwrap_or(0.0);
            let quiet = self.last_fired.quiet_before(key, std::time::Instant::now());
            if quiet && is_onset(before, self.params.stall, self.params.window) {
                return f;
            }
            // Debug, not trace: a firing passed over here is what a slow reaction looks like
            // from outside (the sample then waits for the period), so a traced run must show it.
            // At most one line per trigger per window (500 ms).
            tracing::debug!(cgroup = %f.cgroup.display(), resource = f.resource, avg10 = before, quiet, "PSI trigger fired on a workload already contended");
        }
    }

}

impl Drop for OnsetWatch {
    fn drop(&mut self) {
        self.armed.values().flatten().for_each(JoinHandle::abort);
    }
}

/// The last firing of each trigger (cgroup, resource), for [`QUIET`].
#[derive(Debug, Default)]
struct LastFired(HashMap<(PathBuf, &'static str), std::time::Instant>);

impl LastFired {
    /// Record a firing at `now`; true when this trigger had not fired within [`QUIET`] before.
    /// Every firing counts, so a trigger that keeps firing stays "not quiet" for as long as
    /// it does.
    fn quiet_before(&mut self, key: (PathBuf, &'static str), now: std::time::Instant) -> bool {
        self.0.insert(key, now).is_none_or(|last| now.saturating_duration_since(last) >= QUIET)
    }

    /// Keep only the cgroups `keep` says are still watched.
    fn retain(&mut self, keep: impl Fn(&PathBuf) -> bool) {
        self.0.retain(|(dir, _), _| keep(dir));
    }
}

/// After an onset the daemon keeps sampling at the short gap until a sample makes it ask for
/// something, at most [`FollowUps::AFTER_ONSET`] times. The first early sample can come
/// when the stall is only tens of ms old, too little for the estimator to name a cause; going
/// back to the regular period then cost a whole period (bench reaction, session 5: with
/// triggers but no follow-ups the p50 was 837 ms against 538 ms without triggers).
#[derive(Debug, Default)]
pub struct FollowUps {
    left: u8,
}

impl FollowUps {
    pub const AFTER_ONSET: u8 = 3;

    pub fn onset(&mut self) {
        self.left = Self::AFTER_ONSET;
    }

    /// After a sample: whether the next one comes at the short gap. `asked` is whether this
    /// sample produced a bid that asks for a resource.
    pub fn after_sample(&mut self, asked: bool) -> bool {
        if asked || self.left == 0 {
            self.left = 0;
            return false;
        }
        self.left -= 1;
        true
    }
}

/// How close an early sample (an onset, or a follow-up after one) may come to the previous
/// sample: a quarter period, between 50 and 125 ms. The floor bounds what a victim's triggers
/// can cost in quiet periods; the ceiling keeps a long period from delaying an onset: at the
/// shipped 1 s period a quarter is 250 ms, and an onset that fired soon after a regular sample
/// waited for it (bench reaction, session 9: first write 251 ms at the median against 175 ms
/// at a 500 ms period in the same boot).
pub fn early_gap(period: Duration) -> Duration {
    (period / 4).clamp(Duration::from_millis(50), Duration::from_millis(125))
}

/// A firing is an onset when the cgroup's 10 s average (percent) was below the trigger's own
/// share of its window: it was not already known to be contended.
pub fn is_onset(avg10_before: f64, stall: Duration, window: Duration) -> bool {
    avg10_before < 100.0 * stall.as_secs_f64() / window.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_early_gap_is_a_quarter_period_between_50_and_125_ms() {
        let ms = Duration::from_millis;
        assert_eq!(early_gap(ms(100)), ms(50));
        assert_eq!(early_gap(ms(400)), ms(100));
        assert_eq!(early_gap(ms(1000)), ms(125));
        assert_eq!(early_gap(ms(10_000)), ms(125));
    }

    #[test]
    fn follow_ups_stop_at_the_first_ask_or_after_three_samples() {
        let mut f = FollowUps::default();
        assert!(!f.after_sample(false), "no onset, no follow-up");
        f.onset();
        assert!(f.after_sample(false));
        assert!(!f.after_sample(true), "an ask ends the burst");
        assert!(!f.after_sample(false));
        f.onset();
        assert_eq!((0..5).map(|_| f.after_sample(false)).collect::<Vec<_>>(), [true, true, true, false, false]);
    }

    #[test]
    fn a_trigger_that_keeps_firing_is_an_onset_only_after_a_quiet_spell() {
        let t0 = std::time::Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let key = || (PathBuf::from("/sys/fs/cgroup/w/io-hog"), "cpu");
        let mut last = LastFired::default();
        assert!(last.quiet_before(key(), at(0)), "a first firing is an onset");
        assert!(!last.quiet_before(key(), at(600)), "again a window later: the same contention");
        assert!(!last.quiet_before(key(), at(2_500)), "each firing renews it");
        assert!(last.quiet_before((PathBuf::from("/sys/fs/cgroup/w/victim"), "cpu"), at(2_600)), "another cgroup is its own");
        assert!(last.quiet_before(key(), at(4_500)), "two seconds without a firing: an onset again");
        last.retain(|dir| dir.ends_with("victim"));
        assert!(last.quiet_before(key(), at(4_600)), "a forgotten cgroup starts afresh");
        assert_eq!(last.0.len(), 2, "the victim's entry and the new one");
    }

    #[test]
    fn a_workload_already_contended_is_not_an_onset() {
        let (stall, window) = (Duration::from_millis(50), Duration::from_millis(500));
        assert!(is_onset(0.0, stall, window));
        assert!(is_onset(9.9, stall, window));
        assert!(!is_onset(10.0, stall, window));
        assert!(!is_onset(80.0, stall, window));
    }
}
