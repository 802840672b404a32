//! Print the kernel's run time and run count of every loaded eBPF program whose name is
//! given (all when none is), one `name id run_time_ns run_cnt` line each. The figures only
//! move while the kernel counts (`sysctl kernel.bpf_stats_enabled=1`). Read before and
//! after a `perf bench sched pipe` run to get the in-kernel cost per program run of any
//! build of the probes, old ones included (docs/benchmarks.md, overhead).
use anyhow::{Context, Result};

fn main() -> Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    for program in aya::programs::loaded_programs() {
        let info = program.context("listing loaded programs (run as root)")?;
        let name = info.name_as_str().unwrap_or("?").to_owned();
        if wanted.is_empty() || wanted.contains(&name) {
            println!("{name} {} {} {}", info.id(), info.run_time().as_nanos(), info.run_count());
        }
    }
    Ok(())
}
