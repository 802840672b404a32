//! From a [`Setting`] to the exact cgroup v2 file write, with the floors that keep every
//! workload alive, and the value that undoes it.

use truce_common::model::{DeviceId, Setting};

/// What a write overwrites: a whole file, or one device's line in a keyed file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    pub file: String,
    pub dev: Option<DeviceId>,
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dev {
            Some(d) => write!(f, "{}[{d}]", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// Limits that no decision may cross.
#[derive(Clone, Debug, PartialEq)]
pub struct Floors {
    /// Smallest CPU quota truce will set, in millicores.
    pub cpu_millicores: u64,
    /// memory.high is never set below current usage plus this margin.
    pub memory_margin_bytes: u64,
    /// Nor below this absolute floor.
    pub memory_bytes: u64,
    /// Smallest io.max bandwidth, bytes/s.
    pub io_bps: u64,
}

impl Default for Floors {
    fn default() -> Floors {
        Floors { cpu_millicores: 50, memory_margin_bytes: 64 << 20, memory_bytes: 32 << 20, io_bps: 1 << 20 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedWrite {
    pub slot: Slot,
    /// The exact bytes to write.
    pub value: String,
    /// Set when a floor raised the requested value.
    pub floored: Option<&'static str>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingError {
    #[error("{file} value {value} is outside {min}..={max}")]
    OutOfRange { file: &'static str, value: u64, min: u64, max: u64 },
    #[error("cpu.max period {period_us}us is outside 1000..=1000000")]
    BadPeriod { period_us: u64 },
}

pub fn slot_of(setting: &Setting) -> Slot {
    let (file, dev) = match setting {
        Setting::CpuMax { .. } => ("cpu.max", None),
        Setting::CpuWeight { .. } => ("cpu.weight", None),
        Setting::MemoryHigh { .. } => ("memory.high", None),
        Setting::IoMax { dev, .. } => ("io.max", Some(*dev)),
        Setting::IoWeight { dev, .. } => ("io.weight", Some(*dev)),
    };
    Slot { file: file.to_string(), dev }
}

/// Plan the write for `setting`. `memory_current` is the cgroup's usage now (memory.high only).
pub fn plan(setting: &Setting, floors: &Floors, memory_current: Option<u64>) -> Result<PlannedWrite, SettingError> {
    let slot = slot_of(setting);
    let mut floored = None;
    let value = match *setting {
        Setting::CpuMax { millicores, period_us } => {
            if !(1000..=1_000_000).contains(&period_us) {
                return Err(SettingError::BadPeriod { period_us });
            }
            let m = if millicores < floors.cpu_millicores {
                floored = Some("cpu floor");
                floors.cpu_millicores
            } else {
                millicores
            };
            // The kernel refuses quotas under 1ms.
            let quota = (m.saturating_mul(period_us) / 1000).max(1000);
            format!("{quota} {period_us}")
        }
        Setting::CpuWeight { weight } => format!("{}", in_range("cpu.weight", weight.into(), 1, 10_000)?),
        Setting::MemoryHigh { bytes } => {
            let floor = memory_current.unwrap_or(0).saturating_add(floors.memory_margin_bytes).max(floors.memory_bytes);
            if bytes < floor {
                floored = Some("memory floor: current usage plus margin");
            }
            // In whole pages, rounded up (never below the floor): the kernel keeps memory.high
            // in pages and reads it back rounded down, so anything else would never read as
            // in force and every renewal would write it again (and reclaim again).
            format!("{}", bytes.max(floor).div_ceil(page_bytes()).saturating_mul(page_bytes()))
        }
        Setting::IoMax { dev, rbps, wbps } => {
            let fmt = |v: Option<u64>, floored: &mut Option<&'static str>| match v {
                None => "max".to_string(),
                Some(b) if b < floors.io_bps => {
                    *floored = Some("io floor");
                    floors.io_bps.to_string()
                }
                Some(b) => b.to_string(),
            };
            format!("{dev} rbps={} wbps={}", fmt(rbps, &mut floored), fmt(wbps, &mut floored))
        }
        Setting::IoWeight { dev, weight } => format!("{dev} {}", in_range("io.weight", weight.into(), 1, 10_000)?),
    };
    Ok(PlannedWrite { slot, value, floored })
}

/// The kernel's page size (4 KiB where sysconf cannot say).
fn page_bytes() -> u64 {
    // SAFETY: sysconf reads a constant of the running system; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

fn in_range(file: &'static str, value: u64, min: u64, max: u64) -> Result<u64, SettingError> {
    if (min..=max).contains(&value) { Ok(value) } else { Err(SettingError::OutOfRange { file, value, min, max }) }
}

/// The value to journal from the file's current content: the whole file, or this device's line.
pub fn original_of(slot: &Slot, content: &str) -> String {
    match slot.dev {
        None => content.trim().to_string(),
        Some(dev) => {
            let key = format!("{dev} ");
            content.lines().find(|l| l.starts_with(&key)).map(|l| l.trim().to_string()).unwrap_or_else(|| unset(slot))
        }
    }
}

/// What undoes a per-device override that did not exist before.
fn unset(slot: &Slot) -> String {
    match (slot.file.as_str(), slot.dev) {
        ("io.max", Some(d)) => format!("{d} rbps=max wbps=max riops=max wiops=max"),
        ("io.weight", Some(d)) => format!("{d} default"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const VDA: DeviceId = DeviceId { major: 254, minor: 0 };

    #[test]
    fn cpu_max_from_millicores_with_floor() {
        let f = Floors::default();
        assert_eq!(plan(&Setting::CpuMax { millicores: 200, period_us: 100_000 }, &f, None).map(|w| w.value), Ok("20000 100000".into()));
        let low = plan(&Setting::CpuMax { millicores: 1, period_us: 100_000 }, &f, None).expect("plans");
        assert_eq!(low.value, "5000 100000");
        assert!(low.floored.is_some());
        assert!(plan(&Setting::CpuMax { millicores: 100, period_us: 10 }, &f, None).is_err());
    }

    #[test]
    fn memory_high_never_below_usage_plus_margin() {
        let f = Floors::default();
        let w = plan(&Setting::MemoryHigh { bytes: 10 << 20 }, &f, Some(500 << 20)).expect("plans");
        assert_eq!(w.value, format!("{}", (500u64 << 20) + (64 << 20)));
        assert!(w.floored.is_some());
        let ok = plan(&Setting::MemoryHigh { bytes: 2 << 30 }, &f, Some(500 << 20)).expect("plans");
        assert_eq!(ok.value, format!("{}", 2u64 << 30));
        assert_eq!(ok.floored, None);
        let page = page_bytes();
        let odd = plan(&Setting::MemoryHigh { bytes: (1 << 30) + 1 }, &f, Some(500 << 20)).expect("plans");
        assert_eq!(odd.value, format!("{}", (1u64 << 30) + page), "whole pages, rounded up");
    }

    #[test]
    fn io_lines_and_their_originals() {
        let f = Floors::default();
        let w = plan(&Setting::IoMax { dev: VDA, rbps: None, wbps: Some(4 << 20) }, &f, None).expect("plans");
        assert_eq!(w.value, "254:0 rbps=max wbps=4194304");
        assert_eq!(original_of(&w.slot, ""), "254:0 rbps=max wbps=max riops=max wiops=max");
        assert_eq!(original_of(&w.slot, "8:0 rbps=1 wbps=max riops=max wiops=max\n254:0 rbps=5 wbps=max riops=max wiops=max\n"), "254:0 rbps=5 wbps=max riops=max wiops=max");
        let iw = plan(&Setting::IoWeight { dev: VDA, weight: 300 }, &f, None).expect("plans");
        assert_eq!(original_of(&iw.slot, "default 100\n"), "254:0 default");
        assert!(plan(&Setting::IoWeight { dev: VDA, weight: 0 }, &f, None).is_err());
        assert_eq!(original_of(&slot_of(&Setting::CpuWeight { weight: 5 }), "100\n"), "100");
    }
}
