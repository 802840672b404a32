//! What the daemon tells the arbiter each period: the report (every workload it sees) and the
//! inventory (what the market may trade here: the host's capacity and the workloads this agent
//! may enforce). Pure: built from the sample, the round and the policies.

use crate::brain::{Round, WorkloadPolicy};
use crate::enforce::{Scope, under_roots};
use std::collections::HashMap;
use truce_common::model::{HostId, Resource, WorkloadId};
use truce_common::signal::{HostSample, WorkloadSample};
use truce_common::wire::{Capacity, Inventory, ManagedWorkload, Report, ResourceBounds, SignalSummary, WorkloadReport};

pub fn report(seq: u64, host: &HostId, sample: &HostSample, round: &Round, inventory: Option<Inventory>) -> Report {
    Report {
        seq,
        host: host.clone(),
        at: sample.at,
        period_ms: sample.period_ms,
        workloads: sample
            .workloads
            .iter()
            .map(|w| WorkloadReport {
                workload: w.workload.clone(),
                name: w.name.clone(),
                signals: SignalSummary::from_sample(w, sample.period_ms),
                estimate: round.estimates.iter().find(|e| e.workload == w.workload.id).cloned(),
                forecasts: round.forecasts.iter().filter(|f| f.workload == w.workload.id).cloned().collect(),
            })
            .collect(),
        inventory,
    }
}

/// The host's CPU and memory, and the workloads under the scope's roots that have no
/// workload below them: a parent's limit would cap its children too, so counting both would
/// sell the same capacity twice. The agent's own cgroup and those above it are never managed,
/// and still count as a workload below their parent.
pub fn inventory(sample: &HostSample, scope: &Scope, policies: &HashMap<WorkloadId, WorkloadPolicy>) -> Inventory {
    let roots = &scope.roots;
    let mut capacity = Vec::new();
    if sample.totals.cpus > 0 {
        capacity.push(Capacity { resource: Resource::Cpu, amount: u64::from(sample.totals.cpus) * 1000 });
    }
    if sample.totals.mem_total_bytes > 0 {
        capacity.push(Capacity { resource: Resource::Memory, amount: sample.totals.mem_total_bytes });
    }
    let under: Vec<_> = sample.workloads.iter().filter(|w| under_roots(&w.workload.path, roots)).collect();
    let managed = under
        .iter()
        .filter(|w| !under.iter().any(|o| under_roots(&o.workload.path, std::slice::from_ref(&w.workload.path))))
        .filter(|w| !scope.holds_agent(&w.workload.path))
        .map(|w| {
            let policy = policies.get(&w.workload.id).cloned().unwrap_or_default();
            let bounds = [(Resource::Cpu, policy.cpu), (Resource::Memory, policy.memory)]
                .into_iter()
                .filter(|(_, b)| b.floor.is_some() || b.ceiling.is_some())
                .map(|(resource, b)| ResourceBounds { resource, floor: b.floor, ceiling: b.ceiling })
                .collect();
            ManagedWorkload { workload: w.workload.clone(), priority: policy.priority.max(1), bounds, usage: usage(w, sample.period_ms, sample.totals.cpus) }
        })
        .collect();
    Inventory { capacity, managed }
}

