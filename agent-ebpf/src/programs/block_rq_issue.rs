//! tracepoint/block/block_rq_issue: remember who issued a request and when, keyed by
//! (device, start sector), until its completion.
//!
//! Measured on this host (virtio disk, mq-deadline): with the cgroup of `current` at issue,
//! only ~82 % of an O_DIRECT writer's bytes were charged to it; the rest was dispatched from
//! kworkers. So the submitter's cgroup is taken from block_bio_queue when available.
//!
//! Two more ways a request reaches issue with nobody's entry, both traced on this host
//! (bpftrace, a 1 MiB-block O_DIRECT writer beside two 4 KiB ones; before the fixes below
//! the writer came out 12-31 % short in 6 of 11 runs, the rest charged to whoever
//! dispatched):
//! - Every 1 MiB bio was split (254 segments at most): block_bio_queue saw it whole, the
//!   first request starts at its sector, the rest starts further on with no entry. So a
//!   request that ends before its bio does leaves the bio's origin at its own end, for the
//!   next piece.
//! - A request the driver could not take (a full virtio ring) is requeued and issued
//!   again, by a kworker or whichever task runs the queue next: 136 requeues in that run.
//!   Its first issue is still in `BLOCK_INFLIGHT` under the same key, so its cgroup is kept.

use aya_ebpf::{helpers::bpf_get_current_cgroup_id, macros::tracepoint, programs::TracePointContext};
use truce_common::abi::{
    BLOCK_OP_OTHER, BLOCK_OP_READ, BLOCK_OP_WRITE, InflightKey, InflightRq, probe_error,
};

use super::{now_ns, read_field};
use crate::{
    globals::offsets,
    maps::{BLOCK_BIO_ORIGIN, BLOCK_INFLIGHT, count_error},
};

/// How long after its issue a request found in flight again counts as requeued. A driver
/// requeues when its queue is full and retries as soon as a slot frees, in milliseconds.
const REQUEUE_WINDOW_NS: u64 = 5_000_000_000;

#[tracepoint]
pub fn block_rq_issue(ctx: TracePointContext) -> u32 {
    if let Err(slot) = try_block_rq_issue(&ctx) {
        count_error(slot);
    }
    0
}

fn try_block_rq_issue(ctx: &TracePointContext) -> Result<(), u32> {
    let off = offsets();
    let dev: u32 = read_field(ctx, off.block_issue_dev)?;
    let sector: u64 = read_field(ctx, off.block_issue_sector)?;
    let bytes: u32 = read_field(ctx, off.block_issue_bytes)?;
    // rwbs is "R", "W", "D", "N"... optionally after an "F" (preflush); it is 8 bytes on
    // older kernels and 10 on newer ones, and the first two are all we need.
    let rwbs: [u8; 2] = read_field(ctx, off.block_issue_rwbs)?;
    let kind = if rwbs[0] == b'F' { rwbs[1] } else { rwbs[0] };
    let op = match kind {
        _ if bytes == 0 => BLOCK_OP_OTHER,
        b'W' => BLOCK_OP_WRITE,
        b'R' => BLOCK_OP_READ,
        _ => BLOCK_OP_OTHER,
    };
    let key = InflightKey { dev, _pad: 0, sector };
    let now = now_ns();
    // The submitter's cgroup from block_bio_queue when we saw the bio; then the cgroup of
    // this request's earlier issue if it was requeued; otherwise the current task's (right
    // when the submitter dispatches the request itself).
    // SAFETY: the value is copied out before the entry is removed.
    let cgroup_id = match unsafe { BLOCK_BIO_ORIGIN.get(&key) }.copied() {
        Some(origin) => {
            let _ = BLOCK_BIO_ORIGIN.remove(&key);
            let end = sector + u64::from(bytes >> 9);
            if bytes != 0 && end < origin.end_sector {
                // The front of a split bio: the rest is its submitter's too. A failed
                // update costs that attribution only, so it is counted, not returned.
                let rest = InflightKey { dev, _pad: 0, sector: end };
                if BLOCK_BIO_ORIGIN.insert(&rest, &origin, 0).is_err() {
                    count_error(probe_error::BLOCK_BIO_ORIGIN_UPDATE);
                }
            }
            origin.cgroup_id
        }
        // SAFETY: the value is copied out; the insert below replaces the entry.
        None => match unsafe { BLOCK_INFLIGHT.get(&key) }.copied() {
            // An entry whose completion the probe missed (see the agent's
            // `probes::skipped`) would otherwise lend its cgroup to the next request there.
            Some(earlier) if now.saturating_sub(earlier.issued_at_ns) < REQUEUE_WINDOW_NS => earlier.cgroup_id,
            // SAFETY: no preconditions.
            _ => unsafe { bpf_get_current_cgroup_id() },
        },
    };
    // Latency runs from the last issue: the time spent requeued was the driver's refusal,
    // not the device's service.
    let rq = InflightRq { issued_at_ns: now, cgroup_id, bytes, op };
    BLOCK_INFLIGHT.insert(&key, &rq, 0).map_err(|_| probe_error::BLOCK_INFLIGHT_UPDATE)
}
