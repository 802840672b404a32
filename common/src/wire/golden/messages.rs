//! The sample messages the fixtures pin: one (or a few) of every type, built from shared parts.

use crate::estimate::{Antagonist, DemandForecast, InterferenceEstimate, ScoreComponent};
use crate::model::*;
use crate::wire::*;

fn workload() -> WorkloadRef {
    WorkloadRef { id: WorkloadId(4242), path: "/system.slice/db.service".into() }
}

fn lease() -> Lease {
    Lease {
        id: LeaseId(77),
        holder: WorkloadId(4242),
        lender: Lender::Pool,
        resource: Resource::Cpu,
        amount: 500,
        price: 0.25,
        start: Timestamp(1_700_000_000_000),
        expiry: Timestamp(1_700_000_030_000),
    }
}

pub(in crate::wire) fn bid() -> Bid {
    Bid {
        id: BidId(9),
        workload: workload(),
        at: Timestamp(1_700_000_000_000),
        asks: vec![Ask { resource: Resource::Cpu, amount: 500, max_price: 0.5 }],
        releases: vec![Release { resource: Resource::Io { dev: DeviceId { major: 8, minor: 0 } }, amount: 1 << 20, min_price: 0.125 }],
        trades: vec![TradeOffer { give: Resource::Memory, give_amount: 1 << 30, want: Resource::Cpu, want_amount: 250 }],
        willingness_to_pay: Credits(1_500_000),
        priority: 3,
        slo_breach: true,
        lease_ms: 30_000,
        reasons: vec![Reason { code: "rq_delay".into(), detail: "run-queue wait 40% of runnable time".into() }],
    }
}

fn decision() -> Decision {
    Decision {
        id: DecisionId(1),
        round: 12,
        workload: workload(),
        lease: lease(),
        setting: Setting::CpuMax { millicores: 1500, period_us: 100_000 },
        caused_by: vec![BidId(9)],
        reasons: vec![Reason { code: "granted".into(), detail: "pool had 500m".into() }],
    }
}

fn estimate() -> InterferenceEstimate {
    InterferenceEstimate {
        workload: WorkloadId(4242),
        at: Timestamp(1_700_000_000_000),
        score: 0.75,
        components: vec![ScoreComponent { name: "rq_delay_share".into(), value: 0.5, baseline: 0.125, weight: 1.0, contribution: 0.75 }],
        unavailable: vec!["cpi_inflation".into()],
        antagonists: vec![Antagonist { workload: WorkloadId(99), blame: 0.875, kernel_wait_ns: 123_456, correlation: None, explanation: "preempted the victim".into() }],
    }
}

fn forecast() -> DemandForecast {
    DemandForecast {
        workload: WorkloadId(4242),
        resource: Resource::Memory,
        at: Timestamp(1_700_000_000_000),
        horizon_ms: 60_000,
        mean: 1024.0,
        lower: 512.0,
        upper: 2048.0,
        level: 0.9,
        model: "ets".into(),
        mase: Some(0.5),
        overload_probability: None,
        anomaly: false,
    }
}

fn signals() -> SignalSummary {
    SignalSummary { cpu_millicores: Some(750), rq_delay_share: Some(0.25), memory_bytes: Some(1 << 28), ..Default::default() }
}

fn proposal() -> MigrationProposal {
    MigrationProposal {
        id: ProposalId { site: "site-a".into(), seq: 3 },
        destination: "site-b".into(),
        priority: 7,
        host: host(),
        overload_probability: 0.875,
        overload_level: 0.875,
        threshold: 0.5,
        history: vec![0.5, 0.625, 0.75],
        horizon_steps: 5,
        workloads: vec![MigrationWorkload {
            workload: workload(),
            demand: 0.25,
            criticality: 2,
            pod: Some(PodRef { namespace: "shop".into(), name: "db-0".into() }),
        }],
        at: Timestamp(1_700_000_000_000),
        alternative_to: None,
    }
}

fn vote() -> MigrationVote {
    MigrationVote {
        proposal: ProposalId { site: "site-a".into(), seq: 3 },
        voter: "site-c".into(),
        approve: false,
        judged_probability: 0.25,
        criticality: 1,
        reason: "my model puts node-a at 0.7".into(),
    }
}

fn host() -> HostId {
    HostId("node-a".into())
}

