//! Parsers and readers for the cgroup v2 files truce uses. Parsers are pure (text in,
//! values out) and tested on recorded file contents; readers map a missing directory
//! to [`CgroupError::Vanished`] and a missing file (controller not enabled) to `None`.

use super::CgroupError;
use std::path::Path;
use truce_common::model::DeviceId;
use truce_common::signal::{Pressure, PsiSignals};

/// `key value` lines, as in cpu.stat, memory.events and memory.stat. Lines that do not
/// parse are skipped: new kernels add keys, and one odd line must not lose the rest.
pub fn parse_flat_keyed(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn get(kv: &[(String, u64)], key: &str) -> Option<u64> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// cpu.stat: (usage_usec, throttled_usec, nr_throttled).
pub fn parse_cpu_stat(text: &str) -> (Option<u64>, Option<u64>, Option<u64>) {
    let kv = parse_flat_keyed(text);
    (get(&kv, "usage_usec"), get(&kv, "throttled_usec"), get(&kv, "nr_throttled"))
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoStatLine {
    pub dev: Option<DeviceId>,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}

/// io.stat: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`.
pub fn parse_io_stat(text: &str) -> Vec<IoStatLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let dev = it.next()?;
            let (maj, min) = dev.split_once(':')?;
            let mut line = IoStatLine {
                dev: Some(DeviceId { major: maj.parse().ok()?, minor: min.parse().ok()? }),
                ..Default::default()
            };
            for field in it {
                let Some((k, v)) = field.split_once('=') else { continue };
                let Ok(v) = v.parse::<u64>() else { continue };
                match k {
                    "rbytes" => line.rbytes = v,
                    "wbytes" => line.wbytes = v,
                    "rios" => line.rios = v,
                    "wios" => line.wios = v,
                    _ => {}
                }
            }
            Some(line)
        })
        .collect()
}

/// A PSI file: `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and optionally a `full` line.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut p = Pressure::default();
    let mut saw_some = false;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let kind = it.next()?;
        let (mut avg10, mut avg60, mut total) = (None, None, None);
        for f in it {
            match f.split_once('=') {
                Some(("avg10", v)) => avg10 = v.parse::<f64>().ok(),
                Some(("avg60", v)) => avg60 = v.parse::<f64>().ok(),
                Some(("total", v)) => total = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        match kind {
            "some" => {
                p.some_avg10 = avg10?;
                p.some_avg60 = avg60?;
                p.some_total_us = total?;
                saw_some = true;
            }
            "full" => {
                p.full_avg10 = avg10;
                p.full_total_us = total;
            }
            _ => {}
        }
    }
    saw_some.then_some(p)
}

/// Cumulative counters and levels read from one cgroup's files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CgroupCounters {
    pub cpu_usage_us: Option<u64>,
    pub cpu_throttled_us: Option<u64>,
    pub cpu_nr_throttled: Option<u64>,
    pub memory_current: Option<u64>,
    pub memory_high_events: Option<u64>,
    pub memory_max_events: Option<u64>,
    pub memory_oom_kills: Option<u64>,
    pub io: Option<Vec<IoStatLine>>,
}

pub(super) fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(dir.join(file)) {
        Ok(s) => Ok(Some(s)),
        Err(e) => absent_or_error(dir, file, e),
    }
}

/// Why `file` in `dir` could not be opened or read: absent (`None`: the controller is off or
/// the kernel has no such file) unless the cgroup itself vanished, or an error.
pub(super) fn absent_or_error(dir: &Path, file: &str, e: std::io::Error) -> Result<Option<String>, CgroupError> {
    match e {
        e if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.exists() { Ok(None) } else { Err(CgroupError::Vanished { path: dir.to_path_buf() }) }
        }
        // ENODEV/EOPNOTSUPP: the file exists but the controller is off here.
        e if matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::EOPNOTSUPP)) => Ok(None),
        e => Err(CgroupError::read(dir.join(file), e)),
    }
}

/// Read cpu.stat, memory.current, memory.events and io.stat from `dir`.
pub fn read_counters(dir: &Path) -> Result<CgroupCounters, CgroupError> {
    counters_with(|file| read_optional(dir, file))
}

