//! Renders through ratatui's TestBackend: what a terminal would show, asserted as text.

use crate::top::app::App;
use crate::top::model::Connection;
use crate::top::source::SourceEvent;
use crate::top::state::ViewKind;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use truce_common::estimate::{Antagonist, DemandForecast, InterferenceEstimate, InterferenceMatrix, MatrixCell, MatrixWorkload, ScoreComponent};
use truce_common::model::*;
use truce_common::wire::*;

const T0: u64 = 1_700_000_000_000;
const VICTIM: u64 = 11;
const BURNER: u64 = 10;

fn wl(id: u64, name: &str) -> WorkloadRef {
    WorkloadRef { id: WorkloadId(id), path: format!("/truce.slice/{name}") }
}

fn summary(id: u64, name: &str, cpu: u64, rq: f64) -> WorkloadSummary {
    WorkloadSummary { workload: wl(id, name), name: name.into(), signals: SignalSummary { cpu_millicores: Some(cpu), rq_delay_share: Some(rq), memory_bytes: Some(64 << 20), ..Default::default() } }
}

fn estimate(id: u64, score: f64, antagonist: Option<u64>) -> InterferenceEstimate {
    InterferenceEstimate {
        workload: WorkloadId(id),
        at: Timestamp(T0),
        score,
        components: vec![ScoreComponent { name: "rq_delay_share".into(), value: 0.6, baseline: 0.05, weight: 1.0, contribution: score }],
        unavailable: vec!["cpi_inflation".into()],
        antagonists: antagonist
            .map(|a| Antagonist { workload: WorkloadId(a), blame: 0.9, kernel_wait_ns: 4_000_000_000, correlation: Some(0.8), explanation: "held the CPU while the victim waited".into() })
            .into_iter()
            .collect(),
    }
}

fn decision(id: u64) -> Decision {
    Decision {
        id: DecisionId(id),
        round: 3,
        workload: wl(BURNER, "burner"),
        lease: Lease { id: LeaseId(id), holder: WorkloadId(BURNER), lender: Lender::Pool, resource: Resource::Cpu, amount: 300, price: 0.002, start: Timestamp(T0), expiry: Timestamp(T0 + 30_000) },
        setting: Setting::CpuMax { millicores: 300, period_us: 100_000 },
        caused_by: vec![BidId(7)],
        reasons: vec![Reason { code: "yield_to_victim".into(), detail: "burner delays victim 90%".into() }],
    }
}

fn cluster_app() -> App {
    let host = HostId("node-a".into());
    let at = Timestamp(T0);
    let mut app = App::new(ViewKind::Cluster, "127.0.0.1:7447".into());
    let events = vec![
        InspectEvent::Hosts { at, hosts: vec![HostSnapshot { host: host.clone(), session: SessionId(4), connected_at: at, workloads: 2 }] },
        InspectEvent::Workloads { host: host.clone(), at, workloads: vec![summary(BURNER, "burner", 1900, 0.01), summary(VICTIM, "victim", 400, 0.6)] },
        InspectEvent::Estimates { host: host.clone(), at, estimates: vec![estimate(VICTIM, 0.82, Some(BURNER)), estimate(BURNER, 0.01, None)] },
        InspectEvent::Forecasts {
            host: host.clone(),
            at,
            forecasts: vec![DemandForecast {
                workload: WorkloadId(VICTIM),
                resource: Resource::Cpu,
                at,
                horizon_ms: 60_000,
                mean: 650.0,
                lower: 500.0,
                upper: 800.0,
                level: 0.9,
                model: "ets".into(),
                mase: Some(0.7),
                overload_probability: Some(0.4),
                anomaly: false,
            }],
        },
        InspectEvent::Prices { host: host.clone(), at, prices: vec![Price { resource: Resource::Cpu, price: 0.0021 }] },
        InspectEvent::Accounts { host: host.clone(), at, accounts: vec![Account { workload: WorkloadId(VICTIM), credits: Credits::from_credits(42.5), reputation: 17 }] },
        InspectEvent::Leases { host: host.clone(), at, leases: vec![Lease { holder: WorkloadId(VICTIM), ..decision(1).lease }] },
        InspectEvent::Decisions { host, round: 3, decisions: vec![decision(2)] },
    ];
    for ev in events {
        app.on_source(SourceEvent::Inspect(Box::new(ev)), Timestamp(T0));
    }
    app.on_source(SourceEvent::Live, Timestamp(T0));
    app
}

