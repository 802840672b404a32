//! The daemon's status file: what it holds and why, rewritten atomically each period so that
//! `truce-agent explain` (a separate process, possibly run while the daemon is down) can say
//! why a cgroup is where it is. The journal says what truce changed; this says why.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use truce_common::model::{Reason, Setting, Timestamp};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub host: String,
    pub pid: u32,
    pub at: Timestamp,
    pub period_ms: u64,
    /// Whether decisions are applied (false on a host that can only observe).
    pub enforcing: bool,
    pub leases: Vec<LeaseStatus>,
    pub workloads: Vec<WorkloadStatus>,
    /// The daemon's own cgroup, which it never manages even under its roots (absent in a
    /// status written before it was recorded, or when the daemon could not tell).
    #[serde(default)]
    pub own_cgroup: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub lease: u64,
    pub cgroup: String,
    pub file: String,
    pub setting: Setting,
    pub start: Timestamp,
    pub expiry: Timestamp,
    pub decision: u64,
    pub bids: Vec<u64>,
    pub reasons: Vec<Reason>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub cgroup: String,
    pub id: u64,
    pub name: String,
    /// Interference score this period (`None` before the estimator has one).
    pub score: Option<f64>,
    /// The top antagonist's explanation, if any.
    pub antagonist: Option<String>,
    pub last_bid: Option<BidStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BidStatus {
    pub id: u64,
    pub at: Timestamp,
    pub asks: Vec<String>,
    pub releases: Vec<String>,
    pub slo_breach: bool,
    pub reasons: Vec<Reason>,
}

/// Where the status lives: next to the journal.
pub fn status_path(journal: &Path) -> PathBuf {
    journal.with_file_name("status.json")
}

impl Status {
    /// Write to a temporary file and rename it over the old one, so a reader never sees half.
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    pub fn read(path: &Path) -> std::io::Result<Status> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}
