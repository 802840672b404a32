//! Usage-aware demand and lease hysteresis.

use super::*;

fn cpu(out: &RoundOutcome, w: WorkloadId) -> u64 {
    out.allocation[&(w, Resource::Cpu)]
}

#[test]
fn a_cut_takes_an_idle_neighbours_unused_entitlement_before_a_busy_ones() {
    // V asks 800 more CPU; A burns 2.5 CPUs, L idles at 0.1 CPU. Entitlements are 1200 each
    // of 4000: 400 are spare, the other 400 must come from someone.
    let (mut b, mut l) = (book(), ledger());
    b.usage = BTreeMap::from([((V, Resource::Cpu), 600), ((A, Resource::Cpu), 2500), ((L, Resource::Cpu), 100)]);
    let out = round(&mut b, &mut l, &[asking(V, 1, T0, 800)], T0);
    assert_eq!(cpu(&out, V), 2000, "{:?}", out.allocation);
    assert_eq!(cpu(&out, A), 1200, "the busy neighbour keeps its entitlement: {:?}", out.allocation);
    assert!(cpu(&out, L) < 1200 && cpu(&out, L) >= 125, "the idle one gives, never below its use + headroom: {:?}", out.allocation);
    assert!(out.decisions.iter().all(|d| d.workload.id != A), "no decision for A: {:#?}", out.decisions);

    // The same round without usage (an older agent): both neighbours share the cut.
    let (mut b, mut l) = (book(), ledger());
    let blind = round(&mut b, &mut l, &[asking(V, 1, T0, 800)], T0);
    assert!(cpu(&blind, A) < 1200, "usage-blind, the busy one is cut too: {:?}", blind.allocation);
}

#[test]
fn an_ask_comes_on_top_of_use_above_the_entitlement() {
    let (mut b, mut l) = (book(), ledger());
    b.usage = BTreeMap::from([((V, Resource::Cpu), 1500), ((A, Resource::Cpu), 100), ((L, Resource::Cpu), 100)]);
    let out = round(&mut b, &mut l, &[asking(V, 1, T0, 300)], T0);
    assert_eq!(cpu(&out, V), 1800, "1500 used + 300 asked: {:?}", out.allocation);
}

#[test]
fn a_loan_creeping_up_by_a_few_units_is_renewed_not_reopened() {
    let (mut b, mut l) = (book(), ledger());
    b.usage = BTreeMap::from([((V, Resource::Cpu), 1000), ((A, Resource::Cpu), 100), ((L, Resource::Cpu), 100)]);
    let first = round(&mut b, &mut l, &[asking(V, 1, T0, 400)], T0);
    let lease = decision(&first, V, Resource::Cpu).lease.clone();
    assert_eq!(lease.amount, 1600);

    // One period later V wants 10 more (under 5 % of 1600): the lease is kept at its amount.
    let t1 = T0.plus_ms(1000);
    let second = round(&mut b, &mut l, &[asking(V, 2, t1, 410)], t1);
    let kept = decision(&second, V, Resource::Cpu);
    assert_eq!((kept.lease.id, kept.lease.amount), (lease.id, 1600), "{:?}", kept.reasons);
    assert!(kept.reasons.iter().any(|r| r.code == "renewed"));
    assert!(second.closed.iter().all(|c| c.id != lease.id), "{:?}", second.closed);

    // A move beyond the band reopens it at the new amount.
    let t2 = t1.plus_ms(1000);
    let third = round(&mut b, &mut l, &[asking(V, 3, t2, 600)], t2);
    let moved = decision(&third, V, Resource::Cpu);
    assert_ne!(moved.lease.id, lease.id);
    assert_eq!(moved.lease.amount, 1800);

    // A downward move applies at once, however small.
    let t3 = t2.plus_ms(1000);
    let fourth = round(&mut b, &mut l, &[asking(V, 4, t3, 590)], t3);
    assert_eq!(decision(&fourth, V, Resource::Cpu).lease.amount, 1790);
}
