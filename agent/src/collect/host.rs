//! Host-wide readings from procfs for one period.

use super::HostReading;
use crate::cgroupfs::read_host_pressure;
use std::io;
use std::path::Path;

/// Read /proc/stat, /proc/meminfo and /proc/pressure. A missing file (no PSI) leaves that
/// part empty; a broken /proc/stat or /proc/meminfo is an error, since every CPU and memory
/// figure depends on them. Only the lines truce uses are parsed: /proc/stat's interrupt
/// lines alone hold thousands of numbers, and parsing all of it every period cost more
/// than reading the cgroup files.
pub fn read_host() -> io::Result<HostReading> {
    let malformed = |file: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{file}: no aggregate line truce can parse"));
    let (busy_ticks, cpus) = parse_stat(&std::fs::read_to_string("/proc/stat")?).ok_or_else(|| malformed("/proc/stat"))?;
    let (mem_total_bytes, mem_available_bytes) = parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?).ok_or_else(|| malformed("/proc/meminfo"))?;
    let tps = procfs::ticks_per_second().max(1);
    let psi = read_host_pressure(Path::new("/proc/pressure")).unwrap_or_default();
    Ok(HostReading { cpus, cpu_busy_ns: busy_ticks.saturating_mul(1_000_000_000 / tps), mem_total_bytes, mem_available_bytes, psi })
}

/// /proc/stat: the busy ticks of the aggregate `cpu` line (user, nice, system, irq, softirq,
/// steal; not idle or iowait) and the number of `cpuN` lines. The cpu lines come first.
pub fn parse_stat(text: &str) -> Option<(u64, u32)> {
    let mut lines = text.lines();
    let total = lines.next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = total.split_whitespace().map(|v| v.parse().ok()).collect::<Option<_>>()?;
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    if f.len() < 4 {
        return None;
    }
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let cpus = lines.take_while(|l| l.starts_with("cpu")).count() as u32;
    Some((busy, cpus))
}

/// /proc/meminfo: MemTotal and MemAvailable (MemFree on kernels without it), in bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let (mut total, mut available, mut free) = (None, None, None);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" => &mut free,
            _ => continue,
        };
        *slot = rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kb| kb * 1024);
        if total.is_some() && available.is_some() {
            break;
        }
    }
    Some((total?, available.or(free)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_ticks_and_cpus() {
        let t = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\ncpu1 50 3 25 500 10 2 1 1 0 0\nintr 12345 1 2 3\nctxt 99\n";
        assert_eq!(parse_stat(t), Some((100 + 5 + 50 + 3 + 2 + 1, 2)));
        // Old kernels stop after iowait, irq and softirq.
        assert_eq!(parse_stat("cpu  1 2 3 4\ncpu0 1 2 3 4\n"), Some((6, 1)));
        assert_eq!(parse_stat("intr 1\n"), None);
        assert_eq!(parse_stat("cpu  1 x 3 4\n"), None);
    }

    #[test]
    fn meminfo_total_and_available() {
        let t = "MemTotal:        2000 kB\nMemFree:          300 kB\nMemAvailable:     900 kB\nBuffers: 1 kB\n";
        assert_eq!(parse_meminfo(t), Some((2000 * 1024, 900 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 2000 kB\nMemFree: 300 kB\n"), Some((2000 * 1024, 300 * 1024)));
        assert_eq!(parse_meminfo("MemFree: 300 kB\n"), None);
    }

    #[test]
    fn this_hosts_proc_files_parse() {
        let r = read_host().expect("/proc parses");
        assert!(r.cpus >= 1 && r.mem_total_bytes > 0 && r.mem_available_bytes <= r.mem_total_bytes, "{r:?}");
    }
}
