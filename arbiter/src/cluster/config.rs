//! The `[cluster]` section of the arbiter's configuration: this arbiter as one replica of an
//! openraft group (docs/cluster.md). Validated into a [`ReplicaConfig`].

use super::replica::{DEFAULT_TIMING, ReplicaConfig};
use super::types::ClusterNode;
use crate::peer::PeerTls;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The section as written in `DEFAULT_TOML` (crate::config), comments included.
pub const DEFAULT_SECTION: &str = r#"
# Redundant arbiters (docs/cluster.md): this arbiter is one replica of an openraft group; the
# leader runs the market rounds, followers redirect agents to it.
[cluster]
# Off: a single arbiter with its own ledger.redb in state_dir.
enabled = false
# This replica's id in the group (unique, above 0).
id = 1
# Its peer certificate's name: `truce-arbiter certs peer --dir <certs_dir> --name <name>`.
name = "arbiter-1"
# UDP address of the raft endpoint (QUIC, mutual TLS with peer certificates, ALPN truce-raft/1).
raft_listen = "0.0.0.0:7448"
# Initialise a new group with `members` on first start. Set it on one replica; it does
# nothing once the replica has state (raft.redb in state_dir).
bootstrap = false
# The leader's heartbeat, which is also how long one raft RPC may take (openraft drops a
# slower append and retries: under CPU load 150 ms was too short), and how long followers wait
# without one before electing another (openraft waits election_timeout_max_ms, then a random
# time between the two timeouts). The heartbeat must be below election_timeout_min_ms.
heartbeat_ms = 250
election_timeout_min_ms = 400
election_timeout_max_ms = 800
# How long a round's ledger write waits for a majority before the round hands out nothing.
write_timeout_ms = 2000
# Snapshot the ledger every this many raft entries (the log behind it is dropped).
snapshot_every = 1000
# The group at bootstrap: one [[cluster.members]] table per replica with its id, name,
# raft_addr (its raft endpoint) and agent_addr (where agents reach it; named in redirects).
# Later changes: `truce-arbiter cluster add|remove`.
members = []
"#;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    pub enabled: bool,
    pub id: u64,
    pub name: String,
    pub raft_listen: String,
    pub bootstrap: bool,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub write_timeout_ms: u64,
    pub snapshot_every: u64,
    pub members: Vec<MemberSection>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    pub id: u64,
    pub name: String,
    pub raft_addr: String,
    pub agent_addr: String,
}

impl Default for ClusterSection {
    fn default() -> Self {
        let (h, emin, emax) = DEFAULT_TIMING;
        ClusterSection {
            enabled: false,
            id: 1,
            name: "arbiter-1".into(),
            raft_listen: "0.0.0.0:7448".into(),
            bootstrap: false,
            heartbeat_ms: h,
            election_timeout_min_ms: emin,
            election_timeout_max_ms: emax,
            write_timeout_ms: 2_000,
            snapshot_every: 1_000,
            members: Vec::new(),
        }
    }
}

/// A validated `[cluster]`: how to start the replica.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub replica: ReplicaConfig,
    pub bootstrap: bool,
    pub write_timeout: Duration,
}

