//! Loading and attaching: the synchronous owner of `aya::Ebpf`.
use std::{collections::HashSet, fs, fs::File, sync::Mutex, os::fd::{AsFd, AsRawFd}, path::{Path, PathBuf}};

use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    Btf,
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, PerfEvent, TracePoint,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use truce_common::{abi::{BlockKernelOffsets, TracepointOffsets}, names};

use super::{
    ProbeError,
    batch::Floor,
    perf::{self, CounterSet, PerfMode, PerfStatus},
    btf, privilege, tracefs,
};

/// The eBPF object built by build.rs, aligned for the ELF parser.
static PROBES_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TRUCE_PROBES_OBJECT"));

/// What the loader should do.
#[derive(Clone, Debug, Default)]
pub struct ProbeConfig {
    pub perf: PerfMode,
    /// The cgroup2 mount for the network programs; found in /proc/self/mountinfo when None.
    pub cgroup2_root: Option<PathBuf>,
    /// Which optional groups to attach (the scheduler group always is).
    pub groups: ProbeGroups,
    /// Which block completion program to prefer; tests force the fallback to compare.
    pub block_completion: BlockCompletion,
}

/// The two programs that can see block completions (agent-ebpf `block_rq_complete*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BlockCompletion {
    /// The BTF-typed tracepoint, where the kernel's BTF has its fields and the kernel takes
    /// it (every kernel tested; the scheduler probes already need 5.18); the classic one
    /// otherwise.
    #[default]
    Typed,
    /// The classic tracepoint, which the kernel skips while another block program runs on
    /// that CPU (counted as `skipped_block_rq_complete`).
    Classic,
}

/// The optional probe groups an operator may turn off (`[probes]` in the agent's config).
/// Each runs on every I/O request or packet, in the context of whoever issues or completes
/// it, so a host may trade its signal for that cost; a group turned off is reported
/// unavailable with the key that did it, never estimated. Read as is from the config's
/// `[probes]` table (every key optional, unknown keys refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeGroups {
    pub block: bool,
    pub net: bool,
}

impl Default for ProbeGroups {
    fn default() -> Self {
        ProbeGroups { block: true, net: true }
    }
}

/// The names a sample's `unavailable` list gives the optional groups.
pub const BLOCK_SIGNAL: &str = "block";
pub const NET_SIGNAL: &str = "net";

/// Whether the probes behind `signal` ran, by a sample's (or reading's) `unavailable` list:
/// where they did not, an absent count is "not measured", not zero.
pub fn measured(unavailable: &[truce_common::signal::Unavailable], signal: &str) -> bool {
    !unavailable.iter().any(|u| u.signal == signal)
}

/// Why a group the config turns off with `key` is not observed (the probes' status and the
/// start-up checks both say it).
pub fn turned_off_reason(key: &str) -> String {
    format!("turned off in the agent's config ({key} = false)")
}

fn turned_off(key: &str) -> GroupStatus {
    GroupStatus::Unavailable { reason: turned_off_reason(key) }
}

/// Whether a group of probes is attached, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupStatus {
    Attached,
    Unavailable { reason: String },
}

impl GroupStatus {
    pub fn is_attached(&self) -> bool {
        matches!(self, Self::Attached)
    }

    fn from_result(result: Result<(), ProbeError>) -> Self {
        match result {
            Ok(()) => Self::Attached,
            // `{:#}`-style chain: the kernel's reason is in the sources.
            Err(err) => Self::Unavailable { reason: error_chain(&err) },
        }
    }
}

/// Which probe groups run on this host. The scheduler group is required; the others
/// degrade to `Unavailable` with the kernel's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub sched: GroupStatus,
    pub block: GroupStatus,
    pub net: GroupStatus,
    pub perf: PerfStatus,
    /// Which program sees block completions; None when the block group is not attached.
    pub block_completion: Option<CompletionProbe>,
}

/// The block completion program attached, and why the classic one if it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompletionProbe {
    Typed,
    Classic { reason: String },
}

/// The loaded programs, their maps, and the perf counter fds they read. Dropping it
/// detaches every program (aya closes the links).
pub struct Probes {
    pub(super) ebpf: Ebpf,
    /// Cgroups forgotten while a CPU's unflushed batch still held them (see `snapshot`).
    pub(super) forgotten: HashSet<u64>,
    /// Last reported scheduler totals, so snapshots never step back (see `batch`).
    pub(super) floor: Mutex<Floor>,
    capabilities: Capabilities,
    _counters: Vec<CounterSet>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").field("capabilities", &self.capabilities).finish_non_exhaustive()
    }
}

