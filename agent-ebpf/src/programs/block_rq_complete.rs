//! tracepoint/block/block_rq_complete: charge a finished request to the cgroup recorded at
//! issue, per device, with its issue-to-completion latency.
//!
//! The classic tracepoint is the fallback for a kernel that refuses
//! `block_rq_complete_btf` or whose BTF lacks its fields; the typed one is attached
//! instead wherever it can be: a classic tracepoint
//! program does not run while another one (block_rq_issue, block_bio_queue) runs on that
//! CPU, and completions come in interrupts (see the agent's `probes::skipped`).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use truce_common::abi::{
    BLOCK_OP_READ, BLOCK_OP_WRITE, BlockKey, BlockStats, HIST_BUCKETS, InflightKey, log2_bucket,
    probe_error,
};

use super::{now_ns, read_field, upsert};
use crate::{
    globals::offsets,
    maps::{BLOCK_INFLIGHT, BLOCK_STATS, count_error},
};

static ZERO_BLOCK: BlockStats = BlockStats {
    read_ops: 0,
    read_bytes: 0,
    write_ops: 0,
    write_bytes: 0,
    other_ops: 0,
    latency_ns: 0,
    latency_hist: [0; HIST_BUCKETS],
};

#[tracepoint]
pub fn block_rq_complete(ctx: TracePointContext) -> u32 {
    if let Err(slot) = try_block_rq_complete(&ctx) {
        count_error(slot);
    }
    0
}

fn try_block_rq_complete(ctx: &TracePointContext) -> Result<(), u32> {
    let off = offsets();
    let dev: u32 = read_field(ctx, off.block_complete_dev)?;
    let sector: u64 = read_field(ctx, off.block_complete_sector)?;
    charge_completion(dev, sector)
}

/// Charge the request issued at (`dev`, `sector`) and forget it: what both variants of
/// the program do with the tracepoint's `dev` and `sector`.
#[inline(always)]
pub fn charge_completion(dev: u32, sector: u64) -> Result<(), u32> {
    let key = InflightKey { dev, _pad: 0, sector };
    // SAFETY: the value is copied out before the entry is removed below.
    let Some(rq) = (unsafe { BLOCK_INFLIGHT.get(&key) }).copied() else {
        // Issued before load, or a partial completion of a request we already charged.
        return Err(probe_error::BLOCK_UNMATCHED_COMPLETION);
    };
    let _ = BLOCK_INFLIGHT.remove(&key);
    let latency = now_ns().saturating_sub(rq.issued_at_ns);
    let bkey = BlockKey { cgroup_id: rq.cgroup_id, dev, _pad: 0 };
    let stats = upsert(&BLOCK_STATS, &bkey, &ZERO_BLOCK, probe_error::BLOCK_STATS_UPDATE)?;
    match rq.op {
        BLOCK_OP_READ => {
            stats.read_ops += 1;
            stats.read_bytes += u64::from(rq.bytes);
        }
        BLOCK_OP_WRITE => {
            stats.write_ops += 1;
            stats.write_bytes += u64::from(rq.bytes);
        }
        _ => stats.other_ops += 1,
    }
    stats.latency_ns += latency;
    if let Some(bucket) = stats.latency_hist.get_mut(log2_bucket(latency)) {
        *bucket += 1;
    }
    Ok(())
}
