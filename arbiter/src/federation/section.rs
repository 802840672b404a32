//! The `[federation]` section of the arbiter's configuration: this arbiter as one site of a
//! federation (docs/federation.md). Validated into [`FederationSettings`] for `serve`.

use super::config::SiteConfig;
use super::kube::KubeTarget;
use crate::peer::{PeerAddrs, PeerTls};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The section as written in the default configuration, comments included.
pub const DEFAULT_SECTION: &str = r#"
# Federation across sites (docs/federation.md): this arbiter forecasts its hosts' utilisation
# from its agents' reports, proposes migrations off hosts headed for overload, and votes on
# other sites' proposals. Accepted migrations run through `executor`.
[federation]
# Off: no site runtime, no federation endpoint.
enabled = false
# UDP address of the federation endpoint (QUIC, mutual TLS with peer certificates, ALPN
# truce-fed/1). The site's certificate: `truce-arbiter certs peer --name <site.name>`.
listen = "0.0.0.0:7449"
# "command" (run `command` with the order as JSON on stdin) or "kube" (cordon and evict
# through the Kubernetes API; [federation.kube]).
executor = "command"
# The hook's program and arguments (executor = "command").
command = []
# How long one executor order may take.
executor_timeout_ms = 60000
# A host whose agent has not reported usage for this long is left out of the forecast.
host_stale_ms = 30000
# The other sites: one [[federation.peers]] table each, with its name (its certificate's)
# and addr: its federation endpoint, or, for a site run by a replica group, the list of its
# replicas' endpoints (only the leader answers; they are tried in turn).
peers = []

# The Kubernetes API server (executor = "kube"). Without api_server everything is inferred
# (KUBECONFIG, ~/.kube/config, the in-cluster service account).
[federation.kube]
# The API server's https:// URL.
# api_server = "https://10.0.0.1:6443"
# PEM CA bundle that signed the API server's certificate.
# ca_cert = "/etc/truce/kube-ca.pem"
# File holding a bearer token (e.g. a service account token).
# token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token"

# This site's forecast and vote (docs/federation.md has the formulas).
[federation.site]
# This site's name; other sites list it under [[federation.peers]].
name = "site"
# How often the site forecasts, publishes its status and may propose.
period_ms = 10000
# Utilisation samples kept per host, and the forecast horizon in periods.
history = 60
horizon_steps = 6
# A host above overload_level (fraction of capacity) is overloaded; a proposal moves
# workloads until its forecast falls to target_level.
overload_level = 0.9
target_level = 0.75
# Overload probability at which this site proposes (and, as a bystander, agrees).
threshold = 0.5
# Forecast errors kept per site for MASE, and how many before MASE counts.
accuracy_window = 120
accuracy_min_points = 5
# Periods the source host is watched after a migration, and the gain (fraction of what the
# moved workloads used) it must show.
watch_periods = 6
min_gain_fraction = 0.5
# Periods before the same host may be proposed again after a vote.
cooldown_periods = 30
# When the gain does not show: roll back and propose the next destination (true), or only
# roll back.
propose_alternative = true
# How long a proposer waits for votes before counting what it has.
vote_timeout_ms = 5000

# The forecast model of this site's hosts.
[federation.site.model]
# "holt" (Holt's linear trend) or "mean" (the history's mean, blind to trends: a
# deliberately poor forecaster, for drills).
model = "holt"
# Holt's level and trend smoothing (model = "holt" only).
alpha = 0.5
beta = 0.3

# How votes are weighted (1/MASE x criticality) and counted.
[federation.site.votes]
# A proposal passes when the approving weight exceeds this share of the weight cast.
pass_share = 0.5
# Votes needed before a proposal can pass.
min_votes = 1
# A site's MASE is clamped to [mase_floor, mase_cap] before 1/MASE weighs its vote.
mase_floor = 0.1
mase_cap = 100.0
# MASE assumed while too few of a site's forecasts have been checked.
mase_prior = 1.0
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    Command,
    Kube,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    pub enabled: bool,
    pub listen: String,
    pub executor: ExecutorKind,
    pub command: Vec<String>,
    pub executor_timeout_ms: u64,
    pub host_stale_ms: u64,
    pub peers: Vec<PeerSection>,
    pub kube: KubeTarget,
    pub site: SiteConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    pub name: String,
    pub addr: PeerAddrField,
}