fn host_view() -> HostView {
    let at = Timestamp(1_700_000_000_000);
    HostView {
        host: host(),
        at,
        period_ms: 1000,
        workloads: vec![WorkloadSummary { workload: workload(), name: "db.service".into(), signals: signals() }],
        estimates: vec![estimate()],
        matrix: crate::estimate::InterferenceMatrix {
            at,
            window_periods: 30,
            workloads: vec![crate::estimate::MatrixWorkload { workload: WorkloadId(4242), name: "db.service".into() }],
            cells: vec![crate::estimate::MatrixCell { victim: WorkloadId(4242), delayer: WorkloadId(99), wait_ns: 123_456, blame: 0.875 }],
        },
        forecasts: vec![forecast()],
        leases: vec![EnforcedLease {
            lease: LeaseId(77),
            cgroup: "/system.slice/db.service".into(),
            setting: Setting::CpuMax { millicores: 1500, period_us: 100_000 },
            start: at,
            expiry: at.plus_ms(30_000),
            decision: DecisionId(1),
        }],
        decisions: vec![decision()],
        arbiter: "connected to 127.0.0.1:7447 (s5)".into(),
        unavailable: vec![crate::signal::Unavailable { signal: "perf (CPI, LLC misses)".into(), reason: "no PMU".into() }],
        omitted: 0,
    }
}

fn host_history() -> HostHistory {
    HostHistory {
        host: host(),
        period_ms: 1000,
        series: vec![WorkloadSeries {
            workload: WorkloadId(4242),
            name: "db.service".into(),
            end: Timestamp(1_700_000_000_000),
            score: vec![None, Some(0.5), Some(0.75)],
            cpu_millicores: vec![None, Some(750), Some(800)],
            rq_delay_share: vec![None, Some(0.25), Some(0.5)],
        }],
    }
}

