//! The configuration reference in docs/operations.md, rendered from the commented defaults
//! the binaries print (`config --print-default`), which the config types' own tests tie to
//! the types. `tests/operations_doc.rs` fails when the committed doc differs;
//! `cargo xtask docs` rewrites it.

/// Marks around the generated part of docs/operations.md.
pub const BEGIN: &str = "<!-- BEGIN GENERATED: configuration reference (cargo xtask docs) -->";
pub const END: &str = "<!-- END GENERATED -->";

/// One key of a commented TOML default.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyDoc {
    /// `section.key`, or `key` at the top level.
    pub key: String,
    /// The default as written, or None for an optional key shown commented out.
    pub default: Option<String>,
    pub example: Option<String>,
    pub meaning: String,
}

/// The keys of a commented default, in order. Comment lines right above a key describe it;
/// a commented-out `# key = value` is an optional key with no default (value = example).
/// Comments right above a `[section]` header describe the section.
pub fn keys(default_toml: &str) -> (Vec<KeyDoc>, Vec<(String, String)>) {
    let (mut keys, mut sections) = (Vec::new(), Vec::new());
    let (mut section, mut comment): (String, Vec<String>) = (String::new(), Vec::new());
    // A comment describes the keys right below it, up to a blank line or the next comment.
    let mut after_key = false;
    for line in default_toml.lines() {
        let line = line.trim();
        if line.is_empty() {
            comment.clear();
            after_key = false;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            sections.push((section.clone(), comment.join(" ")));
            comment.clear();
            after_key = false;
        } else if let Some(text) = line.strip_prefix('#') {
            let text = text.trim();
            if after_key {
                comment.clear();
                after_key = false;
            }
            match assignment(text) {
                Some((k, v)) => {
                    keys.push(KeyDoc { key: qualified(&section, k), default: None, example: Some(v.to_string()), meaning: comment.join(" ") });
                    after_key = true;
                }
                None => comment.push(text.to_string()),
            }
        } else if let Some((k, v)) = assignment(line) {
            keys.push(KeyDoc { key: qualified(&section, k), default: Some(v.to_string()), example: None, meaning: comment.join(" ") });
            after_key = true;
        }
    }
    (keys, sections)
}

fn qualified(section: &str, key: &str) -> String {
    if section.is_empty() { key.to_string() } else { format!("{section}.{key}") }
}

/// `key = value` where key is a bare TOML key.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.split_once(" = ")?;
    let k = k.trim();
    (!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')).then_some((k, v.trim()))
}

fn table(title: &str, file: &str, print: &str, default_toml: &str) -> String {
    let (keys, sections) = keys(default_toml);
    let mut out = format!("### {title}: `{file}`\n\nPrinted by `{print}`; unknown keys are errors, and an error names the key.\n\n");
    out.push_str("| key | default | meaning |\n|---|---|---|\n");
    for k in keys {
        let default = match (&k.default, &k.example) {
            (Some(d), _) => format!("`{}`", d.replace('|', "\\|")),
            (None, Some(e)) => format!("unset (e.g. `{}`)", e.replace('|', "\\|")),
            (None, None) => "unset".into(),
        };
        let section_note = sections
            .iter()
            .find(|(s, text)| !text.is_empty() && k.key.starts_with(&format!("{s}.")))
            .filter(|(s, _)| k.key == first_key_of(default_toml, s))
            .map(|(s, text)| format!("*[{s}]: {text}* "))
            .unwrap_or_default();
        out.push_str(&format!("| `{}` | {default} | {section_note}{} |\n", k.key, k.meaning.replace('|', "\\|")));
    }
    out
}

fn first_key_of(default_toml: &str, section: &str) -> String {
    keys(default_toml).0.into_iter().map(|k| k.key).find(|k| k.starts_with(&format!("{section}."))).unwrap_or_default()
}

/// The generated block, markers included.
pub fn reference() -> String {
    format!(
        "{BEGIN}\n{}\n{}{END}",
        table("Agent", "/etc/truce/agent.toml", "truce-agent config --print-default", truce_agent::config::DEFAULT_TOML),
        table("Arbiter", "/etc/truce/arbiter.toml", "truce-arbiter config --print-default", &truce_arbiter::config::default_toml()),
    )
}

/// `doc` with its generated block replaced by `block`; None when the markers are missing.
pub fn splice(doc: &str, block: &str) -> Option<String> {
    let start = doc.find(BEGIN)?;
    let end = doc[start..].find(END)? + start + END.len();
    Some(format!("{}{}{}", &doc[..start], block, &doc[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_comments_sections_and_optional_keys() {
        let (keys, sections) = keys("# header\n\n# the host\nhost = \"a\"\n# optional one\n# extra = \"x\"\n\n# caps\n[cap]\n# cpu and mem\ncpu = 1\nmem = 2\n");
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[3].meaning, "cpu and mem", "a comment covers the keys right below it");
        assert_eq!(keys[0], KeyDoc { key: "host".into(), default: Some("\"a\"".into()), example: None, meaning: "the host".into() });
        assert_eq!(keys[1].default, None);
        assert_eq!(keys[1].example.as_deref(), Some("\"x\""));
        assert_eq!(keys[2].key, "cap.cpu");
        assert_eq!(sections, vec![("cap".to_string(), "caps".to_string())]);
    }
}
