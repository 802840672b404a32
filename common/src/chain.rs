//! An error with its sources on one line, for log fields and close reasons.

/// `{:#}`-style display of an error and its sources: `outer: inner: root`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_source_follows_on_one_line() {
        let e = Outer(std::io::Error::other("root"));
        assert_eq!(super::Chain(&e).to_string(), "outer: root");
    }
}