pub(super) fn samples() -> Vec<(&'static str, Message)> {
    let at = Timestamp(1_700_000_000_000);
    vec![
        ("hello", Message::Hello(Hello { min: 1, max: 1, host: host(), capabilities: vec!["inspect".into()] })),
        ("welcome", Message::Welcome(Welcome { version: 1, session: SessionId(5), host: host(), round_ms: 1000 })),
        ("unsupported_version", Message::UnsupportedVersion(UnsupportedVersion { supported_min: 1, supported_max: 1 })),
        (
            "report",
            Message::Report(Report {
                seq: 3,
                host: host(),
                at,
                period_ms: 1000,
                workloads: vec![WorkloadReport {
                    workload: workload(),
                    name: "db.service".into(),
                    signals: signals(),
                    estimate: Some(estimate()),
                    forecasts: vec![forecast()],
                }],
                inventory: None,
            }),
        ),
        (
            "report_with_inventory",
            Message::Report(Report {
                seq: 4,
                host: host(),
                at,
                period_ms: 1000,
                workloads: vec![],
                inventory: Some(Inventory {
                    capacity: vec![Capacity { resource: Resource::Cpu, amount: 2000 }, Capacity { resource: Resource::Memory, amount: 1 << 30 }],
                    managed: vec![ManagedWorkload {
                        workload: workload(),
                        priority: 50,
                        bounds: vec![ResourceBounds { resource: Resource::Cpu, floor: Some(200), ceiling: None }],
                        usage: vec![],
                    }],
                }),
            }),
        ),
        (
            // Usage came after the inventory: its own fixture, so the one above still pins the
            // encoding an agent without it sends.
            "report_with_usage",
            Message::Report(Report {
                seq: 5,
                host: host(),
                at,
                period_ms: 1000,
                workloads: vec![],
                inventory: Some(Inventory {
                    capacity: vec![Capacity { resource: Resource::Cpu, amount: 2000 }],
                    managed: vec![ManagedWorkload {
                        workload: workload(),
                        priority: 1,
                        bounds: vec![],
                        usage: vec![Capacity { resource: Resource::Cpu, amount: 350 }, Capacity { resource: Resource::Memory, amount: 64 << 20 }],
                    }],
                }),
            }),
        ),
        ("bid", Message::Bid(bid())),
        ("bids", Message::Bids(Bids { bids: vec![bid(), Bid { id: BidId(10), slo_breach: false, reasons: vec![], ..bid() }] })),
        ("decisions", Message::Decisions(Decisions { round: 12, at, decisions: vec![decision()] })),
        ("lease_renew", Message::LeaseRenew(LeaseRenew { seq: 4, lease: LeaseId(77), extend_ms: 30_000 })),
        ("lease_release", Message::LeaseRelease(LeaseRelease { seq: 5, lease: LeaseId(77) })),
        ("ack", Message::Ack(Ack { seq: 3 })),
        ("error", Message::Error(ErrorMessage { seq: Some(9), code: ErrorCode::FOREIGN_WORKLOAD, message: "workload cg4242 belongs to host node-b".into() })),
        ("subscribe", Message::Subscribe(Subscribe { seq: 6, filter: InspectFilter { hosts: vec![host()], kinds: vec![InspectKind::Bids, InspectKind::Leases] } })),
        ("inspect_hosts", Message::Inspect(InspectEvent::Hosts { at, hosts: vec![HostSnapshot { host: host(), session: SessionId(5), connected_at: at, workloads: 2 }] })),
        ("inspect_workloads", Message::Inspect(InspectEvent::Workloads { host: host(), at, workloads: vec![WorkloadSummary { workload: workload(), name: "db.service".into(), signals: signals() }] })),
        ("inspect_estimates", Message::Inspect(InspectEvent::Estimates { host: host(), at, estimates: vec![estimate()] })),
        ("inspect_bids", Message::Inspect(InspectEvent::Bids { host: host(), bids: vec![bid()] })),
        ("inspect_prices", Message::Inspect(InspectEvent::Prices { host: host(), at, prices: vec![Price { resource: Resource::Net, price: 0.0625 }] })),
        ("inspect_leases", Message::Inspect(InspectEvent::Leases { host: host(), at, leases: vec![lease()] })),
        (
            "federation_status",
            Message::Federation(FederationMessage::Status(SiteStatus {
                site: "site-a".into(),
                at,
                hosts: vec![HostForecast { host: host(), utilisation: 0.75, forecast_mean: 0.875, forecast_sigma: 0.0625, horizon_ms: 5000, overload_probability: 0.5, criticality: 3 }],
            })),
        ),
        ("federation_proposal", Message::Federation(FederationMessage::Proposal(proposal()))),
        ("federation_vote", Message::Federation(FederationMessage::Vote(vote()))),
        (
            "federation_tally",
            Message::Federation(FederationMessage::Tally(VoteTally {
                proposal: proposal(),
                votes: vec![CountedVote { vote: vote(), mase: Some(4.0), accuracy_weight: 0.25, criticality_weight: 1.0, weight: 0.25 }],
                missing: vec!["site-d".into()],
                approve_weight: 0.0,
                total_weight: 0.25,
                share: 0.0,
                pass_share: 0.5,
                passed: false,
                at,
            })),
        ),
        (
            "federation_verdict",
            Message::Federation(FederationMessage::Verdict {
                proposal: ProposalId { site: "site-a".into(), seq: 3 },
                at,
                verdict: MigrationVerdict::Alternative { gain: 0.0625, expected: 0.25, next: ProposalId { site: "site-a".into(), seq: 4 } },
            }),
        ),
        ("raft", Message::Raft(RaftFrame { seq: 8, kind: RaftKind::AppendEntries, body: vec![0x80, 0x01, 0xff] })),
        ("redirect", Message::Redirect(Redirect { leader: Some("127.0.0.1:7447".into()), reason: "replica 2 is a follower; leader is 1".into() })),
        (
            "cluster_request",
            Message::ClusterRequest(ClusterRequest {
                seq: 1,
                op: ClusterOp::Add { member: ClusterMember { id: 4, name: "arbiter-4".into(), raft_addr: "10.0.0.4:7448".into(), agent_addr: "10.0.0.4:7447".into(), voter: false } },
            }),
        ),
        (
            "cluster_status",
            Message::ClusterStatus(ClusterStatus {
                seq: 1,
                id: 2,
                leader: Some(1),
                term: 3,
                last_log_index: Some(120),
                last_applied: Some(119),
                members: vec![ClusterMember { id: 1, name: "arbiter-1".into(), raft_addr: "10.0.0.1:7448".into(), agent_addr: "10.0.0.1:7447".into(), voter: true }],
                error: None,
            }),
        ),
        ("inspect_decisions", Message::Inspect(InspectEvent::Decisions { host: host(), round: 12, decisions: vec![decision()] })),
        ("inspect_forecasts", Message::Inspect(InspectEvent::Forecasts { host: host(), at, forecasts: vec![forecast()] })),
        (
            "inspect_accounts",
            Message::Inspect(InspectEvent::Accounts { host: host(), at, accounts: vec![Account { workload: WorkloadId(4242), credits: Credits(2_500_000), reputation: 40 }] }),
        ),
        ("host_view", Message::HostView(host_view())),
        ("host_history", Message::HostHistory(host_history())),
        ("inspect_federation", Message::Inspect(InspectEvent::Federation { site: "site-a".into(), at, message: Box::new(FederationMessage::Vote(vote())) })),
    ]
}