/// A bad `[cluster]` key: `key` is its full path (`cluster.members[1].raft_addr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` is invalid: {reason}")]
pub struct ClusterConfigError {
    pub key: String,
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ClusterConfigError {
    ClusterConfigError { key: key.into(), reason: reason.into() }
}

fn addr(key: String, v: &str) -> Result<SocketAddr, ClusterConfigError> {
    v.parse().map_err(|e: std::net::AddrParseError| invalid(key, format!("{v:?}: {e}")))
}

impl ClusterSection {
    /// `None` when disabled. The peer certificate comes from `certs_dir`, the raft store is
    /// `state_dir/raft.redb`.
    pub fn validate(&self, certs_dir: &Path, state_dir: &Path) -> Result<Option<ClusterSettings>, ClusterConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        if self.id == 0 {
            return Err(invalid("cluster.id", "must be above 0"));
        }
        if self.name.is_empty() {
            return Err(invalid("cluster.name", "must name this replica's peer certificate"));
        }
        let raft_listen = addr("cluster.raft_listen".into(), &self.raft_listen)?;
        if self.heartbeat_ms == 0 || self.heartbeat_ms >= self.election_timeout_min_ms {
            return Err(invalid("cluster.heartbeat_ms", "must be above 0 and below cluster.election_timeout_min_ms"));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return Err(invalid("cluster.election_timeout_min_ms", "must be below cluster.election_timeout_max_ms"));
        }
        if self.write_timeout_ms == 0 {
            return Err(invalid("cluster.write_timeout_ms", "must be above 0"));
        }
        let mut members = BTreeMap::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.id == 0 {
                return Err(invalid(format!("cluster.members[{i}].id"), "must be above 0"));
            }
            addr(format!("cluster.members[{i}].raft_addr"), &m.raft_addr)?;
            addr(format!("cluster.members[{i}].agent_addr"), &m.agent_addr)?;
            let node = ClusterNode { name: m.name.clone(), raft_addr: m.raft_addr.clone(), agent_addr: m.agent_addr.clone() };
            if members.insert(m.id, node).is_some() {
                return Err(invalid(format!("cluster.members[{i}].id"), format!("replica {} is listed twice", m.id)));
            }
        }
        let me = members.get(&self.id).ok_or_else(|| invalid("cluster.members", format!("must list this replica (cluster.id = {})", self.id)))?;
        if me.name != self.name {
            return Err(invalid("cluster.name", format!("{:?} differs from the members entry for id {} ({:?})", self.name, self.id, me.name)));
        }
        let replica = ReplicaConfig {
            id: self.id,
            name: self.name.clone(),
            raft_listen,
            agent_addr: me.agent_addr.clone(),
            tls: PeerTls::in_dir(certs_dir, &self.name),
            db_path: state_dir.join("raft.redb"),
            members,
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            snapshot_every: self.snapshot_every.max(1),
        };
        Ok(Some(ClusterSettings { replica, bootstrap: self.bootstrap, write_timeout: Duration::from_millis(self.write_timeout_ms) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, raft: &str) -> MemberSection {
        MemberSection { id, name: format!("arbiter-{id}"), raft_addr: raft.into(), agent_addr: "127.0.0.1:7447".into() }
    }

    #[test]
    fn the_default_section_parses_to_the_default_and_is_off() {
        #[derive(Deserialize)]
        struct Wrap {
            cluster: ClusterSection,
        }
        let w: Wrap = toml::from_str(DEFAULT_SECTION).expect("parses");
        assert_eq!(w.cluster, ClusterSection::default());
        assert!(w.cluster.validate(Path::new("/c"), Path::new("/s")).expect("valid").is_none());
    }

    #[test]
    fn bad_keys_are_named_with_their_path() {
        let base = ClusterSection { enabled: true, members: vec![member(1, "127.0.0.1:7448"), member(2, "127.0.0.1:7449")], ..ClusterSection::default() };
        let ok = base.validate(Path::new("/c"), Path::new("/s")).expect("valid").expect("enabled");
        assert_eq!(ok.replica.db_path, Path::new("/s/raft.redb"));
        assert_eq!(ok.replica.members.len(), 2);
        let mut bad = base.clone();
        bad.members[1].raft_addr = "nowhere".into();
        assert_eq!(bad.validate(Path::new("/c"), Path::new("/s")).expect_err("bad addr").key, "cluster.members[1].raft_addr");
        let bad = ClusterSection { id: 3, ..base.clone() };
        assert_eq!(bad.validate(Path::new("/c"), Path::new("/s")).expect_err("absent").key, "cluster.members");
        let bad = ClusterSection { heartbeat_ms: 700, ..base.clone() };
        assert_eq!(bad.validate(Path::new("/c"), Path::new("/s")).expect_err("slow heartbeat").key, "cluster.heartbeat_ms");
        let mut bad = base;
        bad.members[1].id = 1;
        assert!(bad.validate(Path::new("/c"), Path::new("/s")).expect_err("twice").reason.contains("twice"));
    }
}
