//! Values the loader writes before load (`EbpfLoader::set_global`, names in
//! `truce_common::names::globals`). They live in .rodata, so the verifier sees them as
//! constants and prunes disabled branches.

use truce_common::abi::{BlockKernelOffsets, KernelOffsets, TracepointOffsets};

/// Tracepoint field offsets read from tracefs `format` files at load time.
#[unsafe(no_mangle)]
static OFFSETS: TracepointOffsets = TracepointOffsets {
    sched_switch_prev_pid: 0,
    sched_switch_prev_state: 0,
    sched_switch_prev_state_size: 0,
    sched_switch_next_pid: 0,
    sched_wakeup_pid: 0,
    sched_migrate_pid: 0,
    sched_exit_pid: 0,
    block_issue_dev: 0,
    block_issue_sector: 0,
    block_issue_bytes: 0,
    block_issue_rwbs: 0,
    block_complete_dev: 0,
    block_complete_sector: 0,
    block_bio_dev: 0,
    block_bio_sector: 0,
    block_bio_nr_sector: 0,
};

/// Kernel struct field offsets read from the kernel's BTF at load time.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: 0,
    task_cgroups: 0,
    task_sum_exec_runtime: 0,
    task_run_delay: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    _pad: 0,
};

/// Kernel struct field offsets of the BTF-typed block_rq_complete, from the kernel's BTF.
#[unsafe(no_mangle)]
static BLOCK_KERNEL_OFFSETS: BlockKernelOffsets = BlockKernelOffsets {
    request_sector: 0,
    request_q: 0,
    queue_disk: 0,
    disk_major: 0,
    disk_first_minor: 0,
    _pad: [0; 3],
};

/// Bit mask of the perf event arrays that hold opened counters
/// (`truce_common::abi::perf_slot`); 0 when there is no PMU.
#[unsafe(no_mangle)]
static PERF_ENABLED: u32 = 0;

#[inline(always)]
pub fn offsets() -> TracepointOffsets {
    // SAFETY: OFFSETS is a valid static; the volatile read stops the compiler from folding
    // the zero initialiser, because the loader rewrites the value before load.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

#[inline(always)]
pub fn perf_enabled() -> u32 {
    // SAFETY: as for `offsets`.
    unsafe { core::ptr::read_volatile(&PERF_ENABLED) }
}

/// One field of `KERNEL_OFFSETS`, e.g. `kernel_offset(|o| &o.task_pid)`. Each field is
/// loaded on its own, straight from .rodata, so the verifier sees a known constant and can
/// check every access to a BTF-typed kernel pointer at that offset.
#[inline(always)]
pub fn kernel_offset(field: impl FnOnce(&'static KernelOffsets) -> &'static u32) -> u32 {
    // SAFETY: as for `offsets`; the reference points into a valid static.
    unsafe { core::ptr::read_volatile(field(&KERNEL_OFFSETS)) }
}

/// One field of `BLOCK_KERNEL_OFFSETS`, loaded like [`kernel_offset`].
#[inline(always)]
pub fn block_kernel_offset(field: impl FnOnce(&'static BlockKernelOffsets) -> &'static u32) -> u32 {
    // SAFETY: as for `offsets`; the reference points into a valid static.
    unsafe { core::ptr::read_volatile(field(&BLOCK_KERNEL_OFFSETS)) }
}
