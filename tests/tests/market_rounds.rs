//! Market tests without a network: many rounds through the `Exchange` against a real redb
//! ledger on disk, checking prices, reputation, leases, repayment and default, and credit
//! conservation after every round (and after crash-and-reopen).

#[path = "market_rounds/harness.rs"]
mod harness;

use harness::{
    ANTAGONIST, Harness, LENDER, VICTIM, bid, host, lender_releases, spec, temp_db, victim_asks,
};
use truce_arbiter::ledger::{LeaseEnd, Ledger, REPUTATION_START};
use truce_arbiter::market::{Exchange, Market};
use truce_common::model::{Credits, HostId, Lender, Resource, Timestamp};

#[test]
fn market_lends_renews_repays_and_defaults_over_many_rounds() {
    let mut h = Harness::new("lifecycle");
    let mut now = Timestamp(600_000);
    let mut price_seen = Vec::new();
    let mut loan_ids = Vec::new();

    // Phase 1: the victim needs CPU, the lender offers some, the antagonist says nothing.
    for i in 0..15 {
        now = now.plus_ms(1_000);
        let bids = vec![
            victim_asks(&mut h, now, false),
            lender_releases(&mut h, now),
        ];
        let out = h.round(bids, now);
        let v = out
            .decisions
            .iter()
            .find(|d| d.workload.id == VICTIM && d.lease.resource == Resource::Cpu);
        let v = v.unwrap_or_else(|| panic!("victim gets CPU in round {i}: {:#?}", out.decisions));
        assert!(v.lease.amount > 1000, "victim above entitlement");
        loan_ids.push(v.lease.id);
        let a = out
            .decisions
            .iter()
            .find(|d| d.workload.id == ANTAGONIST)
            .expect("antagonist limited");
        assert!(
            a.lease.amount < 1000 && a.lease.amount >= 200,
            "antagonist cut but above its floor"
        );
        price_seen.push(
            h.exchange
                .ledger()
                .price(&host(), Resource::Cpu)
                .expect("price set")
                .0,
        );
        if i == 7 {
            h.crash_and_reopen(now, &[VICTIM, ANTAGONIST, LENDER]);
        }
    }
    assert!(
        price_seen
            .windows(2)
            .all(|w| w[1] > w[0] && w[1] as f64 <= w[0] as f64 * 1.1 + 1.0),
        "{price_seen:?}"
    );
    loan_ids.dedup();
    assert_eq!(
        loan_ids.len(),
        1,
        "one loan, renewed every round: {loan_ids:?}"
    );
    let loan = h
        .exchange
        .ledger()
        .lease(loan_ids[0])
        .expect("loan open")
        .clone();
    assert!(
        loan.terms
            .shares
            .iter()
            .any(|s| s.lender == Lender::Workload(LENDER)),
        "the lender lends: {loan:?}"
    );

    // An SLO breach raises the victim's weight and value: it gets more (a new position, so a
    // new lease at the current price), and the boost decays back within its hold time.
    let before = h
        .exchange
        .ledger()
        .lease(loan.terms.id)
        .map_or(0, |l| l.terms.amount);
    now = now.plus_ms(1_000);
    let bids = vec![victim_asks(&mut h, now, true), lender_releases(&mut h, now)];
    let out = h.round(bids, now);
    let boosted = out
        .decisions
        .iter()
        .find(|d| d.workload.id == VICTIM && d.lease.resource == Resource::Cpu)
        .expect("loan");
    assert!(
        boosted.lease.amount > before,
        "boost: {} -> {}",
        before,
        boosted.lease.amount
    );
    assert!(boosted.reasons.iter().any(|r| r.code == "slo_boost"));
    let loan = h
        .exchange
        .ledger()
        .lease(boosted.lease.id)
        .expect("boosted loan open")
        .clone();
    let lender_before = h.balance(LENDER);

    // Phase 2: the victim's need drops: the loan is repaid, both sides gain reputation.
    now = now.plus_ms(1_000);
    let bids = vec![bid(VICTIM, h.id(), now), bid(LENDER, h.id(), now)];
    let out = h.round(bids, now);
    assert!(
        out.closed
            .iter()
            .any(|c| c.id == loan.terms.id && c.end == LeaseEnd::Repaid)
    );
    assert_eq!(
        h.exchange.ledger().closed_lease(loan.terms.id),
        Some(LeaseEnd::Repaid)
    );
    assert!(
        h.balance(LENDER) > lender_before,
        "the lender was paid for the time used"
    );
    assert!(h.rep(VICTIM) > REPUTATION_START && h.rep(LENDER) > REPUTATION_START);
    let (victim_rep, lender_rep) = (h.rep(VICTIM), h.rep(LENDER));

    // Idle rounds: the price falls back in bounded steps.
    let high = h
        .exchange
        .ledger()
        .price(&host(), Resource::Cpu)
        .expect("price")
        .0;
    for _ in 0..5 {
        now = now.plus_ms(1_000);
        h.round(vec![], now);
    }
    let low = h
        .exchange
        .ledger()
        .price(&host(), Resource::Cpu)
        .expect("price")
        .0;
    assert!(
        low < high && low as f64 >= high as f64 * 0.9_f64.powi(5) - 5.0,
        "{high} -> {low}"
    );

    // Phase 3: the victim borrows again, then vanishes (crashed): default.
    now = now.plus_ms(1_000);
    let bids = vec![
        victim_asks(&mut h, now, false),
        lender_releases(&mut h, now),
    ];
    let out = h.round(bids, now);
    let second = out
        .decisions
        .iter()
        .find(|d| d.workload.id == VICTIM && d.lease.resource == Resource::Cpu)
        .expect("loan");
    let second = second.lease.id;
    h.exchange
        .set_workloads(
            &host(),
            [ANTAGONIST, LENDER]
                .into_iter()
                .map(|w| (w, spec(w)))
                .collect(),
        )
        .expect("inventory");
    now = now.plus_ms(1_000);
    let bids = vec![bid(LENDER, h.id(), now)];
    let out = h.round(bids, now);
    assert!(
        out.closed
            .iter()
            .any(|c| c.id == second && c.end == LeaseEnd::Defaulted && c.why == "holder_vanished")
    );
    assert!(
        h.rep(VICTIM) < victim_rep - 1_000,
        "the defaulter loses a lot"
    );
    assert!(
        h.rep(LENDER) < lender_rep && h.rep(LENDER) > lender_rep - 500,
        "the lender loses a little"
    );
    assert!(out.decisions.iter().all(|d| d.workload.id != VICTIM));

    h.crash_and_reopen(now, &[ANTAGONIST, LENDER]);
    let _ = std::fs::remove_dir_all(h.path.parent().unwrap_or(&h.path));
}