impl Probes {
    /// Load the object, attach every probe group the kernel supports, and open perf
    /// counters when a PMU exists.
    pub fn load(config: &ProbeConfig) -> Result<Self, ProbeError> {
        privilege::check()?;
        // The scheduler programs read task_struct fields at offsets from the kernel's BTF,
        // and are BTF-typed tracepoints, which aya resolves in the same BTF.
        let vmlinux = Path::new(btf::VMLINUX_BTF);
        let vmlinux_btf = btf::Btf::from_file(vmlinux).map_err(|source| ProbeError::Btf { source })?;
        let kernel_offsets = vmlinux_btf.kernel_offsets().map_err(|source| ProbeError::Btf { source })?;
        // Without these only the BTF-typed block completion is lost (the classic one stands in).
        let block_kernel_offsets = vmlinux_btf.block_kernel_offsets();
        drop(vmlinux_btf);
        let kernel_btf = Btf::from_sys_fs()
            .map_err(|source| ProbeError::KernelBtf { source: Box::new(source) })?;
        // Only the block probes read tracepoint records; the scheduler ones need no tracefs.
        let mut offsets = TracepointOffsets::default();
        let block_layout = tracefs::tracefs_root().and_then(|root| tracefs::block_offsets(&root, &mut offsets));
        let (counters, perf_status) = perf::open(config.perf);
        let mask: u32 = counters.iter().map(|c| c.bit).fold(0, |a, b| a | b);

        let ebpf = EbpfLoader::new()
            .override_global(names::globals::OFFSETS, &offsets, true)
            .override_global(names::globals::KERNEL_OFFSETS, &kernel_offsets, true)
            .override_global(names::globals::BLOCK_KERNEL_OFFSETS, &block_kernel_offsets.as_ref().ok().copied().unwrap_or_default(), true)
            .override_global(names::globals::PERF_ENABLED, &mask, true)
            .load(PROBES_OBJECT)
            .map_err(|source| ProbeError::Load { source: Box::new(source) })?;
        let mut probes = Self {
            ebpf,
            forgotten: HashSet::new(),
            floor: Mutex::new(Floor::default()),
            capabilities: Capabilities {
                sched: GroupStatus::Attached,
                block: GroupStatus::Attached,
                net: GroupStatus::Attached,
                perf: perf_status,
                block_completion: None,
            },
            _counters: Vec::new(),
        };
        for set in &counters {
            let map = probes.ebpf.map(set.map).ok_or(ProbeError::MissingMap { name: set.map })?;
            let Map::PerfEventArray(data) = map else {
                return Err(ProbeError::MissingMap { name: set.map });
            };
            perf::install(data.fd().as_fd().as_raw_fd(), set)?;
        }
        probes._counters = counters;

        // Counters must be in place before sched_switch reads them.
        for program in SCHED_PROGRAMS {
            probes.attach_btf_tracepoint(program, &kernel_btf)?;
        }
        probes.attach_sched_tick()?;
        probes.capabilities.block = if config.groups.block {
            GroupStatus::from_result(block_layout.and_then(|()| {
                probes.attach_tracepoint(names::PROG_BLOCK_BIO_QUEUE, "block", "block_bio_queue")?;
                probes.attach_tracepoint(names::PROG_BLOCK_ISSUE, "block", "block_rq_issue")?;
                probes.capabilities.block_completion = Some(probes.attach_block_complete(config.block_completion, block_kernel_offsets, &kernel_btf)?);
                Ok(())
            }))
        } else {
            turned_off("probes.block")
        };
        probes.capabilities.net = if config.groups.net { GroupStatus::from_result(probes.attach_net(config.cgroup2_root.as_deref())) } else { turned_off("probes.net") };
        Ok(probes)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The block completion program attached; None when the block group is not.
    pub fn block_completion(&self) -> Option<BlockCompletion> {
        self.capabilities.block_completion.as_ref().map(|c| match c {
            CompletionProbe::Typed => BlockCompletion::Typed,
            CompletionProbe::Classic { .. } => BlockCompletion::Classic,
        })
    }

    /// True when the loaded object has a map with this name.
    pub fn has_map(&self, name: &str) -> bool {
        self.ebpf.map(name).is_some()
    }

    /// True when the loaded object has a program with this name.
    pub fn has_program(&self, name: &str) -> bool {
        self.ebpf.program(name).is_some()
    }

    fn attach_tracepoint(&mut self, program: &'static str, group: &str, event: &str) -> Result<(), ProbeError> {
        let prog: &mut TracePoint = program_of(&mut self.ebpf, program)?;
        prog.load().map_err(ProbeError::program(program, "load"))?;
        prog.attach(group, event).map_err(ProbeError::program(program, "attach"))?;
        Ok(())
    }

    fn attach_btf_tracepoint(&mut self, program: &'static str, kernel_btf: &Btf) -> Result<(), ProbeError> {
        // The scheduler programs are named after their tracepoints.
        self.attach_btf_tracepoint_to(program, program, kernel_btf)
    }

    fn attach_btf_tracepoint_to(&mut self, program: &'static str, tracepoint: &str, kernel_btf: &Btf) -> Result<(), ProbeError> {
        let prog: &mut BtfTracePoint = program_of(&mut self.ebpf, program)?;
        prog.load(tracepoint, kernel_btf).map_err(ProbeError::program(program, "load"))?;
        prog.attach().map_err(ProbeError::program(program, "attach"))?;
        Ok(())
    }

    /// The BTF-typed block completion where the kernel's BTF has its fields and the kernel
    /// takes it; the classic tracepoint otherwise, which the kernel skips while another
    /// block program runs on that CPU (see `skipped`).
    fn attach_block_complete(&mut self, prefer: BlockCompletion, offsets: Result<BlockKernelOffsets, btf::BtfError>, kernel_btf: &Btf) -> Result<CompletionProbe, ProbeError> {
        let reason = match prefer {
            BlockCompletion::Classic => "asked for by the probe configuration".to_string(),
            BlockCompletion::Typed => {
                let typed = match offsets {
                    Ok(_) => self.attach_btf_tracepoint_to(names::PROG_BLOCK_COMPLETE_BTF, "block_rq_complete", kernel_btf).map_err(|e| error_chain(&e)),
                    Err(e) => Err(e.to_string()),
                };
                let Err(reason) = typed else { return Ok(CompletionProbe::Typed) };
                tracing::warn!(%reason, "block completions through the classic tracepoint, which misses those that interrupt another block probe");
                reason
            }
        };
        self.attach_tracepoint(names::PROG_BLOCK_COMPLETE, "block", "block_rq_complete")?;
        Ok(CompletionProbe::Classic { reason })
    }

    /// The 10 Hz per-CPU clock that charges long-running tasks between switches (see
    /// agent-ebpf `sched_tick`), on every online CPU.
    fn attach_sched_tick(&mut self) -> Result<(), ProbeError> {
        let program = names::PROG_SCHED_TICK;
        let prog: &mut PerfEvent = program_of(&mut self.ebpf, program)?;
        prog.load().map_err(ProbeError::program(program, "load"))?;
        let cpus = aya::util::online_cpus().map_err(|(_, source)| ProbeError::ReadProcFile { path: "/sys/devices/system/cpu/online".into(), source })?;
        for cpu in cpus {
            prog.attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Period(1_000_000_000 / SCHED_TICK_HZ),
                false,
            )
            .map_err(ProbeError::program(program, "attach"))?;
        }
        Ok(())
    }

