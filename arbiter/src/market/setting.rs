//! From an allocation to the cgroup v2 setting the agent enforces.
//!
//! A workload above its entitlement is *raised*; one below is *limited*:
//!
//! | resource | raised (x > e)                             | limited (x < e)                        |
//! |----------|--------------------------------------------|----------------------------------------|
//! | cpu      | `cpu.weight` = 100 * x / e (1..=10000)     | `cpu.max` = x millicores per period    |
//! | memory   | `memory.high` = x bytes                    | `memory.high` = x bytes                |
//! | io[dev]  | `io.weight` = 100 * x / e on dev (1..=10000)| `io.max` rbps = wbps = x on dev       |
//!
//! Raising uses weights because a workload with no cpu.max/io.max has nothing to raise; the
//! weight gives it that share of contention instead (100 is the kernel's default weight and
//! stands for the entitlement). Network has no cgroup v2 knob and is not traded.
//!
//! A limited CPU holding has two styles ([`CpuCut`]): `Quota` (the table above: a hard
//! cpu.max, which throttles the workload even when CPUs idle) and `Weight` (cpu.weight =
//! 100 * x / e, work-conserving: the workload loses under contention but keeps idle CPU), and
//! `Yield` (cpu.weight 1 whatever x is: the cut workload gives way to every neighbour at once,
//! keeps all idle CPU, and its allocation is no longer a guaranteed share). A `Yield` cut
//! binds only a workload that used more than `x` last period: one within its allocation keeps
//! the default weight, because weight 1 would take from it what the allocation grants it.
//! That is what made a light I/O antagonist (allocated its small use plus headroom) wait
//! behind everyone, ask for CPU, be raised, stop asking and be cut again, a new lease every
//! round (bench mitigation run 27).

use truce_common::model::{Resource, Setting};

pub const DEFAULT_WEIGHT: u64 = 100;

/// How a CPU holding below the entitlement is enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuCut {
    /// cpu.max: a hard quota; the others get their share for certain, the cut workload
    /// loses idle CPU too.
    #[default]
    Quota,
    /// cpu.weight below 100: the cut workload yields under contention and keeps idle CPU.
    Weight,
    /// cpu.weight 1, the kernel's minimum: under CFS and EEVDF a waking neighbour preempts the
    /// cut workload almost at once (its virtual time runs 100x faster than a weight-100
    /// neighbour's), which is what a latency-sensitive victim needs; the cut workload still
    /// keeps every idle cycle. The price: under contention it gets next to nothing, not x.
    /// Only a workload using more than x is cut so; one within x keeps weight 100.
    Yield,
}

/// The setting for holding `x` units of `r` against an entitlement of `e`, or None for a
/// resource truce cannot enforce.
pub fn setting_for(r: Resource, x: u64, e: u64, cpu_period_us: u64) -> Option<Setting> {
    setting_with(r, x, e, None, cpu_period_us, CpuCut::Quota)
}

/// [`setting_for`] with the CPU cut style chosen; `used` is what the workload used of `r`
/// last period (None when unknown), which decides whether a `Yield` cut binds.
pub fn setting_with(r: Resource, x: u64, e: u64, used: Option<u64>, cpu_period_us: u64, cut: CpuCut) -> Option<Setting> {
    let weight =
        || ((DEFAULT_WEIGHT as u128 * x as u128) / e.max(1) as u128).clamp(1, 10_000) as u32;
    match r {
        Resource::Cpu if x > e => Some(Setting::CpuWeight { weight: weight() }),
        Resource::Cpu if cut == CpuCut::Weight => Some(Setting::CpuWeight { weight: weight() }),
        Resource::Cpu if x < e && cut == CpuCut::Yield => {
            let binds = used.is_none_or(|u| u > x);
            Some(Setting::CpuWeight { weight: if binds { 1 } else { DEFAULT_WEIGHT as u32 } })
        }
        Resource::Cpu => Some(Setting::CpuMax {
            millicores: x,
            period_us: cpu_period_us,
        }),
        Resource::Memory => Some(Setting::MemoryHigh { bytes: x }),
        Resource::Io { dev } if x > e => Some(Setting::IoWeight {
            dev,
            weight: weight(),
        }),
        Resource::Io { dev } => Some(Setting::IoMax {
            dev,
            rbps: Some(x),
            wbps: Some(x),
        }),
        Resource::Net => None,
    }
}

/// Whether truce can enforce `r` at all.
pub fn enforceable(r: Resource) -> bool {
    !matches!(r, Resource::Net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::model::DeviceId;

    #[test]
    fn raised_uses_weights_and_limited_uses_max() {
        assert_eq!(
            setting_for(Resource::Cpu, 1500, 1000, 100_000),
            Some(Setting::CpuWeight { weight: 150 })
        );
        assert_eq!(
            setting_for(Resource::Cpu, 400, 1000, 100_000),
            Some(Setting::CpuMax {
                millicores: 400,
                period_us: 100_000
            })
        );
        let dev = DeviceId { major: 8, minor: 0 };
        assert_eq!(
            setting_for(Resource::Io { dev }, 10, 0, 100_000),
            Some(Setting::IoWeight { dev, weight: 1000 })
        );
        assert_eq!(
            setting_for(Resource::Io { dev }, 5, 10, 100_000),
            Some(Setting::IoMax {
                dev,
                rbps: Some(5),
                wbps: Some(5)
            })
        );
        assert_eq!(
            setting_for(Resource::Memory, 7, 9, 100_000),
            Some(Setting::MemoryHigh { bytes: 7 })
        );
        assert_eq!(setting_for(Resource::Net, 7, 9, 100_000), None);
        assert_eq!(
            setting_for(Resource::Cpu, 10_000_000, 1, 100_000),
            Some(Setting::CpuWeight { weight: 10_000 })
        );
    }

    #[test]
    fn a_weight_cut_lowers_cpu_weight_instead_of_setting_a_quota() {
        assert_eq!(setting_with(Resource::Cpu, 250, 1000, None, 100_000, CpuCut::Weight), Some(Setting::CpuWeight { weight: 25 }));
        assert_eq!(setting_with(Resource::Cpu, 0, 1000, None, 100_000, CpuCut::Weight), Some(Setting::CpuWeight { weight: 1 }));
        assert_eq!(
            setting_with(Resource::Cpu, 250, 1000, None, 100_000, CpuCut::Quota),
            Some(Setting::CpuMax { millicores: 250, period_us: 100_000 })
        );
    }

    #[test]
    fn a_yield_cut_sets_the_minimum_weight_and_raising_is_unchanged() {
        assert_eq!(setting_with(Resource::Cpu, 999, 1000, None, 100_000, CpuCut::Yield), Some(Setting::CpuWeight { weight: 1 }));
        assert_eq!(setting_with(Resource::Cpu, 1500, 1000, Some(1500), 100_000, CpuCut::Yield), Some(Setting::CpuWeight { weight: 150 }));
    }

    #[test]
    fn a_yield_cut_binds_only_a_workload_using_more_than_its_allocation() {
        let cut = |used| setting_with(Resource::Cpu, 400, 1000, used, 100_000, CpuCut::Yield);
        assert_eq!(cut(Some(900)), Some(Setting::CpuWeight { weight: 1 }), "over its allocation: gives way");
        assert_eq!(cut(None), Some(Setting::CpuWeight { weight: 1 }), "unknown use: gives way");
        assert_eq!(cut(Some(400)), Some(Setting::CpuWeight { weight: 100 }), "at its allocation: default weight");
        assert_eq!(cut(Some(50)), Some(Setting::CpuWeight { weight: 100 }), "light: default weight");
    }
}
