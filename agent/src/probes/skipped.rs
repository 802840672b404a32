//! Runs the kernel skipped. A classic tracepoint or perf_event program does not run while
//! another such program runs on the same CPU (the kernel's per-CPU `bpf_prog_active`
//! guard); it counts each skip per program in `bpf_prog_info.recursion_misses` (Linux
//! 5.12+). The block programs are classic tracepoints that run with interrupts on, so a
//! request completing in an interrupt that lands while block_rq_issue or block_bio_queue
//! runs on that CPU is never seen by block_rq_complete: its bytes are charged to nobody,
//! and nothing inside the programs can notice. Measured: the 6.1 VM's O_DIRECT writer
//! came out 3.2 % short with a single unmatched completion. These counts make that loss a
//! reported probe error instead of a silent one.
//!
//! aya 0.14's `ProgramInfo` does not expose the field, so this asks the kernel directly.

use super::Probes;
use aya_obj::generated::bpf_prog_info;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// `BPF_OBJ_GET_INFO_BY_FD` (include/uapi/linux/bpf.h, enum bpf_cmd).
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The `info` member of `union bpf_attr`; the kernel zero-fills the rest of the union.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The name an error counter of skipped runs of `program` has in a snapshot.
pub fn skipped_runs_label(program: &str) -> String {
    format!("skipped_{program}")
}

/// How many runs of the program behind `fd` the kernel skipped; `None` when it would not say.
fn recursion_misses(fd: BorrowedFd<'_>) -> Option<u64> {
    // SAFETY: bpf_prog_info is plain integers and arrays; all zeros is a valid value, and
    // the kernel reads the zero pointers in it as "no arrays wanted".
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let attr = InfoByFd {
        bpf_fd: u32::try_from(fd.as_raw_fd()).ok()?,
        info_len: u32::try_from(size_of::<bpf_prog_info>()).ok()?,
        info: &raw mut info as u64,
    };
    // SAFETY: attr points at a live InfoByFd of the size passed, and its `info` at a live,
    // writable bpf_prog_info of `info_len` bytes; the kernel writes at most that many.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &raw const attr, size_of::<InfoByFd>()) };
    (rc == 0).then_some(info.recursion_misses)
}

impl Probes {
    /// Skipped runs of every loaded program that had any, labelled by
    /// [`skipped_runs_label`], sorted. Kernels before 5.12 do not count them (all zero).
    pub(super) fn skipped_runs(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| {
                // A program of a group that did not load has no fd: nothing ran, nothing skipped.
                let fd = program.fd().ok()?;
                let misses = recursion_misses(fd.as_fd())?;
                (misses > 0).then(|| (skipped_runs_label(name), misses))
            })
            .collect();
        out.sort();
        out
    }
}