/// What the workload used over the period, as its report summarises it from its own cgroup
/// files (cpu.stat usage_usec, memory.current); a resource whose file was unreadable is left
/// out, not reported as zero.
///
/// CPU counts the time the workload waited on a run queue too (its runnable time, up to the
/// host's CPUs): the market cuts a workload that does not ask to what it uses, and a workload
/// held back by its neighbours uses less than it wants. Counted by use alone, a starved victim
/// in a period without an ask was cut to its starved use with `cpu.max`, which starved it
/// further (seen in the VM benchmark: the victim at 0.16 CPU of the 0.30 it needs).
fn usage(w: &WorkloadSample, period_ms: u64, cpus: u32) -> Vec<Capacity> {
    let s = SignalSummary::from_sample(w, period_ms);
    let waited = crate::brain::attribution::millicores(w.cpu.rq_wait_ns, period_ms) as u64;
    let all = u64::from(cpus.max(1)) * 1000;
    let cpu = s.cpu_millicores.map(|used| Capacity { resource: Resource::Cpu, amount: used.saturating_add(waited).min(all.max(used)) });
    let memory = s.memory_bytes.map(|amount| Capacity { resource: Resource::Memory, amount });
    cpu.into_iter().chain(memory).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::{Bounds, testkit};

    /// The brain's test workload, moved to `path` (reporting cares only about where it is).
    fn workload(id: u64, path: &str) -> WorkloadSample {
        let mut w = testkit::workload(id, path, 0, 0);
        w.workload.path = path.into();
        w
    }

    #[test]
    fn only_the_lowest_cgroups_under_the_roots_are_managed_with_their_bounds() {
        let mut sample = testkit::host(0, vec![workload(1, "/demo"), workload(2, "/demo/victim"), workload(3, "/demo/hogs"), workload(4, "/demo/hogs/cpu"), workload(5, "/other")], vec![]);
        sample.totals.mem_total_bytes = 1 << 30;
        // The victim's cgroup files were read (350 ms of CPU in the 1 s period, 64 MiB); the
        // hog's were not, so it reports no usage rather than zero.
        sample.workloads[1].files.cpu_usage_us = Some(350_000);
        sample.workloads[1].files.memory_current = Some(64 << 20);
        let victim = WorkloadPolicy { priority: 50, cpu: Bounds { floor: Some(200), ceiling: None }, ..WorkloadPolicy::default() };
        let inv = inventory(&sample, &Scope::new(vec!["/demo".to_string()], None), &HashMap::from([(WorkloadId(2), victim)]));
        assert_eq!(inv.capacity, vec![Capacity { resource: Resource::Cpu, amount: 2000 }, Capacity { resource: Resource::Memory, amount: 1 << 30 }]);
        let ids: Vec<u64> = inv.managed.iter().map(|m| m.workload.id.0).collect();
        assert_eq!(ids, vec![2, 4], "the root itself, the parent /demo/hogs and /other are not managed");
        assert_eq!(inv.managed[0].priority, 50);
        assert_eq!(inv.managed[0].bounds, vec![ResourceBounds { resource: Resource::Cpu, floor: Some(200), ceiling: None }]);
        assert_eq!(inv.managed[1].priority, 1);
        assert_eq!(inv.managed[0].usage, vec![Capacity { resource: Resource::Cpu, amount: 350 }, Capacity { resource: Resource::Memory, amount: 64 << 20 }]);
        assert_eq!(inv.managed[1].usage, vec![]);

        // The agent itself in /demo/hogs/agent: neither it nor /demo/hogs (above it) is
        // managed, and /demo/hogs/cpu still is.
        sample.workloads.push(workload(6, "/demo/hogs/agent"));
        let inv = inventory(&sample, &Scope::new(vec!["/demo".to_string()], Some("/demo/hogs/agent".into())), &HashMap::new());
        let ids: Vec<u64> = inv.managed.iter().map(|m| m.workload.id.0).collect();
        assert_eq!(ids, vec![2, 4], "the agent's own cgroup is not managed");
    }

    #[test]
    fn cpu_usage_counts_the_run_queue_wait_up_to_the_hosts_cpus() {
        // 1 s periods on 2 CPUs: 300 ms on a CPU and 200 ms waiting for one is 500 millicores.
        let mut starved = testkit::workload(1, "victim", 300, 200);
        starved.workload.path = "/demo/victim".into();
        starved.files.cpu_usage_us = Some(300_000);
        let mut hog = testkit::workload(2, "hog", 1900, 5000);
        hog.workload.path = "/demo/hog".into();
        hog.files.cpu_usage_us = Some(1_900_000);
        let sample = testkit::host(0, vec![starved, hog], vec![]);
        let inv = inventory(&sample, &Scope::new(vec!["/demo".to_string()], None), &HashMap::new());
        let cpu = |i: usize| inv.managed[i].usage.iter().find(|c| c.resource == Resource::Cpu).map(|c| c.amount);
        assert_eq!(cpu(0), Some(500));
        assert_eq!(cpu(1), Some(2000), "never more than the host has");
    }
}