fn host_view(at: u64) -> HostView {
    HostView {
        host: HostId("node-a".into()),
        at: Timestamp(at),
        period_ms: 1000,
        workloads: vec![summary(BURNER, "burner", 1900, 0.01), summary(VICTIM, "victim", 400, 0.6)],
        estimates: vec![estimate(VICTIM, 0.82, Some(BURNER)), estimate(BURNER, 0.01, None)],
        matrix: InterferenceMatrix {
            at: Timestamp(at),
            window_periods: 30,
            workloads: vec![MatrixWorkload { workload: WorkloadId(BURNER), name: "burner".into() }, MatrixWorkload { workload: WorkloadId(VICTIM), name: "victim".into() }],
            cells: vec![
                MatrixCell { victim: WorkloadId(VICTIM), delayer: WorkloadId(BURNER), wait_ns: 4_000_000_000, blame: 0.9 },
                MatrixCell { victim: WorkloadId(BURNER), delayer: WorkloadId(VICTIM), wait_ns: 20_000_000, blame: 0.0 },
            ],
        },
        forecasts: vec![],
        leases: vec![EnforcedLease { lease: LeaseId(2), cgroup: "/truce.slice/burner".into(), setting: Setting::CpuMax { millicores: 300, period_us: 100_000 }, start: Timestamp(at), expiry: Timestamp(at + 30_000), decision: DecisionId(2) }],
        decisions: vec![decision(2)],
        arbiter: "connected to 127.0.0.1:7447 (s4, protocol v1)".into(),
        unavailable: vec![],
        omitted: 0,
    }
}

fn host_app() -> App {
    let mut app = App::new(ViewKind::Host, "/run/truce/agent.sock".into());
    let history = HostHistory {
        host: HostId("node-a".into()),
        period_ms: 1000,
        series: vec![WorkloadSeries {
            workload: WorkloadId(VICTIM),
            name: "victim".into(),
            end: Timestamp(T0 - 1000),
            score: (0..60).map(|i| Some(i as f32 / 60.0)).collect(),
            cpu_millicores: vec![Some(400); 60],
            rq_delay_share: vec![Some(0.5); 60],
        }],
    };
    app.on_source(SourceEvent::Live, Timestamp(T0));
    app.on_source(SourceEvent::History(Box::new(history)), Timestamp(T0));
    app.on_source(SourceEvent::View(Box::new(host_view(T0))), Timestamp(T0));
    app
}

fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in\n{screen}"))
}

#[test]
fn cluster_view_puts_the_antagonist_in_its_victims_row() {
    let app = cluster_app();
    let screen = app.screen_text(160, 30, Timestamp(T0 + 1000));
    if std::env::var_os("TRUCE_SHOW").is_some() {
        println!("{screen}\n{}", host_app().screen_text(140, 36, Timestamp(T0 + 1000)));
    }
    let victim = line_with(&screen, "victim");
    assert!(victim.contains("burner 90%"), "antagonist missing from the victim's row:\n{screen}");
    assert!(victim.contains("0.82"), "{victim}");
    assert!(victim.contains("400/300/650m"), "cpu use/alloc/forecast: {victim}");
    assert!(victim.contains("42.50") && victim.contains("17"), "credits and reputation: {victim}");
    let burner = line_with(&screen, "burner  ");
    assert!(burner.contains("0.01   -  "), "the burner is nobody's victim here: {burner}");
    assert!(line_with(&screen, "node-a").contains("cpu 0.0021"), "host row shows prices:\n{screen}");
    // Worst first: the victim's row comes before the burner's.
    let pos = |n: &str| screen.find(n).unwrap_or(usize::MAX);
    assert!(pos("victim") < pos("burner  "), "{screen}");
}

#[test]
fn cluster_detail_explains_blame_forecast_and_decision() {
    let mut app = cluster_app();
    app.ui.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), 2);
    let screen = app.screen_text(160, 45, Timestamp(T0 + 1000));
    assert!(screen.contains("held the CPU while the victim waited"), "{screen}");
    assert!(screen.contains("burner: blame 90%"), "{screen}");
    assert!(screen.contains("cpu: 650 [500, 800]"), "{screen}");
    assert!(screen.contains("cpi_inflation"), "unavailable components are named: {screen}");
}

