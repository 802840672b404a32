//! Counter deltas at each context switch, charged to the cgroup that was running.
//! Only called when the loader opened counters (the PERF_ENABLED mask); slots whose bit is
//! clear are never read, so a missing PMU costs nothing and reports nothing.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_CPU, bpf_perf_event_value},
    helpers::bpf_perf_event_read_value,
    maps::PerfEventArray,
};
use truce_common::abi::{PerfStats, perf_slot, probe_error};

use super::upsert;
use crate::maps::{PERF_CYCLES, PERF_INSTRUCTIONS, PERF_LAST, PERF_LLC_MISSES, PERF_STATS, count_error};

static ZERO_PERF: PerfStats = PerfStats { cycles: 0, instructions: 0, llc_misses: 0, _reserved: 0 };

/// Read this CPU's counter in `array`.
#[inline(always)]
fn read(array: &PerfEventArray<u32>) -> Option<u64> {
    let mut value = bpf_perf_event_value { counter: 0, enabled: 0, running: 0 };
    // SAFETY: PerfEventArray is repr(transparent) over the map definition, so its address
    // is the map pointer the helper expects (what aya-ebpf's own output() passes); `value`
    // is a stack buffer of the size given.
    let rc = unsafe {
        bpf_perf_event_read_value(
            core::ptr::from_ref(array).cast_mut().cast::<c_void>(),
            u64::from(BPF_F_CURRENT_CPU),
            &mut value,
            core::mem::size_of::<bpf_perf_event_value>() as u32,
        )
    };
    if rc < 0 {
        count_error(probe_error::PERF_READ);
        return None;
    }
    Some(value.counter)
}

/// Advance `last` to the new reading and return the delta (0 for the first reading on a CPU).
#[inline(always)]
fn delta(last: &mut u64, now: Option<u64>) -> u64 {
    let Some(now) = now else { return 0 };
    let d = if *last == 0 { 0 } else { now.wrapping_sub(*last) };
    *last = now;
    d
}

#[inline(always)]
pub fn charge_switch(cgroup: u64, charge: bool, mask: u32) {
    let Some(last) = PERF_LAST.get_ptr_mut(0) else {
        count_error(probe_error::PERF_READ);
        return;
    };
    // SAFETY: per-CPU array value, only touched from this CPU.
    let last = unsafe { &mut *last };
    let mut d = PerfStats::default();
    if mask & perf_slot::CYCLES != 0 {
        d.cycles = delta(&mut last.cycles, read(&PERF_CYCLES));
    }
    if mask & perf_slot::INSTRUCTIONS != 0 {
        d.instructions = delta(&mut last.instructions, read(&PERF_INSTRUCTIONS));
    }
    if mask & perf_slot::LLC_MISSES != 0 {
        d.llc_misses = delta(&mut last.llc_misses, read(&PERF_LLC_MISSES));
    }
    // Time spent by the idle task is nobody's; it only advances `last`.
    if !charge || (d.cycles | d.instructions | d.llc_misses) == 0 {
        return;
    }
    match upsert(&PERF_STATS, &cgroup, &ZERO_PERF, probe_error::PERF_STATS_UPDATE) {
        Ok(stats) => {
            stats.cycles += d.cycles;
            stats.instructions += d.instructions;
            stats.llc_misses += d.llc_misses;
        }
        Err(slot) => count_error(slot),
    }
}
