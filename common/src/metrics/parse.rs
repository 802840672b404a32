//! A strict reader of the OpenMetrics text the endpoint serves, for tests and tools that
//! check a scrape: every sample must belong to the family declared before it, with a
//! suffix its type allows, and the text must end with `# EOF`.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's own name (`x_total`, `x_bucket`, ...).
    pub name: String,
    /// The family it belongs to (`x`).
    pub family: String,
    /// `counter`, `gauge`, `histogram`, `info`, ...
    pub kind: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "summary" => &["", "_sum", "_count", "_created"],
        "info" => &["_info"],
        "stateset" | "gauge" | "unknown" => &[""],
        _ => &[],
    }
}

/// Every sample of an OpenMetrics text exposition.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    let mut family: Option<(String, String)> = None;
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let err = |reason| ParseError { line: i + 1, reason, text: line.to_string() };
        if eof {
            return Err(err("text after # EOF"));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("TYPE without a type"))?;
            if suffixes(kind).is_empty() {
                return Err(err("unknown metric type"));
            }
            family = Some((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            return Err(err("unexpected comment or blank line"));
        }
        let (fam, kind) = family.as_ref().ok_or_else(|| err("sample before any TYPE"))?;
        let (name, labels, rest) = split_sample(line).ok_or_else(|| err("malformed sample"))?;
        let belongs = name.strip_prefix(fam.as_str()).is_some_and(|suffix| suffixes(kind).contains(&suffix));
        if !belongs {
            return Err(err("sample outside its declared family"));
        }
        let value_text = rest.split_whitespace().next().ok_or_else(|| err("no value"))?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().map_err(|_| err("value is not a number"))?,
        };
        out.push(Sample { name, family: fam.clone(), kind: kind.clone(), labels, value });
    }
    if !eof {
        return Err(ParseError { line: text.lines().count(), reason: "missing # EOF", text: String::new() });
    }
    Ok(out)
}

/// `name{k="v",...} rest` -> (name, labels, rest).
fn split_sample(line: &str) -> Option<(String, BTreeMap<String, String>, &str)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // key
            let start = chars.peek()?.0;
            if body[start..].starts_with('}') {
                rest = &body[start + 1..];
                break;
            }
            let eq = body[start..].find('=')? + start;
            let key = &body[start..eq];
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            while chars.peek()?.0 <= eq {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c @ ('"' | '\\') => value.push(c),
                        _ => return None,
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key.to_string(), value);
            match chars.next()?.1 {
                ',' => continue,
                '}' => {
                    let at = chars.peek().map_or(body.len(), |(i, _)| *i);
                    rest = &body[at..];
                    break;
                }
                _ => return None,
            }
        }
    }
    let rest = rest.strip_prefix(' ')?;
    Some((name.to_string(), labels, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_families_labels_and_escapes() {
        let text = "# HELP a_bids Bids.\n# TYPE a_bids counter\na_bids_total{host=\"n\\\"1\",w=\"x\"} 3\n# TYPE b gauge\nb 0.5\n# EOF\n";
        let s = parse_exposition(text).expect("valid");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].family, "a_bids");
        assert_eq!(s[0].labels.get("host").map(String::as_str), Some("n\"1"));
        assert_eq!(s[1].value, 0.5);
    }

    #[test]
    fn refuses_what_a_scraper_would_refuse() {
        assert!(parse_exposition("# TYPE a gauge\na 1\n").is_err(), "no EOF");
        assert!(parse_exposition("a 1\n# EOF\n").is_err(), "no TYPE");
        assert!(parse_exposition("# TYPE a counter\na 1\n# EOF\n").is_err(), "counter sample without _total");
        assert!(parse_exposition("# TYPE a gauge\na{x=1} 1\n# EOF\n").is_err(), "unquoted label");
        assert!(parse_exposition("# TYPE a gauge\na one\n# EOF\n").is_err(), "not a number");
    }
}
