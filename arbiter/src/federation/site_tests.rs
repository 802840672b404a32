//! Three sites in memory, messages delivered at once: proposals, weighted votes, the watch.

use super::*;
use crate::federation::forecast::ForecastModel;
use crate::federation::vote::{VoteRules, tally};
use truce_common::model::{WorkloadId, WorkloadRef};

/// Deterministic jitter in [-1, 1].
fn jitter(i: u64, salt: u64) -> f64 {
    let x = (i.wrapping_mul(6364136223846793005).wrapping_add(salt.wrapping_mul(1442695040888963407))) >> 33;
    (x % 2001) as f64 / 1000.0 - 1.0
}

fn config(name: &str, model: ForecastModel) -> SiteConfig {
    SiteConfig { name: name.into(), period_ms: 1000, history: 40, horizon_steps: 5, model, cooldown_periods: 100, watch_periods: 4, ..SiteConfig::default() }
}

fn workloads(site: &str) -> Vec<MigrationWorkload> {
    (1..=3u64)
        .map(|i| MigrationWorkload { workload: WorkloadRef { id: WorkloadId(i), path: format!("/{site}/w{i}") }, demand: 0.1 * i as f64, criticality: if site == "a" { i as u8 } else { 1 }, pod: None })
        .collect()
}

struct World {
    sites: Vec<Site>,
    orders: Vec<(String, MigrationOrder)>,
    published: Vec<(String, FederationMessage)>,
    /// Utilisation removed from a-1 by a migration (what the executor achieved).
    moved: f64,
    effective: bool,
}

impl World {
    fn new(c_model: ForecastModel) -> World {
        let names = ["a", "b", "c"].map(String::from);
        let models = [ForecastModel::default(), ForecastModel::default(), c_model];
        let sites = names.iter().zip(models).map(|(n, m)| Site::new(config(n, m), names.clone())).collect();
        World { sites, orders: Vec::new(), published: Vec::new(), moved: 0.0, effective: true }
    }

    fn utilisation(&self, site: usize, i: u64) -> f64 {
        let noise = 0.01 * jitter(i, site as u64);
        match site {
            // a rises towards overload
            0 => 0.45 + 0.012 * i as f64 + noise - self.moved,
            1 => 0.30 + noise,
            // c rises slowly: easy for Holt, hard for the mean
            _ => 0.10 + 0.006 * i as f64 + noise,
        }
    }

    fn step(&mut self, i: u64) {
        let at = Timestamp(i * 1000);
        let mut queue = Vec::new();
        for s in 0..3 {
            let name = self.sites[s].name().to_string();
            let obs = vec![HostObservation { host: HostId(format!("{name}-1")), utilisation: self.utilisation(s, i), workloads: workloads(&name) }];
            let actions = self.sites[s].period(at, obs);
            queue.extend(actions.into_iter().map(|a| (name.clone(), a)));
        }
        while let Some((from, action)) = queue.pop() {
            match action {
                Action::Broadcast(msg) => {
                    for s in &mut self.sites {
                        if s.name() != from {
                            let to = s.name().to_string();
                            queue.extend(s.handle(&from, msg.clone(), at).into_iter().map(|a| (to.clone(), a)));
                        }
                    }
                }
                Action::Send { to, msg } => {
                    if let Some(s) = self.sites.iter_mut().find(|s| s.name() == to) {
                        queue.extend(s.handle(&from, msg, at).into_iter().map(|a| (to.clone(), a)));
                    }
                }
                Action::Execute(order) => {
                    if order.role == OrderRole::Source && order.action == OrderAction::Migrate && self.effective {
                        self.moved += order.proposal.workloads.iter().map(|w| w.demand).sum::<f64>();
                    }
                    if order.role == OrderRole::Source && order.action == OrderAction::Rollback {
                        self.moved = 0.0;
                    }
                    self.orders.push((from, order));
                }
                Action::Publish(msg) => self.published.push((from, msg)),
            }
        }
    }

    fn first_tally(&self) -> Option<&VoteTally> {
        self.sites[0].tallies().first()
    }
}

fn run(c_model: ForecastModel, effective: bool, periods: u64) -> World {
    let mut w = World::new(c_model);
    w.effective = effective;
    for i in 0..periods {
        w.step(i);
    }
    w
}