/// `addr = "host:port"` or `addr = ["host:port", ...]` (every replica of a replicated site).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PeerAddrField {
    One(String),
    Each(Vec<String>),
}

impl PeerAddrField {
    fn listed(&self) -> Vec<&str> {
        match self {
            PeerAddrField::One(a) => vec![a.as_str()],
            PeerAddrField::Each(list) => list.iter().map(String::as_str).collect(),
        }
    }
}

impl From<&str> for PeerAddrField {
    fn from(a: &str) -> Self {
        PeerAddrField::One(a.to_string())
    }
}

impl Default for FederationSection {
    fn default() -> Self {
        FederationSection {
            enabled: false,
            listen: "0.0.0.0:7449".into(),
            executor: ExecutorKind::Command,
            command: Vec::new(),
            executor_timeout_ms: 60_000,
            host_stale_ms: 30_000,
            peers: Vec::new(),
            kube: KubeTarget::default(),
            site: SiteConfig::default(),
        }
    }
}

/// How an accepted migration is carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorSettings {
    Command { program: PathBuf, args: Vec<String>, timeout: Duration },
    Kube(KubeTarget),
}

/// A validated `[federation]`: how `serve` runs the site.
#[derive(Debug, Clone)]
pub struct FederationSettings {
    pub site: SiteConfig,
    pub listen: SocketAddr,
    pub tls: PeerTls,
    pub peers: BTreeMap<String, PeerAddrs>,
    pub executor: ExecutorSettings,
    pub host_stale: Duration,
}

