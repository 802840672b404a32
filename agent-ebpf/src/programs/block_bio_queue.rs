//! tracepoint/block/block_bio_queue: runs in the submitter's context, so it records the
//! submitting cgroup for block_rq_issue, which may run later in a kworker.

use aya_ebpf::{helpers::bpf_get_current_cgroup_id, macros::tracepoint, programs::TracePointContext};
use truce_common::abi::{BioOrigin, InflightKey, probe_error};

use super::read_field;
use crate::{
    globals::offsets,
    maps::{BLOCK_BIO_ORIGIN, count_error},
};

#[tracepoint]
pub fn block_bio_queue(ctx: TracePointContext) -> u32 {
    if let Err(slot) = try_block_bio_queue(&ctx) {
        count_error(slot);
    }
    0
}

fn try_block_bio_queue(ctx: &TracePointContext) -> Result<(), u32> {
    let off = offsets();
    let dev: u32 = read_field(ctx, off.block_bio_dev)?;
    let sector: u64 = read_field(ctx, off.block_bio_sector)?;
    let nr_sector: u32 = read_field(ctx, off.block_bio_nr_sector)?;
    // SAFETY: no preconditions; the submitter is current here.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let key = InflightKey { dev, _pad: 0, sector };
    let origin = BioOrigin { cgroup_id, end_sector: sector + u64::from(nr_sector) };
    BLOCK_BIO_ORIGIN.insert(&key, &origin, 0).map_err(|_| probe_error::BLOCK_BIO_ORIGIN_UPDATE)
}
