//! The configuration files embedded in the Kubernetes ConfigMaps load with the real config
//! types (the schema check in xtask cannot see inside them).
use std::path::{Path, PathBuf};

fn manifest(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The literal block under `<key>: |` in a ConfigMap, de-indented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().unwrap_or_else(|| panic!("no `{key}: |` block"));
    let base = header.len() - header.trim_start().len() + 2;
    let body: Vec<&str> = lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= base).collect();
    body.iter().map(|l| l.get(base..).unwrap_or("")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_daemonset_agent_config_loads() {
    let text = block(&manifest("agent.yaml"), "agent.toml");
    let cfg = truce_agent::config::AgentConfig::parse(&text, Path::new("deploy/k8s/agent.yaml"))
        .unwrap_or_else(|e| panic!("the DaemonSet's agent.toml does not load: {e}\n{text}"));
    assert_eq!(cfg.endpoint_specs, vec!["truce-arbiter.truce.svc.cluster.local:7447".to_string()]);
    assert_eq!(cfg.certs_dir, PathBuf::from("/etc/truce/certs"));
    assert_eq!(cfg.journal, PathBuf::from("/var/lib/truce/journal.jsonl"), "the journal must be on the hostPath volume");
}

#[test]
fn the_statefulset_arbiter_config_loads() {
    let text = block(&manifest("arbiter.yaml"), "arbiter.toml");
    let path = std::env::temp_dir().join(format!("truce-k8s-arbiter-{}.toml", std::process::id()));
    std::fs::write(&path, &text).expect("write");
    let loaded = truce_arbiter::config::FileConfig::load(&path);
    let _ = std::fs::remove_file(&path);
    let file = loaded.unwrap_or_else(|e| panic!("the StatefulSet's arbiter.toml does not load: {e}\n{text}"));
    file.validate().unwrap_or_else(|e| panic!("the StatefulSet's arbiter.toml is invalid: {e}"));
    assert_eq!(file.certs_dir, PathBuf::from("/etc/truce/certs"));
}

#[test]
fn a_broken_block_is_caught() {
    let text = block(&manifest("agent.yaml"), "agent.toml").replace("period = \"1s\"", "period = \"often\"");
    assert!(truce_agent::config::AgentConfig::parse(&text, Path::new("x")).is_err());
}
