use super::*;

#[test]
fn printed_default_parses_to_the_default() {
    let parsed: FileConfig = toml::from_str(&default_toml()).expect("default parses");
    assert_eq!(parsed, FileConfig::default());
    assert!(parsed.validate().is_ok());
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    assert!(toml::from_str::<FileConfig>("listne = \"x\"").is_err());
    let bad = FileConfig { keep_alive_ms: 40_000, ..FileConfig::default() };
    let err = bad.validate().expect_err("keep-alive beyond idle timeout");
    assert!(err.to_string().contains("keep_alive_ms"), "{err}");
    let bad = FileConfig { listen: "nowhere".into(), ..FileConfig::default() };
    assert!(bad.validate().expect_err("bad listen").to_string().contains("listen"));
    let bad = FileConfig { market: MarketSection { floor_fraction: 2.0, ..MarketSection::default() }, ..FileConfig::default() };
    assert!(bad.validate().expect_err("bad fraction").to_string().contains("market.floor_fraction"));
    let bad = FileConfig { market: MarketSection { lease_hysteresis: f64::NAN, ..MarketSection::default() }, ..FileConfig::default() };
    assert!(bad.validate().expect_err("NaN hysteresis").to_string().contains("market.lease_hysteresis"));
    let bad = FileConfig { market: MarketSection { usage_headroom: -1.0, ..MarketSection::default() }, ..FileConfig::default() };
    assert!(bad.validate().expect_err("negative headroom").to_string().contains("market.usage_headroom"));
    let bad = FileConfig { metrics: MetricsSection { enabled: true, listen: "loopback".into() }, ..FileConfig::default() };
    assert!(bad.validate().expect_err("bad metrics.listen").to_string().contains("metrics.listen"));
    let off = FileConfig { metrics: MetricsSection { enabled: false, listen: "loopback".into() }, ..FileConfig::default() };
    assert_eq!(off.validate().expect("disabled is not parsed").metrics, None);
    let bad = FileConfig { udp_buffer_bytes: 1024, ..FileConfig::default() };
    assert!(bad.validate().expect_err("tiny buffer").to_string().contains("udp_buffer_bytes"));
    let bad = FileConfig { max_workloads_per_host: 0, ..FileConfig::default() };
    assert!(bad.validate().expect_err("no workloads").to_string().contains("max_workloads_per_host"));
    let set: FileConfig = toml::from_str("udp_buffer_bytes = 8388608\nmax_workloads_per_host = 5").expect("keys parse");
    let s = set.validate().expect("valid");
    assert_eq!((s.server.udp_buffer_bytes, s.server.max_workloads_per_host), (8_388_608, 5));
    let err = toml::from_str::<FileConfig>("resolver = \"auction\"").expect_err("unknown resolver");
    assert!(err.to_string().contains("resolver"), "{err}");
}

/// The printed default is the documentation (docs/operations.md is generated from it):
/// a field missing from it would be an undocumented key.
#[test]
fn every_field_is_in_the_printed_default() {
    let value = toml::Value::try_from(FileConfig::default()).expect("the default serializes");
    let mut missing = Vec::new();
    for (key, v) in value.as_table().into_iter().flatten() {
        // A table inside a section is its own `[section.table]` header.
        let nested: Vec<String> = match v.as_table() {
            Some(t) => t.iter().map(|(k, inner)| if inner.is_table() { format!("[{key}.{k}]") } else { format!("{k} = ") }).collect(),
            None => vec![format!("{key} = ")],
        };
        let text = default_toml();
        missing.extend(nested.into_iter().filter(|line| !text.lines().any(|l| l.starts_with(line.as_str()))));
    }
    assert!(missing.is_empty(), "keys missing from DEFAULT_TOML: {missing:?}");
}
