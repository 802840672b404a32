//! The allocation of one resource on one host: a two-stage linear programme (good_lp + microlp).
//!
//! Per workload w, in units of the resource divided by the host's capacity (so every number is
//! in 0..=1 and memory's bytes do not dwarf the solver's tolerances):
//!
//! - `x_w` the allocation, `floor_w <= x_w <= upper_w`, and `sum x_w <= 1` (capacity);
//! - `s_w` the satisfied demand, `0 <= s_w <= D_w = demand_w - floor_w` and `s_w <= x_w - floor_w`;
//! - `p_w, m_w >= 0` with `x_w - p_w + m_w = current_w`, so `p_w + m_w = |x_w - current_w|`.
//!
//! Stage 1 (fairness, weighted max-min): maximise `t` in 0..=1 subject to
//! `s_w >= t * (phi_w / phi_max) * D_w` for every w with demand. `t*` is the largest fraction of
//! its demand that every workload can get at once, scaled by its weight (a workload with half the
//! top weight is guaranteed half that fraction).
//! Stage 2 (utility): maximise `sum value_w * s_w - swap * sum (p_w + m_w)` subject to the same
//! constraints and `s_w >= (t* - epsilon) * (phi_w / phi_max) * D_w`. The epsilon keeps stage 2
//! feasible despite the solver's rounding. The swap term makes a move worth doing only when it
//! gains more than `2 * swap` per unit (one unit leaves one workload and joins another), and
//! picks the smallest move among equally useful ones.

use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable, microlp,
    variable,
};

/// One workload's position for one resource, in the resource's units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Claim {
    pub floor: u64,
    /// Most it may hold this round: its ceiling, and no more than it asked for.
    pub upper: u64,
    /// What it holds now (its swap-cost anchor).
    pub current: u64,
    /// What it wants; utility counts satisfied demand between floor and this.
    pub demand: u64,
    /// Utility per unit of satisfied demand (credits per unit per second x priority x boost).
    pub value: f64,
    /// Fairness weight (the configured share weight).
    pub weight: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Stage 1 (weighted max-min) then stage 2 (utility with swap costs). The production rule.
    FairLp,
    /// Stage 2 only: the LP without the fairness stage (a benchmark baseline).
    UtilityLp,
    /// No LP: floors, then demand in order of value (a benchmark baseline).
    Greedy,
}

