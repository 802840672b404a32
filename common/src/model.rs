//! The domain model shared by agent and arbiter: workloads, resources, bids, decisions, leases.
//!
//! Units (DESIGN.md): CPU in millicores, memory in bytes, I/O and network in bytes/s.
//! Prices are credits per unit per second. Credits are integers (micro-credits) so the
//! ledger conserves them exactly and every replica computes the same state.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch. The pure core takes time as an argument of this type,
/// so recordings replay exactly as they ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
    pub fn ms_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A workload is a cgroup v2 directory; its id is the directory's inode, which is what
/// `bpf_get_current_cgroup_id` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadId(pub u64);

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cg{}", self.0)
    }
}

/// A workload with its cgroup path, relative to the cgroup2 mount (`/` is the root).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub id: WorkloadId,
    pub path: String,
}

/// A host is the identity in its certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostId(pub String);

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A block device, as in `io.max` and `io.stat` (`major:minor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceId {
    pub major: u32,
    pub minor: u32,
}

impl DeviceId {
    /// Split a kernel-internal `dev_t` as block tracepoints report it (major << 20 | minor).
    pub fn from_kernel_dev(dev: u32) -> DeviceId {
        DeviceId { major: dev >> 20, minor: dev & ((1 << 20) - 1) }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// A resource that can be traded. Amounts are in the unit named on each variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Millicores.
    Cpu,
    /// Bytes.
    Memory,
    /// Bytes per second on one device.
    Io { dev: DeviceId },
    /// Bytes per second.
    Net,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Cpu => f.write_str("cpu"),
            Resource::Memory => f.write_str("memory"),
            Resource::Io { dev } => write!(f, "io[{dev}]"),
            Resource::Net => f.write_str("net"),
        }
    }
}

/// Integer micro-credits: exact arithmetic keeps the ledger conserved and deterministic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Credits(pub i64);

impl Credits {
    pub const MICROS_PER_CREDIT: i64 = 1_000_000;
    pub fn from_credits(c: f64) -> Credits {
        Credits((c * Self::MICROS_PER_CREDIT as f64).round() as i64)
    }
    pub fn as_credits(self) -> f64 {
        self.0 as f64 / Self::MICROS_PER_CREDIT as f64
    }
}

/// Why a bid or decision is what it is: a stable machine code and a human sentence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub detail: String,
}

/// A request for more of a resource, up to a price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    pub resource: Resource,
    pub amount: u64,
    /// Credits per unit per second.
    pub max_price: f64,
}

/// An offer to give up some of a resource (forecast surplus), at no less than a price.
/// Offers from reputable workloads feed the lending pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub resource: Resource,
    pub amount: u64,
    pub min_price: f64,
}

/// "I give up `give` if I get `want`": matched between workloads on one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeOffer {
    pub give: Resource,
    pub give_amount: u64,
    pub want: Resource,
    pub want_amount: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidId(pub u64);

/// A workload's bid for one round, with the reasons that produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bid {
    pub id: BidId,
    pub workload: WorkloadRef,
    pub at: Timestamp,
    pub asks: Vec<Ask>,
    pub releases: Vec<Release>,
    pub trades: Vec<TradeOffer>,
    /// Most credits the workload will spend this round.
    pub willingness_to_pay: Credits,
    /// Configured priority (higher wins ties); the arbiter multiplies utility by it.
    pub priority: u32,
    /// The workload is past its SLO: the arbiter boosts its priority for a bounded time.
    pub slo_breach: bool,
    /// Lease length wanted, in ms.
    pub lease_ms: u64,
    pub reasons: Vec<Reason>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseId(pub u64);

/// Who lent what a lease grants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lender {
    Pool,
    Workload(WorkloadId),
}

/// A time-bounded grant. The agent reverts what it enforces for a lease at `expiry` unless renewed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub id: LeaseId,
    pub holder: WorkloadId,
    pub lender: Lender,
    pub resource: Resource,
    pub amount: u64,
    /// Credits per unit per second.
    pub price: f64,
    pub start: Timestamp,
    pub expiry: Timestamp,
}

/// A cgroup v2 setting the agent enforces for the life of a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// `cpu.max`, derived from millicores over a period.
    CpuMax { millicores: u64, period_us: u64 },
    /// `cpu.weight` (1..=10000).
    CpuWeight { weight: u32 },
    /// `memory.high`; the agent never sets it below current usage plus a margin.
    MemoryHigh { bytes: u64 },
    /// `io.max` on one device; `None` leaves that limit at max.
    IoMax { dev: DeviceId, rbps: Option<u64>, wbps: Option<u64> },
    /// `io.weight` for one device (1..=10000).
    IoWeight { dev: DeviceId, weight: u32 },
}

impl Setting {
    /// The resource this setting holds. A workload holds each resource through one lease at a
    /// time, whichever of the resource's knobs that lease writes (a cut CPU is `cpu.max` or
    /// `cpu.weight`, a raised one `cpu.weight`).
    pub fn resource(&self) -> Resource {
        match self {
            Setting::CpuMax { .. } | Setting::CpuWeight { .. } => Resource::Cpu,
            Setting::MemoryHigh { .. } => Resource::Memory,
            Setting::IoMax { dev, .. } | Setting::IoWeight { dev, .. } => Resource::Io { dev: *dev },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DecisionId(pub u64);

/// One outcome of a market round for one workload, traceable to the bids behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub id: DecisionId,
    pub round: u64,
    pub workload: WorkloadRef,
    pub lease: Lease,
    pub setting: Setting,
    /// Bids that caused this decision.
    pub caused_by: Vec<BidId>,
    pub reasons: Vec<Reason>,
}
