//! truce's eBPF programs. Everything aggregates in the kernel, per cgroup v2 id, in per-CPU
//! maps; user space reads cumulative counters and computes deltas. Nothing is streamed per
//! event and nothing is logged on a hot path: failures are counted in `ERRORS`.
//!
//! On the host (`cargo check --workspace`) this crate is an empty binary, so the workspace
//! builds without the BPF toolchain; the real object is built by `agent/build.rs`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod globals;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program whose panic path is reachable, so this never runs.
    loop {}
}

/// GPL-compatible, so the kernel lets the programs call GPL-only helpers
/// (bpf_probe_read_kernel, bpf_perf_event_read_value).
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
