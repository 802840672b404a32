//! cgroup_skb/ingress on the cgroup2 root: bytes and packets received per cgroup.

use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

use super::net::{Direction, count};
use crate::maps::count_error;

/// Always 1: truce observes traffic and never drops it.
#[cgroup_skb(ingress)]
pub fn net_ingress(ctx: SkBuffContext) -> i32 {
    if let Err(slot) = count(&ctx, Direction::Ingress) {
        count_error(slot);
    }
    1
}
