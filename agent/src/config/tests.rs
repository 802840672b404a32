//! The configuration's parsing and validation, against the shipped default and broken files.
use super::*;

fn parse(t: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::parse(t, Path::new("agent.toml"))
}

#[test]
fn default_parses() {
    let c = parse(DEFAULT_TOML).expect("the printed default must load");
    assert_eq!(c.period, Duration::from_secs(1));
    assert_eq!(c.roots, vec!["/truce.slice".to_string()]);
    assert_eq!(c.telemetry.socket.as_deref(), Some(Path::new("/run/truce/agent.sock")));
    assert_eq!(c.telemetry.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9447))));
    assert_eq!(c.timing, SessionTiming { keep_alive: Duration::from_millis(500), idle_timeout: Duration::from_millis(1500), connect_timeout: Duration::from_secs(3) });
    assert_eq!(c.forecast_cpu_share, 0.01);
}

#[test]
fn a_config_without_session_timing_gets_the_defaults() {
    let old: String = DEFAULT_TOML.lines().filter(|l| !l.starts_with("keep_alive") && !l.starts_with("idle_timeout") && !l.starts_with("connect_timeout")).collect::<Vec<_>>().join("\n");
    assert_eq!(parse(&old).expect("older configs keep working").timing, parse(DEFAULT_TOML).expect("default").timing);
}

#[test]
fn a_config_without_the_newer_sections_still_loads() {
    let old = DEFAULT_TOML.split("\n[inspect]").next().expect("prefix");
    let c = parse(old).expect("older configs keep working");
    assert!(c.telemetry.socket.is_some() && c.telemetry.metrics_listen.is_some());
    assert_eq!(c.forecast_cpu_share, 0.01);
}

#[test]
fn errors_name_the_key() {
    let bad = DEFAULT_TOML.replace("127.0.0.1:7447", "no where");
    assert!(parse(&bad).map(|_| ()).expect_err("must be refused").to_string().contains("arbiter.endpoints[0]"));
    let bad = DEFAULT_TOML.replace("\"/truce.slice\"", "\"/a/../b\"");
    assert!(parse(&bad).map(|_| ()).expect_err("must be refused").to_string().contains("enforce.roots[0]"));
    let bad = DEFAULT_TOML.replace("period = \"1s\"", "period = \"soon\"");
    assert!(parse(&bad).map(|_| ()).expect_err("must be refused").to_string().contains("period"));
    let bad = DEFAULT_TOML.replace("127.0.0.1:9447", "localhost");
    assert!(parse(&bad).map(|_| ()).expect_err("bad metrics.listen").to_string().contains("metrics.listen"));
    let bad = DEFAULT_TOML.replace("/run/truce/agent.sock", "agent.sock");
    assert!(parse(&bad).map(|_| ()).expect_err("relative inspect.socket").to_string().contains("inspect.socket"));
    let bad = DEFAULT_TOML.replace("keep_alive = \"500ms\"", "keep_alive = \"5s\"");
    assert!(parse(&bad).map(|_| ()).expect_err("keep-alive above the idle timeout").to_string().contains("arbiter.keep_alive"));
    let bad = DEFAULT_TOML.replace("idle_timeout = \"1500ms\"", "idle_timeout = \"two\"");
    assert!(parse(&bad).map(|_| ()).expect_err("unparsable").to_string().contains("arbiter.idle_timeout"));
    let bad = DEFAULT_TOML.replace("connect_timeout = \"3s\"", "connect_timeout = \"1ms\"");
    assert!(parse(&bad).map(|_| ()).expect_err("too short").to_string().contains("arbiter.connect_timeout"));
    for share in ["1.5", "-0.1", "nan"] {
        let bad = DEFAULT_TOML.replace("cpu_share = 0.01", &format!("cpu_share = {share}"));
        assert!(parse(&bad).map(|_| ()).expect_err("not a share").to_string().contains("forecast.cpu_share"), "{share}");
    }
    let bad = format!("{DEFAULT_TOML}\nbogus = 1\n");
    assert!(parse(&bad).map(|_| ()).expect_err("must be refused").to_string().contains("bogus"));
}

#[test]
fn optional_probe_groups_are_on_unless_turned_off() {
    assert_eq!(parse(DEFAULT_TOML).expect("default").probes, crate::probes::ProbeGroups { block: true, net: true });
    let without = DEFAULT_TOML.split("\n[probes]").next().expect("prefix").to_string() + "\n[forecast]\ncpu_share = 0.01\n";
    assert_eq!(parse(&without).expect("older configs keep working").probes, crate::probes::ProbeGroups::default());
    let off = DEFAULT_TOML.replace("block = true", "block = false");
    assert_eq!(parse(&off).expect("block off").probes, crate::probes::ProbeGroups { block: false, net: true });
    let typo = DEFAULT_TOML.replace("block = true", "blok = false");
    assert!(parse(&typo).map(|_| ()).expect_err("unknown key").to_string().contains("blok"));
}

#[test]
fn endpoint_names_resolve_at_load_in_order() {
    let dir = std::env::temp_dir().join(format!("truce-agent-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("agent.toml");
    let text = DEFAULT_TOML.replace("[\"127.0.0.1:7447\"]", "[\"127.0.0.2:7000\", \"localhost:7447\"]");
    let parsed = parse(&text).expect("a name:port endpoint parses");
    assert_eq!(parsed.endpoints, vec!["127.0.0.2:7000".parse::<SocketAddr>().expect("addr")], "parse does no DNS");
    std::fs::write(&path, &text).expect("write");
    let loaded = AgentConfig::load_for(&path, Some("node-7")).expect("localhost resolves");
    assert_eq!(loaded.endpoints[0], "127.0.0.2:7000".parse::<SocketAddr>().expect("addr"));
    assert!(loaded.endpoints[1..].iter().all(|a| a.ip().is_loopback() && a.port() == 7447), "{:?}", loaded.endpoints);
    assert_eq!(loaded.host, "node-7");
    let err = AgentConfig::load_for(&path, Some("bad host")).map(|_| ()).expect_err("must be refused").to_string();
    assert!(err.contains("TRUCE_AGENT_HOST"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The printed default is the documentation (docs/operations.md is generated from it):
/// every field of the file types must appear in it, set or as a commented example.
#[test]
fn every_field_is_in_the_printed_default() {
    let all_set: String = DEFAULT_TOML.lines().map(|l| l.strip_prefix("# workloads = ").map_or(l.to_string(), |v| format!("workloads = {v}"))).collect::<Vec<_>>().join("\n");
    let file: FileConfig = toml::from_str(&all_set).expect("the default with its optional keys set parses");
    let value = toml::Value::try_from(&file).expect("serializes");
    let mut missing = Vec::new();
    for (key, v) in value.as_table().into_iter().flatten() {
        let names: Vec<String> = match v.as_table() {
            Some(t) => t.keys().cloned().collect(),
            None => vec![key.clone()],
        };
        for n in names {
            let set = format!("{n} = ");
            let example = format!("# {n} = ");
            if !DEFAULT_TOML.lines().any(|l| l.starts_with(&set) || l.starts_with(&example)) {
                missing.push(n);
            }
        }
    }
    assert!(missing.is_empty(), "keys missing from DEFAULT_TOML: {missing:?}");
}
