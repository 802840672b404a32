use std::io;
use std::path::PathBuf;

/// Failures reading cgroup v2 state. A cgroup that vanished between listing and reading is
/// common (workloads come and go) and has its own variant so callers can drop it quietly.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} vanished")]
    Vanished { path: PathBuf },
    #[error("no cgroup2 mount in {mountinfo}: truce needs the unified hierarchy (cgroup v2)")]
    NoCgroup2 { mountinfo: PathBuf },
    #[error("malformed line in {file}: {line:?}")]
    Malformed { file: String, line: String },
}

impl CgroupError {
    pub(crate) fn read(path: PathBuf, source: io::Error) -> CgroupError {
        if source.kind() == io::ErrorKind::NotFound {
            CgroupError::Vanished { path }
        } else {
            CgroupError::Read { path, source }
        }
    }
}
