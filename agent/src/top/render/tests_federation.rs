//! The federation pane through ratatui's TestBackend: the vote and its inputs as text.

use crate::top::app::App;
use crate::top::source::SourceEvent;
use crate::top::state::ViewKind;
use truce_common::model::*;
use truce_common::wire::*;

const T0: u64 = 1_700_000_000_000;

fn proposal() -> MigrationProposal {
    MigrationProposal {
        id: ProposalId { site: "site-a".into(), seq: 3 },
        destination: "site-b".into(),
        priority: 7,
        host: HostId("a-node-1".into()),
        overload_probability: 0.83,
        overload_level: 0.9,
        threshold: 0.5,
        history: vec![0.7, 0.8, 0.85],
        horizon_steps: 5,
        workloads: vec![MigrationWorkload { workload: WorkloadRef { id: WorkloadId(3), path: "/w3".into() }, demand: 0.3, criticality: 5, pod: None }],
        alternative_to: None,
        at: Timestamp(T0),
    }
}

fn vote(voter: &str, approve: bool) -> MigrationVote {
    MigrationVote { proposal: proposal().id, voter: voter.into(), approve, judged_probability: 0.8, criticality: 1, reason: format!("{voter} judged") }
}

fn event(message: FederationMessage) -> SourceEvent {
    SourceEvent::Inspect(Box::new(InspectEvent::Federation { site: "site-a".into(), at: Timestamp(T0), message: Box::new(message) }))
}

#[test]
fn the_cluster_view_shows_the_vote_with_its_weights_tally_and_verdict() {
    let mut app = App::new(ViewKind::Cluster, "127.0.0.1:7447".into());
    app.on_source(SourceEvent::Live, Timestamp(T0));
    let status = SiteStatus {
        site: "site-b".into(),
        at: Timestamp(T0),
        hosts: vec![HostForecast { host: HostId("b-node-1".into()), utilisation: 0.3, forecast_mean: 0.31, forecast_sigma: 0.02, horizon_ms: 5000, overload_probability: 0.01, criticality: 1 }],
    };
    app.on_source(event(FederationMessage::Status(status)), Timestamp(T0));
    app.on_source(event(FederationMessage::Proposal(proposal())), Timestamp(T0));
    app.on_source(event(FederationMessage::Vote(vote("site-b", true))), Timestamp(T0));
    let open = app.screen_text(200, 30, Timestamp(T0));
    assert!(open.contains("federation: site site-a (1 proposals)"), "{open}");
    assert!(open.contains("site-a#3 a-node-1 -> site-b  prio 7  P(overload) 0.83"), "{open}");
    assert!(open.contains("voting") && open.contains("not yet counted"), "{open}");
    assert!(open.contains("site-b b-node-1 fcst 0.31 P 0.01"), "{open}");

    let counted = |v: MigrationVote, mase: f64, crit: f64| CountedVote { vote: v, mase: Some(mase), accuracy_weight: 1.0 / mase, criticality_weight: crit, weight: crit / mase };
    let tally = VoteTally {
        proposal: proposal(),
        votes: vec![counted(vote("site-b", true), 2.0, 1.0), counted(vote("site-c", false), 8.0, 1.0)],
        missing: vec![],
        approve_weight: 0.5,
        total_weight: 0.625,
        share: 0.8,
        pass_share: 0.5,
        passed: true,
        at: Timestamp(T0 + 5000),
    };
    app.on_source(event(FederationMessage::Tally(tally)), Timestamp(T0));
    app.on_source(event(FederationMessage::Verdict { proposal: proposal().id, at: Timestamp(T0 + 9000), verdict: MigrationVerdict::Confirmed { gain: 0.28, expected: 0.3 } }), Timestamp(T0));
    let screen = app.screen_text(200, 30, Timestamp(T0));
    assert!(screen.contains("share 0.80 vs 0.50 -> PASSED"), "{screen}");
    assert!(screen.contains("confirmed: gain 0.28 of 0.30 expected"), "{screen}");
    let b = screen.lines().find(|l| l.contains("site-b ") && l.contains("yes")).unwrap_or_else(|| panic!("{screen}"));
    assert!(b.contains("w 0.500 = 1/MASE 0.500 x crit 1.00 (MASE 2.00)"), "{b}");
    let c = screen.lines().find(|l| l.contains("site-c ") && l.contains("no ")).unwrap_or_else(|| panic!("{screen}"));
    assert!(c.contains("w 0.125 = 1/MASE 0.125 x crit 1.00 (MASE 8.00)"), "{c}");
}
