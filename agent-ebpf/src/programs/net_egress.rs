//! cgroup_skb/egress on the cgroup2 root: bytes and packets sent per cgroup.

use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

use super::net::{Direction, count};
use crate::maps::count_error;

/// Always 1: truce observes traffic and never drops it.
#[cgroup_skb(egress)]
pub fn net_egress(ctx: SkBuffContext) -> i32 {
    if let Err(slot) = count(&ctx, Direction::Egress) {
        count_error(slot);
    }
    1
}
