//! Allowed origins: exact origins (`https://app.example.com:8443`) and explicit subdomain
//! patterns (`https://*.example.com`), parsed strictly at build and matched byte for byte.
//!
//! Browsers serialise the `Origin` header in lowercase with the default port left out, so
//! the configured origins are normalised the same way and then compared exactly: an origin
//! differing by scheme, port, case or a suffix (`https://app.example.com.evil.test`) never
//! matches.

use http::HeaderValue;

/// One entry of the allowlist, as written by the author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginRule {
    /// Any origin (`*`): only for policies marked public.
    Any,
    /// One exact origin, normalised (`https://app.example.com`).
    Exact(String),
    /// `scheme://*.suffix[:port]`: one or more DNS labels in front of `suffix`.
    Subdomains(Pattern),
}

/// `scheme://*.suffix[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// `https://`.
    scheme: String,
    /// `.example.com`, leading dot included.
    suffix: String,
    /// `:8443`, or empty for the scheme's default port.
    port: String,
}

impl Pattern {
    fn matches(&self, origin: &[u8]) -> bool {
        let Some(rest) = origin.strip_prefix(self.scheme.as_bytes()) else {
            return false;
        };
        let host = if self.port.is_empty() {
            rest
        } else {
            match rest.strip_suffix(self.port.as_bytes()) {
                Some(host) => host,
                None => return false,
            }
        };
        let Some(sub) = host.strip_suffix(self.suffix.as_bytes()) else {
            return false;
        };
        // Only DNS labels may stand for the `*`: no port, user info, path or empty label.
        !sub.is_empty()
            && sub.split(|b| *b == b'.').all(|label| {
                !label.is_empty()
                    && label
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            })
    }
}

/// Parses one allowlist entry. The error says what is wrong, for a `BuildError`.
pub(crate) fn parse(raw: &str) -> Result<OriginRule, String> {
    let s = raw.trim();
    if s == "*" {
        return Ok(OriginRule::Any);
    }
    if s.eq_ignore_ascii_case("null") {
        return Err(
            "the `null` origin is shared by sandboxed frames, file: pages and redirected \
                    requests: allowing it allows all of them"
                .into(),
        );
    }
    let s = s.to_ascii_lowercase();
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "{raw:?} is not an origin: expected scheme://host[:port]"
        ));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(format!("{raw:?} has an invalid scheme"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "{raw:?} has a path, query or fragment: an origin is scheme://host[:port], \
             without even a trailing slash"
        ));
    }
    if rest.contains('@') {
        return Err(format!(
            "{raw:?} has user info: an origin is scheme://host[:port]"
        ));
    }
    let (host, port) = split_port(rest).ok_or_else(|| format!("{raw:?} has an invalid port"))?;
    let default_port = match scheme {
        "https" | "wss" => Some(443),
        "http" | "ws" => Some(80),
        _ => None,
    };
    // Browsers leave the default port out of `Origin`.
    let port = match port {
        Some(p) if Some(p) != default_port => format!(":{p}"),
        _ => String::new(),
    };
    if let Some(ip6) = host.strip_prefix('[') {
        let ok = ip6
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        return match ok {
            true => Ok(OriginRule::Exact(format!("{scheme}://{host}{port}"))),
            false => Err(format!("{raw:?} has an invalid IPv6 host")),
        };
    }
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok =
        |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    match labels.split_first() {
        Some((&"*", suffix)) => {
            if suffix.len() < 2 || !suffix.iter().all(|l| label_ok(l)) {
                return Err(format!(
                    "{raw:?} is too broad or malformed: a pattern is scheme://*.domain.tld, \
                     the `*` standing for one or more subdomain labels"
                ));
            }
            Ok(OriginRule::Subdomains(Pattern {
                scheme: format!("{scheme}://"),
                suffix: format!(".{}", suffix.join(".")),
                port,
            }))
        }
        _ if labels.iter().all(|l| label_ok(l)) => {
            Ok(OriginRule::Exact(format!("{scheme}://{host}{port}")))
        }
        _ if host.contains('*') => Err(format!(
            "{raw:?}: `*` may only stand for the leftmost labels, as in https://*.example.com"
        )),
        _ => Err(format!("{raw:?} has an invalid host")),
    }
}

/// `host[:port]` → host and port; `None` when the port is not 1..=65535.
fn split_port(rest: &str) -> Option<(&str, Option<u16>)> {
    let colon = match rest.rfind(':') {
        // `[::1]` alone: the colons are inside the brackets.
        Some(i) if !rest[i..].contains(']') => i,
        _ => return Some((rest, None)),
    };
    let (host, port) = (&rest[..colon], &rest[colon + 1..]);
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host, Some(port)))
}

/// The compiled allowlist.
#[derive(Debug, Default)]
pub(crate) struct AllowedOrigins {
    pub(crate) any: bool,
    exact: Vec<HeaderValue>,
    patterns: Vec<Pattern>,
}

/// How a request's `Origin` matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matched {
    /// The policy allows every origin: answer `*`.
    Any,
    /// The configured exact origin of this index (see [`AllowedOrigins::exact`]).
    Exact(usize),
    /// Echo the request's own origin (a subdomain pattern matched).
    Echo(HeaderValue),
}