#[test]
fn accurate_sites_agree_and_the_migration_is_confirmed() {
    let w = run(ForecastModel::default(), true, 40);
    let t = w.first_tally().expect("a proposed and tallied");
    assert_eq!(t.proposal.destination, "b", "b's host has the most room");
    assert!(t.votes.iter().all(|v| v.vote.approve), "{t:#?}");
    assert!(t.passed);
    let kinds: Vec<_> = w.orders.iter().map(|(site, o)| (site.as_str(), o.role, o.action)).collect();
    assert!(kinds.contains(&("a", OrderRole::Source, OrderAction::Migrate)), "{kinds:?}");
    assert!(kinds.contains(&("b", OrderRole::Destination, OrderAction::Migrate)), "{kinds:?}");
    assert!(kinds.contains(&("a", OrderRole::Source, OrderAction::Confirm)), "{kinds:?}");
    assert!(kinds.contains(&("b", OrderRole::Destination, OrderAction::Confirm)), "{kinds:?}");
}

#[test]
fn a_poor_forecaster_loses_weight_and_is_outvoted() {
    let good = run(ForecastModel::default(), true, 40);
    let poor = run(ForecastModel::Mean, true, 40);
    let (tg, tp) = (good.first_tally().expect("tally"), poor.first_tally().expect("tally"));
    let weight = |t: &VoteTally, site: &str| t.votes.iter().find(|v| v.vote.voter == site).map(|v| (v.weight, v.mase, v.vote.approve)).expect("voted");
    let (c_good, c_poor, b_poor) = (weight(tg, "c"), weight(tp, "c"), weight(tp, "b"));
    assert!(c_good.2 && !c_poor.2, "with the mean, c misjudges the rising host: {c_poor:?}");
    assert!(c_poor.1.expect("measured") > 3.0 * c_good.1.expect("measured"), "c's MASE rises: good {c_good:?} poor {c_poor:?}");
    assert!(c_poor.0 < c_good.0 / 3.0 && c_poor.0 < b_poor.0 / 3.0, "its weight drops: {c_poor:?} vs b {b_poor:?}");
    assert!(tp.passed, "b's approval outweighs c's rejection: share {}", tp.share);
    // The same ballots counted with equal accuracy tie (b's workloads are no more critical
    // than c's), and a tie does not pass: the accuracy weights decided the outcome.
    let equal: Vec<_> = tp.votes.iter().map(|v| (v.vote.clone(), Some(1.0))).collect();
    assert!(!tally(&VoteRules::default(), &tp.proposal, equal, vec![], tp.at).passed);
}

#[test]
fn a_migration_without_gain_is_rolled_back_and_an_alternative_proposed() {
    let w = run(ForecastModel::default(), false, 40);
    let verdict = w.published.iter().find_map(|(site, m)| match m {
        FederationMessage::Verdict { verdict, .. } if site == "a" => Some(verdict.clone()),
        _ => None,
    });
    let Some(MigrationVerdict::Alternative { next, .. }) = verdict else { panic!("expected an alternative: {verdict:?}") };
    let second = w.sites[0].tallies().iter().find(|t| t.proposal.id == next).expect("the alternative was voted on");
    assert_eq!(second.proposal.destination, "c", "the alternative goes elsewhere");
    assert_eq!(second.proposal.alternative_to, w.first_tally().map(|t| t.proposal.id.clone()));
    assert!(w.orders.iter().any(|(s, o)| s == "a" && o.action == OrderAction::Rollback));
    assert!(w.orders.iter().any(|(s, o)| s == "b" && o.action == OrderAction::Rollback && o.role == OrderRole::Destination));
}

#[test]
fn messages_from_strangers_or_impostors_are_ignored() {
    let mut s = Site::new(config("a", ForecastModel::default()), ["a".to_string(), "b".to_string()]);
    let status = SiteStatus { site: "b".into(), at: Timestamp(0), hosts: vec![] };
    assert!(s.handle("x", FederationMessage::Status(status.clone()), Timestamp(0)).is_empty());
    assert!(s.handle("b", FederationMessage::Status(SiteStatus { site: "c".into(), ..status }), Timestamp(0)).is_empty());
}
