//! docs/operations.md's configuration reference is generated from the commented defaults the
//! binaries print; this fails when the committed doc differs. Regenerate: `cargo xtask docs`
//! (or TRUCE_BLESS=1 on this test).
use std::path::Path;
use truce_tests::config_doc::{keys, reference, splice};

#[test]
fn the_configuration_reference_in_operations_md_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    let doc = std::fs::read_to_string(&path).expect("docs/operations.md");
    let generated = splice(&doc, &reference()).expect("docs/operations.md has the generated-block markers");
    if std::env::var_os("TRUCE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing docs/operations.md");
        return;
    }
    assert!(generated == doc, "docs/operations.md's configuration reference is stale: run `cargo xtask docs` and commit the result");
}

#[test]
fn every_documented_key_has_a_meaning() {
    for (name, text) in [("agent", truce_agent::config::DEFAULT_TOML), ("arbiter", truce_arbiter::config::default_toml().as_str())] {
        let (keys, _) = keys(text);
        assert!(keys.len() >= 8, "{name}: only {} keys found", keys.len());
        for k in keys {
            assert!(!k.meaning.is_empty(), "{name}: key `{}` has no comment above it in DEFAULT_TOML", k.key);
        }
    }
}
