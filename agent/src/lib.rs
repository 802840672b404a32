//! truce-agent: one per host. Loads the eBPF probes, collects per-workload signals,
//! estimates interference, forecasts demand, bids, and enforces decisions as cgroup v2 leases.