#[test]
fn host_view_shows_antagonist_heat_map_sparkline_and_decisions() {
    let app = host_app();
    let screen = app.screen_text(140, 36, Timestamp(T0 + 1000));
    let victim = line_with(&screen, "victim ");
    assert!(victim.contains("burner 90%"), "antagonist missing from the victim's row:\n{screen}");
    assert!(victim.chars().any(|c| ('▁'..='█').contains(&c)), "no sparkline in the victim's row: {victim}");
    assert!(screen.contains("who delayed whom"), "{screen}");
    // The heat map row of the victim shows the 4 s the burner delayed it.
    let heat = screen.lines().filter(|l| l.contains("victim")).find(|l| l.contains("4.0k")).unwrap_or_else(|| panic!("no heat cell in\n{screen}"));
    assert!(heat.contains('2') || heat.contains('1'), "{heat}");
    assert!(screen.contains("yield_to_victim: burner delays victim 90%"), "decision reason:\n{screen}");
    assert!(screen.contains("1 leases enforced"), "{screen}");
}

#[test]
fn narrow_terminals_get_one_line_per_workload_and_tiny_ones_a_notice() {
    let app = cluster_app();
    let screen = app.screen_text(50, 12, Timestamp(T0));
    assert!(line_with(&screen, "victim").contains("←burner"), "{screen}");
    assert!(screen.contains("enlarge"), "{screen}");
    let host = host_app();
    let screen = host.screen_text(40, 10, Timestamp(T0));
    assert!(line_with(&screen, "victim").contains("←burner"), "{screen}");
    for (w, h) in [(10, 3), (1, 1), (23, 40), (200, 4)] {
        let s = app.screen_text(w, h, Timestamp(T0));
        assert!(!s.is_empty());
        let s = host.screen_text(w, h, Timestamp(T0));
        assert!(!s.is_empty());
    }
}

#[test]
fn a_lost_source_is_said_and_the_last_data_stays() {
    let mut app = cluster_app();
    app.on_source(SourceEvent::Lost("connection lost: timed out".into()), Timestamp(T0 + 5000));
    assert!(matches!(app.status.connection, Connection::Lost { .. }));
    let screen = app.screen_text(160, 30, Timestamp(T0 + 6000));
    assert!(screen.contains("DISCONNECTED"), "{screen}");
    assert!(screen.contains("unreachable: connection lost: timed out"), "{screen}");
    assert!(line_with(&screen, "victim").contains("burner 90%"), "data as of the loss is still shown:\n{screen}");
}

#[test]
fn filter_sort_and_help_change_what_is_drawn() {
    let mut app = cluster_app();
    for c in ['/', 'b', 'u', 'r'] {
        app.ui.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE), 2);
    }
    app.ui.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), 2);
    let screen = app.screen_text(160, 30, Timestamp(T0));
    assert!(screen.contains("workloads (1 of 2)"), "{screen}");
    assert!(!screen.lines().any(|l| l.contains("victim ") && l.contains("0.82")), "{screen}");
    app.ui.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE), 2);
    app.ui.on_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE), 2);
    let screen = app.screen_text(160, 30, Timestamp(T0));
    assert!(screen.contains("by name"), "{screen}");
    let pos = |n: &str| screen.find(n).unwrap_or(usize::MAX);
    assert!(pos("burner  ") < pos("victim"), "sorted by name:\n{screen}");
    app.ui.on_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE), 2);
    let screen = app.screen_text(160, 30, Timestamp(T0));
    assert!(screen.contains("filter by host, name or path"), "{screen}");
}

#[test]
fn json_snapshot_carries_the_same_rows() {
    let app = cluster_app();
    let v = app.snapshot(Timestamp(T0));
    assert_eq!(v["view"], "cluster");
    assert_eq!(v["workloads"][0]["name"], "victim");
    assert_eq!(v["workloads"][0]["antagonist"]["name"], "burner");
    assert_eq!(v["workloads"][1]["credits"], serde_json::Value::Null, "no account is null, not 0");
    let h = host_app().snapshot(Timestamp(T0));
    assert_eq!(h["view"], "host");
    assert_eq!(h["workloads"][0]["antagonist"][0], "burner");
    assert_eq!(h["matrix"]["names"].as_array().map(Vec::len), Some(2));
}
