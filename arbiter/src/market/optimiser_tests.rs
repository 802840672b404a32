use super::*;

fn claim(floor: u64, current: u64, demand: u64, value: f64) -> Claim {
    Claim {
        floor,
        upper: demand.max(current),
        current,
        demand,
        value,
        weight: 1.0,
    }
}

fn solve(cap: u64, claims: &[Claim], swap: f64, strategy: Strategy) -> Vec<u64> {
    match allocate(cap, claims, swap, strategy, 1e-4) {
        Ok(a) => a.amounts,
        Err(e) => panic!("allocate failed: {e}"),
    }
}

#[test]
fn slack_capacity_meets_every_demand_within_bounds() {
    let claims = [claim(100, 500, 700, 1.0), claim(100, 300, 400, 1.0)];
    let x = solve(2000, &claims, 0.01, Strategy::FairLp);
    assert_eq!(x, vec![700, 400]);
}

#[test]
fn scarce_capacity_goes_to_the_higher_value_without_fairness() {
    // 1000 units; both hold 500; A asks for 900 at value 10, B wants to keep 500 at value 1.
    let claims = [claim(100, 500, 900, 10.0), claim(100, 500, 500, 1.0)];
    let x = solve(1000, &claims, 0.01, Strategy::UtilityLp);
    assert_eq!(x, vec![900, 100], "B is squeezed to its floor");
    assert!(x.iter().sum::<u64>() <= 1000);
}

#[test]
fn weighted_max_min_protects_the_low_value_workload() {
    let claims = [claim(100, 500, 900, 10.0), claim(100, 500, 500, 1.0)];
    let fair = match allocate(1000, &claims, 0.01, Strategy::FairLp, 1e-4) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    // Demands above floor: A 800, B 400, 800 units to share: equal satisfaction t = 800/1200.
    let t = fair.fairness_level.unwrap_or(0.0);
    assert!((t - 2.0 / 3.0).abs() < 1e-3, "t* = {t}");
    let b_sat = (fair.amounts[1] - 100) as f64 / 400.0;
    // Epsilon (1e-4) plus rounding down to whole units (1/400).
    assert!(
        b_sat >= t - 1e-4 - 1.0 / 400.0,
        "B keeps its max-min share: {b_sat} vs {t}"
    );
    assert!(
        fair.amounts[1] > 100,
        "fairness keeps B above its floor: {:?}",
        fair.amounts
    );
}

#[test]
fn weights_scale_the_guaranteed_share() {
    let mut heavy = claim(0, 500, 1000, 1.0);
    heavy.weight = 2.0;
    let light = claim(0, 500, 1000, 1.0);
    let fair = match allocate(900, &[heavy, light], 0.0, Strategy::FairLp, 1e-4) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    // s_heavy >= t * 1000, s_light >= t * 0.5 * 1000, sum <= 900 -> t* = 0.6.
    let t = fair.fairness_level.unwrap_or(0.0);
    assert!((t - 0.6).abs() < 1e-3, "t* = {t}");
    assert!(
        fair.amounts[0] >= 599 && fair.amounts[1] >= 299,
        "{:?}",
        fair.amounts
    );
}

#[test]
fn swap_cost_blocks_moves_worth_less_than_twice_the_cost() {
    // Moving a unit from B to A gains 0.1 in value but costs 2 x 0.1 in swaps.
    let claims = [claim(0, 500, 900, 1.1), claim(0, 500, 500, 1.0)];
    assert_eq!(
        solve(1000, &claims, 0.1, Strategy::UtilityLp),
        vec![500, 500]
    );
    // With a cheaper swap the move pays.
    assert_eq!(
        solve(1000, &claims, 0.01, Strategy::UtilityLp),
        vec![900, 100]
    );
}

#[test]
fn quiet_host_takes_the_fast_path() {
    let claims = [claim(0, 500, 500, 1.0), claim(0, 300, 300, 1.0)];
    let a = allocate(1000, &claims, 0.1, Strategy::FairLp, 1e-4).ok();
    assert_eq!(a.map(|a| (a.amounts, a.solves)), Some((vec![500, 300], 0)));
}

#[test]
fn floors_beyond_capacity_are_an_error_not_a_panic() {
    let claims = [claim(600, 600, 600, 1.0), claim(600, 600, 700, 1.0)];
    assert!(matches!(
        allocate(1000, &claims, 0.1, Strategy::FairLp, 1e-4),
        Err(OptimiserError::FloorsExceedCapacity {
            floors: 1200,
            capacity: 1000
        })
    ));
}

#[test]
fn greedy_serves_value_order() {
    let claims = [claim(0, 0, 600, 1.0), claim(0, 0, 600, 5.0)];
    assert_eq!(solve(1000, &claims, 0.0, Strategy::Greedy), vec![400, 600]);
}
