use super::*;
use crate::brain::policy::{Bounds, SloCeiling};
use crate::brain::slo;
use crate::brain::testkit::workload;
use truce_common::estimate::ScoreComponent;
use truce_common::model::WorkloadId;

fn estimate(score_rq: f64) -> InterferenceEstimate {
    InterferenceEstimate {
        workload: WorkloadId(1),
        at: Timestamp(0),
        score: score_rq,
        components: vec![ScoreComponent {
            name: "rq_delay_share".into(),
            value: score_rq,
            baseline: 0.0,
            weight: 1.0,
            contribution: score_rq,
        }],
        unavailable: vec!["cpi_inflation".into()],
        antagonists: Vec::new(),
    }
}

fn forecast(resource: Resource, mean: f64, upper: f64, overload: Option<f64>) -> DemandForecast {
    DemandForecast {
        workload: WorkloadId(1),
        resource,
        at: Timestamp(0),
        horizon_ms: 10_000,
        mean,
        lower: mean * 0.5,
        upper,
        level: 0.9,
        model: "ets".into(),
        mase: Some(0.5),
        overload_probability: overload,
        anomaly: false,
    }
}

struct Case {
    sample: WorkloadSample,
    estimate: InterferenceEstimate,
    forecasts: Vec<DemandForecast>,
    policy: WorkloadPolicy,
    allocation: Option<Allocation>,
    external: Option<f64>,
}

impl Case {
    fn new(on_ms: u64, wait_ms: u64, rq_share: f64) -> Case {
        Case {
            sample: workload(1, "svc", on_ms, wait_ms),
            estimate: estimate(rq_share),
            forecasts: Vec::new(),
            policy: WorkloadPolicy { budget_credits_per_hour: 1000.0, ..WorkloadPolicy::default() },
            allocation: None,
            external: None,
        }
    }

    fn bid(&self) -> Option<Bid> {
        let verdict = slo::check(&self.policy, &self.sample, self.external);
        let input = BidInput {
            sample: &self.sample,
            period_ms: 1000,
            estimate: &self.estimate,
            forecasts: &self.forecasts,
            policy: &self.policy,
            allocation: self.allocation.as_ref(),
            slo: &verdict,
        };
        bid(&BidderParams::default(), &input, BidId(7), Timestamp(5))
    }
}

fn codes(b: &Bid) -> Vec<&str> {
    b.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[test]
fn a_content_workload_does_not_bid() {
    assert_eq!(Case::new(300, 0, 0.0).bid(), None);
}

#[test]
fn cpu_contention_asks_for_the_cpu_lost_to_waiting() {
    let Some(b) = Case::new(500, 500, 0.5).bid() else { panic!("no bid") };
    assert_eq!(b.asks.len(), 1);
    assert_eq!((b.asks[0].resource, b.asks[0].amount), (Resource::Cpu, 500));
    assert!(codes(&b).contains(&"cpu_contention"));
    assert!(!b.slo_breach);
    assert!(b.willingness_to_pay.0 > 0);
}

#[test]
fn slo_breach_sets_the_flag_shortens_the_lease_and_says_why() {
    let mut c = Case::new(300, 50, 0.0);
    c.policy.slo = vec![SloCeiling::ExternalLatency { ceiling_ms: 10.0 }];
    c.external = Some(42.0);
    let Some(b) = c.bid() else { panic!("no bid") };
    assert!(b.slo_breach);
    assert!(codes(&b).contains(&"slo_external_latency"));
    assert!(b.lease_ms < c.policy.lease_ms);
    assert!(!b.asks.is_empty(), "a breach asks for something");
}

#[test]
fn asks_stop_at_the_ceiling() {
    let mut c = Case::new(500, 500, 0.5);
    c.policy.cpu = Bounds { floor: None, ceiling: Some(700) };
    c.allocation = Some(Allocation { entries: vec![(Resource::Cpu, 600)] });
    let Some(b) = c.bid() else { panic!("no bid") };
    assert_eq!(b.asks[0].amount, 100);
}

#[test]
fn surplus_is_released_above_the_floor_and_traded_for_what_is_short() {
    let mut c = Case::new(500, 500, 0.5);
    c.policy.memory = Bounds { floor: Some(600 << 20), ceiling: None };
    c.allocation = Some(Allocation { entries: vec![(Resource::Cpu, 1000), (Resource::Memory, 1 << 30)] });
    c.forecasts = vec![forecast(Resource::Memory, 100e6, 200e6, Some(0.0))];
    let Some(b) = c.bid() else { panic!("no bid") };
    assert_eq!(b.releases.len(), 1);
    // Keeps max(upper × 1.2, floor) = the 600 MiB floor.
    assert_eq!(b.releases[0].amount, (1u64 << 30) - (600 << 20));
    assert_eq!(b.trades.len(), 1);
    let t = &b.trades[0];
    assert_eq!((t.give, t.want), (Resource::Memory, Resource::Cpu));
    assert_eq!(t.give_amount, ((1u64 << 30) as f64 * 0.1) as u64);
    assert!(codes(&b).contains(&"forecast_surplus") && codes(&b).contains(&"trade"));
}

#[test]
fn forecast_overload_asks_for_the_peak_above_the_allocation() {
    let mut c = Case::new(900, 0, 0.0);
    c.allocation = Some(Allocation { entries: vec![(Resource::Cpu, 1000)] });
    c.forecasts = vec![forecast(Resource::Cpu, 950.0, 1400.0, Some(0.6))];
    let Some(b) = c.bid() else { panic!("no bid") };
    assert_eq!((b.asks[0].resource, b.asks[0].amount), (Resource::Cpu, 400));
    assert!(codes(&b).contains(&"forecast_overload"));
}

#[test]
fn willingness_never_exceeds_the_budget() {
    let mut c = Case::new(500, 500, 0.5);
    c.policy.budget_credits_per_hour = 1.0;
    let Some(b) = c.bid() else { panic!("no bid") };
    let cap = Credits::from_credits(1.0 * b.lease_ms as f64 / 3_600_000.0);
    assert!(b.willingness_to_pay <= cap, "{:?} > {cap:?}", b.willingness_to_pay);
    assert!(codes(&b).contains(&"budget_limited"));
    let cost: f64 = b.asks.iter().map(|a| a.amount as f64 * a.max_price * b.lease_ms as f64 / 1000.0).sum();
    assert!((cost - cap.as_credits()).abs() < 1e-6, "scaled prices cost {cost}");
}