/// A bad `[federation]` key: `key` is its full path (`federation.peers[1].addr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` is invalid: {reason}")]
pub struct FederationConfigError {
    pub key: String,
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> FederationConfigError {
    FederationConfigError { key: key.into(), reason: reason.into() }
}

impl FederationSection {
    /// `None` when disabled. The site's peer certificate comes from `certs_dir`.
    pub fn validate(&self, certs_dir: &Path) -> Result<Option<FederationSettings>, FederationConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let listen: SocketAddr = self.listen.parse().map_err(|e: std::net::AddrParseError| invalid("federation.listen", format!("{:?}: {e}", self.listen)))?;
        // SiteConfig names its keys as if they sat in [federation]; here they sit in [federation.site].
        self.site.validate().map_err(|(key, reason)| invalid(key.replacen("federation.", "federation.site.", 1), reason))?;
        let name = &self.site.name;
        if name.is_empty() || name.contains(['/', ' ']) {
            return Err(invalid("federation.site.name", format!("{name:?} must name this site's peer certificate")));
        }
        if self.site.vote_timeout_ms == 0 {
            return Err(invalid("federation.site.vote_timeout_ms", "must be above 0"));
        }
        if self.host_stale_ms == 0 {
            return Err(invalid("federation.host_stale_ms", "must be above 0"));
        }
        let mut peers = BTreeMap::new();
        for (i, p) in self.peers.iter().enumerate() {
            if p.name.is_empty() || p.name == *name {
                return Err(invalid(format!("federation.peers[{i}].name"), format!("{:?} must name another site", p.name)));
            }
            let key = format!("federation.peers[{i}].addr");
            let mut addrs = Vec::new();
            for a in p.addr.listed() {
                let addr: SocketAddr = a.parse().map_err(|e: std::net::AddrParseError| invalid(key.clone(), format!("{a:?}: {e}")))?;
                if addrs.contains(&addr) {
                    return Err(invalid(key, format!("{a:?} is listed twice")));
                }
                addrs.push(addr);
            }
            let addrs = PeerAddrs::new(addrs).ok_or_else(|| invalid(key.clone(), "lists no address"))?;
            if peers.insert(p.name.clone(), addrs).is_some() {
                return Err(invalid(format!("federation.peers[{i}].name"), format!("site {:?} is listed twice", p.name)));
            }
        }
        if peers.is_empty() {
            return Err(invalid("federation.peers", "must list at least one other site"));
        }
        let executor = match self.executor {
            ExecutorKind::Command => {
                let Some((program, args)) = self.command.split_first() else {
                    return Err(invalid("federation.command", "must name the hook's program with executor = \"command\""));
                };
                if self.executor_timeout_ms == 0 {
                    return Err(invalid("federation.executor_timeout_ms", "must be above 0"));
                }
                ExecutorSettings::Command { program: PathBuf::from(program), args: args.to_vec(), timeout: Duration::from_millis(self.executor_timeout_ms) }
            }
            ExecutorKind::Kube => {
                if let Some(url) = &self.kube.api_server
                    && !url.starts_with("https://")
                {
                    return Err(invalid("federation.kube.api_server", format!("{url:?} must be an https:// URL")));
                }
                ExecutorSettings::Kube(self.kube.clone())
            }
        };
        Ok(Some(FederationSettings {
            site: self.site.clone(),
            listen,
            tls: PeerTls::in_dir(certs_dir, name),
            peers,
            executor,
            host_stale: Duration::from_millis(self.host_stale_ms),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrap {
        federation: FederationSection,
    }

    #[test]
    fn the_default_section_parses_to_the_default_and_is_off() {
        let w: Wrap = toml::from_str(DEFAULT_SECTION).expect("parses");
        assert_eq!(w.federation, FederationSection::default());
        assert!(w.federation.validate(Path::new("/c")).expect("valid").is_none());
    }

    #[test]
    fn a_replicated_peer_lists_every_replica_and_they_are_dialled_in_order() {
        let text = "[federation]\nenabled = true\ncommand = [\"/bin/true\"]\n[federation.site]\nname = \"a\"\n\
                    [[federation.peers]]\nname = \"b\"\naddr = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n\
                    [[federation.peers]]\nname = \"c\"\naddr = \"127.0.0.1:4\"\n";
        let w: Wrap = toml::from_str(text).expect("parses");
        let s = w.federation.validate(Path::new("/c")).expect("valid").expect("enabled");
        let port = |p: &PeerAddrs| p.dial_order().iter().map(|a| a.port()).collect::<Vec<_>>();
        assert_eq!(port(&s.peers["b"]), vec![1, 2, 3]);
        assert_eq!(port(&s.peers["c"]), vec![4]);
    }

    #[test]
    fn bad_keys_are_named_with_their_path() {
        let base = FederationSection {
            enabled: true,
            command: vec!["/bin/true".into()],
            peers: vec![PeerSection { name: "b".into(), addr: "127.0.0.1:7449".into() }],
            site: SiteConfig { name: "a".into(), ..SiteConfig::default() },
            ..FederationSection::default()
        };
        let ok = base.validate(Path::new("/c")).expect("valid").expect("enabled");
        assert_eq!(ok.tls.cert, PeerTls::in_dir(Path::new("/c"), "a").cert);
        let key = |f: FederationSection| f.validate(Path::new("/c")).expect_err("refused").key;
        assert_eq!(key(FederationSection { command: vec![], ..base.clone() }), "federation.command");
        assert_eq!(key(FederationSection { listen: "x".into(), ..base.clone() }), "federation.listen");
        assert_eq!(key(FederationSection { peers: vec![], ..base.clone() }), "federation.peers");
        let mut bad = base.clone();
        bad.peers.push(PeerSection { name: "c".into(), addr: "nowhere".into() });
        assert_eq!(key(bad), "federation.peers[1].addr");
        let mut bad = base.clone();
        bad.peers[0].addr = PeerAddrField::Each(vec![]);
        assert_eq!(key(bad), "federation.peers[0].addr");
        let mut bad = base.clone();
        bad.peers[0].addr = PeerAddrField::Each(vec!["127.0.0.1:1".into(), "127.0.0.1:1".into()]);
        assert_eq!(key(bad), "federation.peers[0].addr");
        let mut bad = base.clone();
        bad.peers[0].name = "a".into();
        assert_eq!(key(bad), "federation.peers[0].name");
        let mut bad = base.clone();
        bad.site.threshold = 2.0;
        assert_eq!(key(bad), "federation.site.threshold");
        let mut bad = base.clone();
        bad.executor = ExecutorKind::Kube;
        bad.kube.api_server = Some("http://plain".into());
        assert_eq!(key(bad), "federation.kube.api_server");
    }
}
