//! What a workload wants, as the bidder sees it: priority, SLO, floors and ceilings, budget.
//! Built from the TOML workload config (`crate::workload_config`) or defaults; pure data.

use truce_common::model::Resource;

/// One SLO ceiling. A workload breaches its SLO when any configured ceiling is exceeded.
#[derive(Clone, Debug, PartialEq)]
pub enum SloCeiling {
    /// Run-queue wait p99 (from the probes' per-period histogram), in ns.
    RqWaitP99 { ns: u64 },
    /// PSI `avg10` ceiling, in percent, for the workload's own pressure file.
    Psi { resource: PsiResource, full: bool, avg10: f64 },
    /// A latency the service publishes itself (the agent reads the file and hands the value in).
    ExternalLatency { ceiling_ms: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsiResource {
    Cpu,
    Memory,
    Io,
}

impl PsiResource {
    pub fn name(self) -> &'static str {
        match self {
            PsiResource::Cpu => "cpu",
            PsiResource::Memory => "memory",
            PsiResource::Io => "io",
        }
    }
}

/// Floor and ceiling for one resource, in its unit. The bidder never asks above the ceiling
/// and never releases below the floor.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bounds {
    pub floor: Option<u64>,
    pub ceiling: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadPolicy {
    /// Higher wins ties; the arbiter multiplies utility by it. At least 1.
    pub priority: u32,
    pub slo: Vec<SloCeiling>,
    pub cpu: Bounds,
    pub memory: Bounds,
    pub io: Bounds,
    pub net: Bounds,
    /// Spending ceiling, in credits per hour of lease time.
    pub budget_credits_per_hour: f64,
    /// Lease length asked for in steady state.
    pub lease_ms: u64,
}

impl Default for WorkloadPolicy {
    /// An unconfigured workload: lowest priority, no SLO, no bounds, and a budget of what the
    /// arbiter's default income pays it (1 credit per second).
    fn default() -> WorkloadPolicy {
        WorkloadPolicy {
            priority: 1,
            slo: Vec::new(),
            cpu: Bounds::default(),
            memory: Bounds::default(),
            io: Bounds::default(),
            net: Bounds::default(),
            budget_credits_per_hour: 3600.0,
            lease_ms: 60_000,
        }
    }
}

impl WorkloadPolicy {
    pub fn bounds(&self, resource: &Resource) -> Bounds {
        match resource {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Io { .. } => self.io,
            Resource::Net => self.net,
        }
    }
}

/// What the workload holds right now, per resource, in the resource's unit. `None` means
/// unknown or unlimited (no `cpu.max`, no `memory.high`): then there is no overload to predict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    pub entries: Vec<(Resource, u64)>,
}

impl Allocation {
    pub fn get(&self, resource: &Resource) -> Option<u64> {
        self.entries.iter().find(|(r, _)| r == resource).map(|(_, v)| *v)
    }
}