#[derive(Debug, thiserror::Error)]
pub enum OptimiserError {
    #[error("floors add up to {floors} but capacity is {capacity}")]
    FloorsExceedCapacity { floors: u128, capacity: u64 },
    #[error("the {stage} stage failed")]
    Solver {
        stage: &'static str,
        #[source]
        source: ResolutionError,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    pub amounts: Vec<u64>,
    /// `t*` of stage 1, when it ran.
    pub fairness_level: Option<f64>,
    /// How many LPs were solved (0 on the fast path).
    pub solves: u32,
}

/// Allocate `capacity` among `claims`; `swap` is the cost per unit moved, in value units.
pub fn allocate(
    capacity: u64,
    claims: &[Claim],
    swap: f64,
    strategy: Strategy,
    epsilon: f64,
) -> Result<Allocation, OptimiserError> {
    let floors: u128 = claims.iter().map(|c| c.floor as u128).sum();
    if floors > capacity as u128 {
        return Err(OptimiserError::FloorsExceedCapacity { floors, capacity });
    }
    let quiet = claims
        .iter()
        .all(|c| c.current == c.demand.clamp(c.floor, c.upper.max(c.floor)));
    let held: u128 = claims.iter().map(|c| c.current as u128).sum();
    if quiet && held <= capacity as u128 || capacity == 0 {
        // Everyone already holds what it wants and it fits: the LP's optimum is to move nothing.
        let amounts = claims
            .iter()
            .map(|c| if capacity == 0 { 0 } else { c.current })
            .collect();
        return Ok(Allocation {
            amounts,
            fairness_level: None,
            solves: 0,
        });
    }
    if strategy == Strategy::Greedy {
        return Ok(greedy(capacity, claims));
    }
    let cap = capacity as f64;
    let n = |v: u64| v as f64 / cap;
    let lp = Normalised {
        floor: claims.iter().map(|c| n(c.floor)).collect(),
        upper: claims.iter().map(|c| n(c.upper.max(c.floor))).collect(),
        current: claims.iter().map(|c| n(c.current)).collect(),
        demand: claims
            .iter()
            .map(|c| n(c.demand.saturating_sub(c.floor)))
            .collect(),
        share: {
            let top = claims.iter().map(|c| c.weight).fold(0.0_f64, f64::max);
            claims
                .iter()
                .map(|c| {
                    if top > 0.0 {
                        (c.weight / top).clamp(0.0, 1.0)
                    } else {
                        1.0
                    }
                })
                .collect()
        },
    };
    let mut solves = 0;
    let level = if strategy == Strategy::FairLp && lp.demand.iter().any(|d| *d > 0.0) {
        solves += 1;
        Some(max_min_level(&lp)?)
    } else {
        None
    };
    let top_value = claims
        .iter()
        .map(|c| c.value)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let values: Vec<f64> = claims
        .iter()
        .map(|c| c.value.max(0.0) / top_value)
        .collect();
    let x = utility(
        &lp,
        &values,
        swap.max(0.0) / top_value,
        level.map(|t| (t - epsilon).max(0.0)),
    )?;
    solves += 1;
    Ok(Allocation {
        amounts: to_units(capacity, claims, &x),
        fairness_level: level,
        solves,
    })
}

struct Normalised {
    floor: Vec<f64>,
    upper: Vec<f64>,
    current: Vec<f64>,
    demand: Vec<f64>,
    share: Vec<f64>,
}

/// The variables both stages share: x, and s as an expression.
///
/// When `upper - floor <= D` (every asker, and everyone holding exactly its demand), the bound
/// `s <= D` can never bind, so `s = x - floor` at the optimum; substituting it drops a variable
/// and a row per workload, which roughly halves the LP. Only the others get a variable `s` with
/// `s <= x - floor` (returned in `free`).
struct Base {
    x: Vec<Variable>,
    s: Vec<Expression>,
    free: Vec<(usize, Variable)>,
}

fn base(lp: &Normalised, vars: &mut ProblemVariables) -> Base {
    let x: Vec<Variable> = (0..lp.floor.len())
        .map(|i| vars.add(variable().min(lp.floor[i]).max(lp.upper[i])))
        .collect();
    let mut s = Vec::with_capacity(x.len());
    let mut free = Vec::new();
    for (i, xi) in x.iter().enumerate() {
        if lp.upper[i] - lp.floor[i] <= lp.demand[i] {
            s.push(*xi - lp.floor[i]);
        } else {
            let v = vars.add(variable().min(0.0).max(lp.demand[i]));
            free.push((i, v));
            s.push(Expression::from(v));
        }
    }
    Base { x, s, free }
}

fn max_min_level(lp: &Normalised) -> Result<f64, OptimiserError> {
    let mut vars = ProblemVariables::new();
    let b = base(lp, &mut vars);
    let t = vars.add(variable().min(0.0).max(1.0));
    let mut model = vars.maximise(t).using(microlp);
    model = shared_constraints(model, lp, &b);
    for (i, si) in b.s.iter().enumerate() {
        if lp.demand[i] > 0.0 {
            model = model.with((si.clone() - t * (lp.share[i] * lp.demand[i])).geq(0.0));
        }
    }
    let sol = model.solve().map_err(|source| OptimiserError::Solver {
        stage: "fairness",
        source,
    })?;
    Ok(sol.value(t).clamp(0.0, 1.0))
}

fn utility(
    lp: &Normalised,
    values: &[f64],
    swap: f64,
    level: Option<f64>,
) -> Result<Vec<f64>, OptimiserError> {
    let mut vars = ProblemVariables::new();
    let b = base(lp, &mut vars);
    let x = &b.x;
    let p: Vec<Variable> = x.iter().map(|_| vars.add(variable().min(0.0))).collect();
    let m: Vec<Variable> = x.iter().map(|_| vars.add(variable().min(0.0))).collect();
    let mut objective = Expression::from(0.0);
    for i in 0..x.len() {
        objective += values[i] * b.s[i].clone() - swap * p[i] - swap * m[i];
    }
    let mut model = shared_constraints(vars.maximise(objective).using(microlp), lp, &b);
    for i in 0..x.len() {
        model = model.with((x[i] - p[i] + m[i]).eq(lp.current[i]));
        if let Some(t) = level
            && lp.demand[i] > 0.0
        {
            model = model.with(b.s[i].clone().geq(t * lp.share[i] * lp.demand[i]));
        }
    }
    let sol = model.solve().map_err(|source| OptimiserError::Solver {
        stage: "utility",
        source,
    })?;
    Ok(x.iter().map(|v| sol.value(*v)).collect())
}

fn shared_constraints<M: SolverModel>(mut model: M, lp: &Normalised, b: &Base) -> M {
    let total: Expression = b.x.iter().copied().sum();
    model = model.with(total.leq(1.0));
    for (i, s) in &b.free {
        model = model.with((*s - b.x[*i]).leq(-lp.floor[*i]));
    }
    model
}

/// Back to whole units: round down, clamp to bounds, and trim any rounding excess from the
/// largest holdings above their floor so the sum never exceeds capacity.
fn to_units(capacity: u64, claims: &[Claim], x: &[f64]) -> Vec<u64> {
    let mut out: Vec<u64> = claims
        .iter()
        .zip(x)
        .map(|(c, v)| {
            let units = (v * capacity as f64 + 1e-6).floor();
            let units = if units.is_finite() && units > 0.0 {
                units as u64
            } else {
                0
            };
            units.clamp(c.floor, c.upper.max(c.floor))
        })
        .collect();
    let mut excess = out
        .iter()
        .map(|v| *v as u128)
        .sum::<u128>()
        .saturating_sub(capacity as u128);
    while excess > 0 {
        let Some((i, room)) = out
            .iter()
            .zip(claims)
            .map(|(v, c)| v - c.floor)
            .enumerate()
            .max_by_key(|(i, r)| (*r, usize::MAX - i))
        else {
            break;
        };
        if room == 0 {
            break;
        }
        let cut = room.min(u64::try_from(excess).unwrap_or(u64::MAX));
        out[i] -= cut;
        excess -= cut as u128;
    }
    out
}

fn greedy(capacity: u64, claims: &[Claim]) -> Allocation {
    let mut out: Vec<u64> = claims.iter().map(|c| c.floor).collect();
    let mut left = capacity - claims.iter().map(|c| c.floor).sum::<u64>();
    let mut order: Vec<usize> = (0..claims.len()).collect();
    order.sort_by(|a, b| claims[*b].value.total_cmp(&claims[*a].value).then(a.cmp(b)));
    for i in order {
        let c = &claims[i];
        let want = c.demand.clamp(c.floor, c.upper.max(c.floor)) - c.floor;
        let give = want.min(left);
        out[i] += give;
        left -= give;
    }
    Allocation {
        amounts: out,
        fairness_level: None,
        solves: 0,
    }
}

#[cfg(test)]
#[path = "optimiser_tests.rs"]
mod tests;
