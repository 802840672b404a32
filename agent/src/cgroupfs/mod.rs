//! cgroup v2 as the agent sees it: where it is mounted, what it can enforce, which
//! workloads live in it, and what their files say.

mod error;
mod files;
mod mount;
mod naming;
mod open_files;
mod pressure_trigger;
mod walk;

pub use error::CgroupError;
pub use files::{CgroupCounters, IoStatLine, parse_cpu_stat, parse_flat_keyed, parse_io_stat, parse_pressure, read_counters, read_host_pressure, read_pressure};
pub use mount::{CgroupHost, Controller, ControllerState, Mode, discover, discover_from};
pub use naming::{WorkloadKind, classify};
pub use open_files::{CgroupFiles, MAX_OPEN_CGROUPS};
pub use pressure_trigger::{PressureTrigger, TriggerError, TriggerEvent};
pub use walk::{CgroupEntry, walk};
