//! Opening per-CPU counters for the perf event arrays. With no PMU (this VM: ENOENT for
//! hardware events) perf is reported unavailable with the reason; nothing is estimated.
use std::{
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use truce_common::{abi::perf_slot, names};

use super::ProbeError;

/// Which counters to open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PerfMode {
    /// Hardware cycles, instructions and LLC misses; unavailable without a PMU.
    #[default]
    Hardware,
    /// Do not open counters.
    Off,
    /// Put the software cpu-clock (ns) into the cycles slot. Only for tests: it drives the
    /// same in-kernel attribution path on machines without a PMU. Never reported as cycles.
    SoftwareClockAsCycles,
}

/// Whether perf counters are attributed, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PerfStatus {
    Available {
        /// Names of the counters opened, e.g. ["cycles", "instructions", "llc_misses"].
        counters: Vec<&'static str>,
        /// True when the cycles slot holds the software clock ([`PerfMode::SoftwareClockAsCycles`]).
        software_clock: bool,
    },
    Unavailable { reason: String },
}

impl PerfStatus {
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available { .. })
    }
}

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_HW_CPU_CYCLES: u64 = 0;
const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
const PERF_COUNT_HW_CACHE_MISSES: u64 = 3;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// One counter kind, opened on every CPU.
pub struct CounterSet {
    pub map: &'static str,
    pub bit: u32,
    pub name: &'static str,
    /// Index = CPU id.
    pub fds: Vec<OwnedFd>,
}

/// Open the counters `mode` asks for. Returns the sets to install and the status.
pub fn open(mode: PerfMode) -> (Vec<CounterSet>, PerfStatus) {
    let cpus = match possible_cpus() {
        Ok(n) => n,
        Err(err) => return (Vec::new(), PerfStatus::Unavailable { reason: format!("cannot count CPUs: {err}") }),
    };
    let wanted: &[(&'static str, u32, &'static str, u32, u64)] = match mode {
        PerfMode::Off => return (Vec::new(), PerfStatus::Unavailable { reason: "disabled by configuration".into() }),
        PerfMode::Hardware => &[
            (names::PERF_CYCLES, perf_slot::CYCLES, "cycles", PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES),
            (names::PERF_INSTRUCTIONS, perf_slot::INSTRUCTIONS, "instructions", PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS),
            (names::PERF_LLC_MISSES, perf_slot::LLC_MISSES, "llc_misses", PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES),
        ],
        PerfMode::SoftwareClockAsCycles => &[(names::PERF_CYCLES, perf_slot::CYCLES, "cpu-clock", PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK)],
    };
    let mut sets = Vec::new();
    for &(map, bit, name, kind, config) in wanted {
        let mut fds = Vec::with_capacity(cpus as usize);
        for cpu in 0..cpus {
            match open_counter(kind, config, cpu) {
                Ok(fd) => fds.push(fd),
                // An offline CPU has no counter and runs nothing: leave its slot empty.
                Err(err) if err.raw_os_error() == Some(libc::ENODEV) => break,
                Err(err) => {
                    let hint = if err.raw_os_error() == Some(libc::ENOENT) { " (no hardware PMU on this machine)" } else { "" };
                    let reason = format!("perf_event_open({name}, cpu {cpu}) failed: {err}{hint}");
                    return (Vec::new(), PerfStatus::Unavailable { reason });
                }
            }
        }
        sets.push(CounterSet { map, bit, name, fds });
    }
    let counters = sets.iter().map(|s| s.name).collect();
    (sets, PerfStatus::Available { counters, software_clock: mode == PerfMode::SoftwareClockAsCycles })
}

/// Whether the hardware counters open on this machine, trying each CPU and closing them again.
pub fn hardware_status() -> PerfStatus {
    open(PerfMode::Hardware).1
}

/// perf_event_attr up to PERF_ATTR_SIZE_VER0 plus the fields after it that we leave zero;
/// the kernel accepts any known size and we pass the full struct.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
}

fn open_counter(kind: u32, config: u64, cpu: u32) -> io::Result<OwnedFd> {
    let attr = PerfEventAttr { kind, size: size_of::<PerfEventAttr>() as u32, config, ..Default::default() };
    // SAFETY: attr is a valid, fully initialised perf_event_attr of the size it declares;
    // pid -1 with a cpu counts every task on that CPU; no group fd.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &attr, -1 as libc::pid_t, cpu as libc::c_int, -1 as libc::c_int, PERF_FLAG_FD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Number of possible CPUs (the size aya gives perf event arrays), from "0-N" ranges.
fn possible_cpus() -> io::Result<u32> {
    let text = fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut max = 0;
    for part in text.trim().split(',') {
        let last = part.rsplit('-').next().unwrap_or(part);
        let n: u32 = last.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad cpu range {part:?}")))?;
        max = max.max(n);
    }
    Ok(max + 1)
}

/// Put each CPU's counter fd into the perf event array (BPF_MAP_UPDATE_ELEM); aya 0.14
/// has no API to store counter fds in a PERF_EVENT_ARRAY.
pub fn install(map_fd: RawFd, set: &CounterSet) -> Result<(), ProbeError> {
    #[repr(C)]
    struct MapUpdate {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    for (cpu, fd) in set.fds.iter().enumerate() {
        let key = cpu as u32;
        let value = fd.as_raw_fd() as u32;
        let attr = MapUpdate { map_fd: map_fd as u32, _pad: 0, key: &key as *const u32 as u64, value: &value as *const u32 as u64, flags: 0 };
        // SAFETY: attr points at live key/value buffers of the map's key and value size (4
        // bytes each) and declares its own size.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr, size_of::<MapUpdate>() as u32) };
        if rc < 0 {
            return Err(ProbeError::PerfMapUpdate { map: set.map, cpu: key, source: io::Error::last_os_error() });
        }
    }
    Ok(())
}