#[test]
fn market_leases_lapse_when_rounds_stop_and_restart_cleanly() {
    let mut h = Harness::new("lapse");
    let mut now = Timestamp(600_000);
    now = now.plus_ms(1_000);
    let bids = vec![victim_asks(&mut h, now, false)];
    let out = h.round(bids, now);
    let first = out
        .decisions
        .iter()
        .find(|d| d.workload.id == VICTIM)
        .expect("loan")
        .lease
        .clone();
    // No round for longer than the lease: the agent has reverted; the next round repays it.
    now = first.expiry.plus_ms(3_000);
    let bids = vec![victim_asks(&mut h, now, false)];
    let out = h.round(bids, now);
    assert!(
        out.closed
            .iter()
            .any(|c| c.id == first.id && c.why == "expired" && c.end == LeaseEnd::Repaid)
    );
    let again = out
        .decisions
        .iter()
        .find(|d| d.workload.id == VICTIM)
        .expect("new loan");
    assert!(again.lease.id > first.id && again.lease.start == now);
}

#[test]
fn market_fleet_of_synthetic_hosts_conserves_credits_every_round() {
    use truce_arbiter::market::synthetic::{SplitMix, bids, host_book};
    let path = temp_db("fleet");
    let mut exchange = Exchange::new(Ledger::open(&path).expect("open"), Market::default());
    let hosts: Vec<HostId> = (0..12).map(|i| HostId(format!("fleet-{i}"))).collect();
    for h in &hosts {
        let b = host_book(h.clone(), 20);
        let income = b
            .workloads
            .keys()
            .map(|w| (*w, Credits::from_credits(2.0)))
            .collect();
        exchange
            .set_host(b, &income, Timestamp(0))
            .expect("register");
    }
    let mut rng = SplitMix::new(7);
    let mut decided = 0;
    for round in 0..15u64 {
        let now = Timestamp(60_000 + round * 2_000);
        for h in &hosts {
            let book = exchange.book(h).expect("book").clone();
            let mut b = bids(&book, &mut rng, now, round * 1_000_000);
            // Now and then a workload disappears for good (its loans default).
            if round == 8 && rng.unit() < 0.5 {
                let mut workloads = book.workloads.clone();
                let gone = *workloads.keys().next().expect("a workload");
                workloads.remove(&gone);
                exchange.set_workloads(h, workloads).expect("inventory");
                b.retain(|x| x.workload.id != gone);
            }
            let out = exchange.round(h, &b, now).expect("round");
            decided += out.decisions.len();
            assert_eq!(
                exchange.ledger().check_conservation(),
                Ok(()),
                "host {h} round {round}"
            );
            let book = exchange.book(h).expect("book");
            for ((w, r), held) in &out.allocation {
                let bounds = book.bounds(*w, *r);
                assert!(
                    *held >= bounds.floor && *held <= bounds.ceiling,
                    "{w} {r} {held} within {bounds:?}"
                );
            }
        }
    }
    assert!(decided > 100, "the fleet traded: {decided} decisions");
    let state = exchange.ledger().clone();
    drop(exchange);
    assert_eq!(Ledger::open(&path).expect("reopen").state(), &state);
}
