//! Errors at the probes boundary.
use std::{io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("missing privilege: {missing}; run as root or grant these capabilities to truce-agent")]
    MissingPrivilege { missing: String },
    #[error("failed to read {path}")]
    ReadProcFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no tracefs found and mounting one at {path} failed")]
    TracefsMount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("failed to read the format of tracepoint {event} at {path}")]
    FormatRead {
        event: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tracepoint {event} has no field `{field}` in its format file")]
    FormatField { event: String, field: &'static str },
    #[error("tracepoint {event}: field `{field}` {reason}")]
    FormatLayout { event: String, field: &'static str, reason: String },
    #[error("failed to find the kernel struct offsets the scheduler probes read")]
    Btf {
        #[source]
        source: super::btf::BtfError,
    },
    #[error("failed to parse the kernel's BTF for the BTF-typed tracepoints")]
    KernelBtf {
        #[source]
        source: Box<aya::BtfError>,
    },
    #[error("no cgroup2 mount in /proc/self/mountinfo")]
    NoCgroup2,
    #[error("failed to open the cgroup2 root {path}")]
    CgroupOpen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the kernel rejected the eBPF object")]
    Load {
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("map `{name}` is missing from the loaded object")]
    MissingMap { name: &'static str },
    #[error("program `{name}` is missing from the loaded object or has the wrong type")]
    MissingProgram { name: &'static str },
    #[error("failed to {action} program `{program}`")]
    Program {
        program: &'static str,
        action: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("failed to access map `{map}`")]
    Map {
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("failed to put perf counter fd for cpu {cpu} into map `{map}`")]
    PerfMapUpdate {
        map: &'static str,
        cpu: u32,
        #[source]
        source: io::Error,
    },
    #[error("failed to start the probe owner thread")]
    Spawn {
        #[source]
        source: io::Error,
    },
    #[error("the probe owner task has stopped")]
    TaskGone,
}

impl ProbeError {
    pub(crate) fn map(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| Self::Map { map, source: Box::new(source) }
    }

    pub(crate) fn program(program: &'static str, action: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> Self {
        move |source| Self::Program { program, action, source: Box::new(source) }
    }
}