/// The counters from whatever reads a file by name (`None`: the file is absent).
pub(super) fn counters_with(mut read_optional: impl FnMut(&'static str) -> Result<Option<String>, CgroupError>) -> Result<CgroupCounters, CgroupError> {
    let mut c = CgroupCounters::default();
    if let Some(t) = read_optional("cpu.stat")? {
        (c.cpu_usage_us, c.cpu_throttled_us, c.cpu_nr_throttled) = parse_cpu_stat(&t);
    }
    if let Some(t) = read_optional("memory.current")? {
        c.memory_current = t.trim().parse().ok();
    }
    if let Some(t) = read_optional("memory.events")? {
        let kv = parse_flat_keyed(&t);
        c.memory_high_events = get(&kv, "high");
        c.memory_max_events = get(&kv, "max");
        c.memory_oom_kills = get(&kv, "oom_kill");
    }
    if let Some(t) = read_optional("io.stat")? {
        c.io = Some(parse_io_stat(&t));
    }
    Ok(c)
}

/// Read cpu.pressure, memory.pressure and io.pressure (absent without PSI).
pub fn read_pressure(dir: &Path) -> Result<PsiSignals, CgroupError> {
    pressure_with(|file| read_optional(dir, file))
}

/// The host's pressure from `dir` (/proc/pressure), where the files are named by resource
/// alone (`cpu`, `memory`, `io`), not `cpu.pressure` as in a cgroup.
pub fn read_host_pressure(dir: &Path) -> Result<PsiSignals, CgroupError> {
    pressure_with(|file| read_optional(dir, file.trim_end_matches(".pressure")))
}

/// The pressure files from whatever reads a file by name (`None`: the file is absent).
pub(super) fn pressure_with(mut read_optional: impl FnMut(&'static str) -> Result<Option<String>, CgroupError>) -> Result<PsiSignals, CgroupError> {
    let mut one = |f: &'static str| -> Result<Option<Pressure>, CgroupError> { Ok(read_optional(f)?.and_then(|t| parse_pressure(&t))) };
    Ok(PsiSignals { cpu: one("cpu.pressure")?, memory: one("memory.pressure")?, io: one("io.pressure")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_fields() {
        let t = "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 5\nnr_throttled 2\nthrottled_usec 77\n";
        assert_eq!(parse_cpu_stat(t), (Some(1000), Some(77), Some(2)));
        assert_eq!(parse_cpu_stat("usage_usec 5\n"), (Some(5), None, None));
    }

    #[test]
    fn io_stat_lines() {
        let t = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=0 rios=1 wios=0\n";
        let l = parse_io_stat(t);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].dev, Some(DeviceId { major: 254, minor: 0 }));
        assert_eq!((l[0].rbytes, l[0].wbytes, l[0].rios, l[0].wios), (4096, 8192, 1, 2));
    }

    /// /proc/pressure names its files `cpu`, `memory`, `io`; read under the cgroup names the
    /// host's pressure was never found (every period tried `cpu.pressure` there and got none).
    #[test]
    fn the_host_pressure_is_read_under_procs_file_names() {
        let dir = std::env::temp_dir().join(format!("truce-proc-pressure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let line = |some: f64| format!("some avg10={some:.2} avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        std::fs::write(dir.join("cpu"), line(42.5)).expect("cpu");
        std::fs::write(dir.join("io"), line(7.0)).expect("io");
        let host = read_host_pressure(&dir).expect("reads");
        assert_eq!(host.cpu.map(|p| p.some_avg10), Some(42.5));
        assert_eq!(host.io.map(|p| p.some_avg10), Some(7.0));
        assert!(host.memory.is_none(), "no memory file: absent, not an error");
        // The cgroup reader looks for cpu.pressure and finds nothing here.
        assert!(read_pressure(&dir).expect("reads").cpu.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pressure_some_and_full() {
        let t = "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=99\n";
        let p = parse_pressure(t).expect("parses");
        assert_eq!(p.some_avg10, 1.5);
        assert_eq!(p.some_total_us, 12345);
        assert_eq!(p.full_avg10, Some(0.5));
        assert_eq!(p.full_total_us, Some(99));
        assert_eq!(parse_pressure("garbage"), None);
        assert_eq!(parse_pressure("some avg10=x avg60=0 total=1"), None);
    }

    #[test]
    fn flat_keyed_skips_bad_lines() {
        let kv = parse_flat_keyed("low 0\nhigh 7\nbroken\nmax x\noom_kill 1\n");
        assert_eq!(get(&kv, "high"), Some(7));
        assert_eq!(get(&kv, "max"), None);
        assert_eq!(get(&kv, "oom_kill"), Some(1));
    }

    #[test]
    fn vanished_cgroup_is_reported_as_vanished() {
        let err = read_counters(Path::new("/nonexistent/truce/cgroup")).expect_err("must fail");
        assert!(matches!(err, CgroupError::Vanished { .. }), "{err}");
    }
}
