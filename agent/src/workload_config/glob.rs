//! Path globs: `*` and `?` match within one segment, `**` matches across segments.

pub(super) fn matches(pattern: &[u8], path: &[u8]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((b'*', rest)) if rest.first() == Some(&b'*') => {
            let rest = &rest[1..];
            // `**` swallows any run of bytes, including `/`.
            (0..=path.len()).any(|i| matches(rest, &path[i..]))
        }
        Some((b'*', rest)) => {
            let segment_end = path.iter().position(|&c| c == b'/').unwrap_or(path.len());
            (0..=segment_end).any(|i| matches(rest, &path[i..]))
        }
        Some((b'?', rest)) => path.first().is_some_and(|&c| c != b'/') && matches(rest, &path[1..]),
        Some((&c, rest)) => path.first() == Some(&c) && matches(rest, &path[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(p: &str, s: &str) -> bool {
        matches(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn star_stays_in_its_segment() {
        assert!(m("/system.slice/*.service", "/system.slice/nginx.service"));
        assert!(!m("/system.slice/*.service", "/system.slice/a/nginx.service"));
        assert!(m("/kubepods/**", "/kubepods/burstable/pod1/ctr"));
        assert!(m("/a/?b", "/a/xb"));
        assert!(!m("/a/?b", "/a//b"));
        assert!(!m("/a/*", "/b/c"));
    }
}
