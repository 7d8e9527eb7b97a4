//! Paths kept out of the request signals: the admin endpoints by default, plus any exact
//! path or prefix the author names.

/// A set of exact paths and prefixes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathFilter {
    exact: Vec<Box<str>>,
    prefixes: Vec<Box<str>>,
    longest_exact: usize,
}

impl PathFilter {
    pub(crate) fn exact(&mut self, path: &str) {
        self.longest_exact = self.longest_exact.max(path.len());
        self.exact.push(path.into());
    }

    pub(crate) fn prefix(&mut self, prefix: &str) {
        self.prefixes.push(prefix.into());
    }

    /// Whether `path` is excluded. Cost is bounded by the configured entries, not the path:
    /// a 64 KiB path is rejected by its length before any comparison.
    pub(crate) fn matches(&self, path: &str) -> bool {
        (path.len() <= self.longest_exact && self.exact.iter().any(|p| **p == *path))
            || self.prefixes.iter().any(|p| path.starts_with(&**p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix() {
        let mut f = PathFilter::default();
        f.exact("/metrics");
        f.prefix("/internal/");
        assert!(f.matches("/metrics"));
        assert!(!f.matches("/metrics/x"));
        assert!(!f.matches("/metric"));
        assert!(f.matches("/internal/debug"));
        assert!(!f.matches("/internal"));
        assert!(!f.matches(&"/".repeat(65536)));
    }
}
