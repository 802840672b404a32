//! tracepoint/block/block_rq_issue: remember who issued a request and when, keyed by
//! (device, start sector), until its completion.
//!
//! Measured on this host (virtio disk, mq-deadline): with the cgroup of `current` at issue,
//! only ~82 % of an O_DIRECT writer's bytes were charged to it; the rest was dispatched from
//! kworkers. So the submitter's cgroup is taken from block_bio_queue when available.

use aya_ebpf::{helpers::bpf_get_current_cgroup_id, macros::tracepoint, programs::TracePointContext};
use truce_common::abi::{
    BLOCK_OP_OTHER, BLOCK_OP_READ, BLOCK_OP_WRITE, InflightKey, InflightRq, probe_error,
};

use super::{now_ns, read_field};
use crate::{
    globals::offsets,
    maps::{BLOCK_BIO_ORIGIN, BLOCK_INFLIGHT, count_error},
};

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
    // The submitter's cgroup from block_bio_queue when we saw the bio; otherwise the
    // current task's (right when the submitter dispatches the request itself).
    // SAFETY: the value is copied out before the entry is removed.
    let cgroup_id = match unsafe { BLOCK_BIO_ORIGIN.get(&key) }.copied() {
        Some(origin) => {
            let _ = BLOCK_BIO_ORIGIN.remove(&key);
            origin
        }
        // SAFETY: no preconditions.
        None => unsafe { bpf_get_current_cgroup_id() },
    };
    let rq = InflightRq { issued_at_ns: now_ns(), cgroup_id, bytes, op };
    BLOCK_INFLIGHT.insert(&key, &rq, 0).map_err(|_| probe_error::BLOCK_INFLIGHT_UPDATE)
}