impl AllowedOrigins {
    pub(crate) fn add(&mut self, rule: OriginRule) {
        match rule {
            OriginRule::Any => self.any = true,
            OriginRule::Exact(origin) => {
                let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(origin))
                    .expect("a parsed origin is visible ASCII");
                if !self.exact.contains(&value) {
                    self.exact.push(value);
                }
            }
            OriginRule::Subdomains(pattern) => self.patterns.push(pattern),
        }
    }

    /// The configured exact origins, in order: [`Matched::Exact`] indexes them.
    pub(crate) fn exact(&self) -> &[HeaderValue] {
        &self.exact
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty() && self.patterns.is_empty()
    }

    /// Matches a request's `Origin` value.
    pub(crate) fn matches(&self, origin: &HeaderValue) -> Option<Matched> {
        if self.any {
            return Some(Matched::Any);
        }
        let bytes = origin.as_bytes();
        if let Some(i) = self.exact.iter().position(|o| o.as_bytes() == bytes) {
            return Some(Matched::Exact(i));
        }
        self.patterns
            .iter()
            .any(|p| p.matches(bytes))
            .then(|| Matched::Echo(origin.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(s: &str) -> OriginRule {
        OriginRule::Exact(s.into())
    }

    #[test]
    fn origins_are_normalised_like_browsers_serialise_them() {
        for (raw, want) in [
            ("https://App.Example.com", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://app.example.com:80", "https://app.example.com:80"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            (" https://a.test ", "https://a.test"),
        ] {
            assert_eq!(parse(raw), Ok(exact(want)), "{raw}");
        }
        assert_eq!(parse("*"), Ok(OriginRule::Any));
    }

    #[test]
    fn malformed_origins_are_refused_with_a_reason() {
        for (raw, says) in [
            ("https://app.example.com/", "path"),
            ("https://app.example.com/api", "path"),
            ("https://app.example.com?x", "path"),
            ("app.example.com", "scheme://host"),
            ("https://user@app.example.com", "user info"),
            ("https://app.example.com:0", "port"),
            ("https://app.example.com:99999", "port"),
            ("https://app.example.com:", "port"),
            ("null", "null"),
            ("NULL", "null"),
            ("https://*.com", "too broad"),
            ("https://*", "too broad"),
            ("https://app.*.example.com", "leftmost"),
            ("https://*app.example.com", "leftmost"),
            ("https://app..example.com", "invalid host"),
            ("https://app.example.com.", "invalid host"),
            ("https://", "invalid host"),
            ("https://[zz]:1", "IPv6"),
            ("1http://a.test", "scheme"),
        ] {
            let err = parse(raw).unwrap_err();
            assert!(err.contains(says), "{raw}: {err}");
        }
    }

    fn allow(rules: &[&str]) -> AllowedOrigins {
        let mut allowed = AllowedOrigins::default();
        rules.iter().for_each(|r| allowed.add(parse(r).unwrap()));
        allowed
    }

    fn allowed(list: &AllowedOrigins, origin: &str) -> bool {
        list.matches(&HeaderValue::from_str(origin).unwrap())
            .is_some()
    }

    #[test]
    fn exact_origins_match_only_themselves() {
        let list = allow(&["https://app.example.com", "http://localhost:3000"]);
        assert!(allowed(&list, "https://app.example.com"));
        assert!(allowed(&list, "http://localhost:3000"));
        // An exact match names the configured value, so responses can be made ahead.
        let second = HeaderValue::from_static("http://localhost:3000");
        assert_eq!(list.matches(&second), Some(Matched::Exact(1)));
        assert_eq!(list.exact()[1], second);
        for other in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com.evil.test",
            "https://evilapp.example.com",
            "https://app.example.co",
            "https://APP.example.com",
            "https://app.example.com/",
            "http://localhost:30000",
            "http://localhost",
            "null",
            "",
        ] {
            assert!(!allowed(&list, other), "{other:?} must not match");
        }
    }

    #[test]
    fn subdomain_patterns_match_labels_and_nothing_else() {
        let list = allow(&["https://*.example.com", "http://*.dev.test:8080"]);
        for yes in [
            "https://a.example.com",
            "https://a-b.c.example.com",
            "http://x.dev.test:8080",
        ] {
            assert!(allowed(&list, yes), "{yes}");
        }
        for no in [
            "https://example.com",
            "https://.example.com",
            "https://evilexample.com",
            "https://a.example.com.evil.test",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://evil.test/.example.com",
            "https://evil.test#.example.com",
            "https://u@x.example.com",
            "https://a..example.com",
            "https://A.example.com",
            "http://x.dev.test",
            "http://x.dev.test:80801",
            "http://x.dev.test:8080.evil",
        ] {
            assert!(!allowed(&list, no), "{no}");
        }
        // A pattern match echoes the request's own origin.
        let origin = HeaderValue::from_static("https://a.example.com");
        assert_eq!(list.matches(&origin), Some(Matched::Echo(origin)));
    }
}