    fn attach_net(&mut self, root: Option<&Path>) -> Result<(), ProbeError> {
        let root = match root {
            Some(root) => root.to_path_buf(),
            None => cgroup2_mount()?,
        };
        let cgroup = File::open(&root).map_err(|source| ProbeError::CgroupOpen { path: root.clone(), source })?;
        for (program, kind) in [(names::PROG_NET_INGRESS, CgroupSkbAttachType::Ingress), (names::PROG_NET_EGRESS, CgroupSkbAttachType::Egress)] {
            let prog: &mut CgroupSkb = program_of(&mut self.ebpf, program)?;
            prog.load().map_err(ProbeError::program(program, "load"))?;
            // On 5.7+ aya attaches through a bpf_link, which always coexists with other
            // programs on the root; link_create rejects BPF_F_ALLOW_MULTI, so no flags.
            prog.attach(&cgroup, kind, CgroupAttachMode::Single)
                .map_err(ProbeError::program(program, "attach"))?;
        }
        Ok(())
    }
}

/// The program `name` from the loaded object, as its expected type; a missing program and
/// one of another type are both reported as missing (the object does not match the loader).
fn program_of<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .ok_or(ProbeError::MissingProgram { name })?
        .try_into()
        .map_err(|_| ProbeError::MissingProgram { name })
}

/// How often each CPU charges its running task (bounds the on-CPU accounting lag to 100 ms).
/// A fixed cpu-clock period (ns), not a frequency: on 6.1 the frequency mode never fired here.
const SCHED_TICK_HZ: u64 = 10;

const SCHED_PROGRAMS: [&str; 4] = [
    names::PROG_SCHED_SWITCH,
    names::PROG_SCHED_WAKEUP,
    names::PROG_SCHED_WAKEUP_NEW,
    names::PROG_SCHED_MIGRATE,
];

/// The cgroup2 mount point from /proc/self/mountinfo (never assumed to be /sys/fs/cgroup:
/// on hybrid hosts it is /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> Result<PathBuf, ProbeError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|source| ProbeError::ReadProcFile { path: path.into(), source })?;
    find_cgroup2(&text).ok_or(ProbeError::NoCgroup2)
}

fn find_cgroup2(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// An error and its sources on one line, like anyhow's `{:#}`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_hybrid_and_unified_hosts() {
        let hybrid = "30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs ro\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(find_cgroup2(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(find_cgroup2(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(find_cgroup2("1 0 0:1 / / rw - ext4 /dev/vda rw\n"), None);
    }
}
