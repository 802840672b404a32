//! Counting shared by the cgroup_skb programs.
//!
//! The cgroup comes from the packet's socket (bpf_skb_cgroup_id), not from `current`:
//! ingress runs in softirq context on behalf of whoever owns the receiving socket.

use aya_ebpf::{EbpfContext, bindings::__sk_buff, helpers::bpf_skb_cgroup_id, programs::SkBuffContext};
use truce_common::abi::{NetStats, probe_error};

use super::upsert;
use crate::maps::NET_STATS;

static ZERO_NET: NetStats = NetStats { rx_bytes: 0, rx_packets: 0, tx_bytes: 0, tx_packets: 0 };

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

#[inline(always)]
pub fn count(ctx: &SkBuffContext, direction: Direction) -> Result<(), u32> {
    // SAFETY: the context of a cgroup_skb program is a valid __sk_buff.
    let cgroup = unsafe { bpf_skb_cgroup_id(ctx.as_ptr().cast::<__sk_buff>()) };
    if cgroup == 0 {
        // No full socket (e.g. a request socket during a handshake): nobody to charge.
        return Ok(());
    }
    let bytes = u64::from(ctx.len());
    let stats = upsert(&NET_STATS, &cgroup, &ZERO_NET, probe_error::NET_STATS_UPDATE)?;
    match direction {
        Direction::Ingress => {
            stats.rx_bytes += bytes;
            stats.rx_packets += 1;
        }
        Direction::Egress => {
            stats.tx_bytes += bytes;
            stats.tx_packets += 1;
        }
    }
    Ok(())
}
