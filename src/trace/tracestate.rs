//! The `tracestate` header (W3C Trace Context): vendor entries passed along unchanged.
//!
//! Several header lines are one list, joined in order. Empty members are skipped. A list
//! with an invalid key or value, a duplicated key, or more than 32 members is invalid and
//! dropped as a whole, without touching the `traceparent` it came with.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::traceparent::trim_ows;

/// `tracestate`.
pub const TRACESTATE: &str = "tracestate";

/// The header name, made once (see `TRACEPARENT_NAME`).
pub(crate) const TRACESTATE_NAME: HeaderName = HeaderName::from_static(TRACESTATE);

/// At most this many members in a list.
pub const MAX_MEMBERS: usize = 32;

/// A list longer than this cannot be valid (32 members of 256-character keys and values,
/// with separators): rejected before it is parsed.
const MAX_LEN: usize = MAX_MEMBERS * (256 + 1 + 256) + (MAX_MEMBERS - 1) * 2 + 64;

/// A validated `tracestate` list, kept in its normalised form (`k1=v1,k2=v2`).
///
/// Empty (the common case) costs nothing; otherwise it is one shared string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceState(Option<Arc<str>>);

impl TraceState {
    /// Reads every `tracestate` line of a request as one list; an invalid list is empty.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut lines = headers.get_all(&TRACESTATE_NAME).iter();
        let Some(first) = lines.next() else {
            return TraceState::default();
        };
        let mut total = first.len();
        if total > MAX_LEN {
            return TraceState::default();
        }
        let mut more = Vec::new();
        for line in lines {
            total += line.len() + 1;
            if total > MAX_LEN {
                return TraceState::default();
            }
            more.push(line.as_bytes());
        }
        let lines = std::iter::once(first.as_bytes()).chain(more);
        Self::parse_lines(lines).unwrap_or_default()
    }

    /// Parses one header value; `None` when it is invalid.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() > MAX_LEN {
            return None;
        }
        Self::parse_lines(std::iter::once(value.as_bytes()))
    }

    fn parse_lines<'a>(lines: impl Iterator<Item = &'a [u8]> + Clone) -> Option<Self> {
        let members = || {
            lines
                .clone()
                .flat_map(|l| l.split(|b| *b == b','))
                .map(trim_ows)
        };
        let mut count = 0;
        let mut len = 0;
        for (i, member) in members().enumerate().filter(|(_, m)| !m.is_empty()) {
            count += 1;
            if count > MAX_MEMBERS || len > MAX_LEN {
                return None;
            }
            let key = check_member(member)?;
            // Duplicated keys make the list invalid; at most 32 members, so this is cheap.
            let duplicated = members()
                .take(i)
                .filter(|m| !m.is_empty())
                .any(|m| m.split(|b| *b == b'=').next() == Some(key));
            if duplicated {
                return None;
            }
            len += member.len() + 1;
        }
        if count == 0 {
            return Some(TraceState::default());
        }
        let mut out = String::with_capacity(len);
        for member in members().filter(|m| !m.is_empty()) {
            if !out.is_empty() {
                out.push(',');
            }
            // Checked above: every byte is printable ASCII.
            out.push_str(std::str::from_utf8(member).ok()?);
        }
        Some(TraceState(Some(out.into())))
    }

    /// Whether the list has no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The normalised list, `k1=v1,k2=v2`.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// The value of `key`, if the list has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.as_str()
            .split(',')
            .filter_map(|m| m.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The header value, or `None` when the list is empty (no header is sent).
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        let s = self.0.as_deref()?;
        HeaderValue::from_str(s).ok()
    }
}

/// Checks `key=value`, returning the key.
fn check_member(member: &[u8]) -> Option<&[u8]> {
    let eq = member.iter().position(|b| *b == b'=')?;
    let (key, value) = (&member[..eq], &member[eq + 1..]);
    (valid_key(key) && valid_value(value)).then_some(key)
}

/// `lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or `tenant@system` with a
/// tenant of `(lcalpha / DIGIT) 0*240(...)` and a system of `lcalpha 0*13(...)`.
fn valid_key(key: &[u8]) -> bool {
    let rest = |s: &[u8]| {
        s.iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/'))
    };
    match key.iter().position(|b| *b == b'@') {
        None => matches!(key.first(), Some(b'a'..=b'z')) && key.len() <= 256 && rest(&key[1..]),
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            matches!(tenant.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
                && tenant.len() <= 241
                && rest(&tenant[1..])
                && matches!(system.first(), Some(b'a'..=b'z'))
                && system.len() <= 14
                && rest(&system[1..])
        }
    }
}

/// `0*255(chr) nblk-chr`: 1 to 256 printable ASCII characters without `,` or `=`, spaces
/// allowed but not at the end.
fn valid_value(value: &[u8]) -> bool {
    let nblk = |b: &u8| matches!(b, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    matches!(value.last(), Some(b) if nblk(b))
        && value.len() <= 256
        && value.iter().all(|b| *b == b' ' || nblk(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(values: &[&str]) -> TraceState {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(TRACESTATE, HeaderValue::from_str(v).unwrap());
        }
        TraceState::from_headers(&headers)
    }

    #[test]
    fn valid_lists_are_kept_normalised() {
        let k241 = format!("{}@sys", "t".repeat(241));
        let k256 = format!("a{}", "b".repeat(255));
        let v256 = "v".repeat(256);
        let table: &[(&[&str], String)] = &[
            (&[], String::new()),
            (&["foo=1"], "foo=1".into()),
            (&["foo=1,bar=2"], "foo=1,bar=2".into()),
            // Optional whitespace around members and separators.
            (&["  foo=1 ,\tbar=2  "], "foo=1,bar=2".into()),
            // Empty members are skipped.
            (&["foo=1,,bar=2,"], "foo=1,bar=2".into()),
            (&[",,"], String::new()),
            // Several lines are one list, in order.
            (&["foo=1", "bar=2,baz=3"], "foo=1,bar=2,baz=3".into()),
            (&["foo=1", ""], "foo=1".into()),
            // Multi-tenant keys, and keys starting with a digit only as tenants.
            (&["tenant@vendor=x"], "tenant@vendor=x".into()),
            (&["1tenant@vendor=x"], "1tenant@vendor=x".into()),
            (&["a_b-c*d/e=x"], "a_b-c*d/e=x".into()),
            (&[&format!("{k241}=x")], format!("{k241}=x")),
            (&[&format!("{k256}=x")], format!("{k256}=x")),
            // Values: printable, inner spaces, up to 256 characters.
            (&["foo=a b"], "foo=a b".into()),
            (
                &["foo=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~"],
                "foo=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~".into(),
            ),
            (&[&format!("foo={v256}")], format!("foo={v256}")),
        ];
        for (input, want) in table {
            assert_eq!(lines(input).as_str(), want, "{input:?}");
        }
    }

    #[test]
    fn invalid_lists_are_dropped_whole() {
        let k257 = format!("a{}", "b".repeat(256));
        let v257 = "v".repeat(257);
        let table: &[(&str, &[&str])] = &[
            ("uppercase key", &["Foo=1"]),
            ("key starting with a digit", &["1foo=1"]),
            ("key starting with an underscore", &["_foo=1"]),
            ("key too long", &[&format!("{k257}=1")]),
            ("tenant too long", &[&format!("{}@sys=1", "t".repeat(242))]),
            ("system too long", &[&format!("t@{}=1", "s".repeat(15))]),
            ("system starting with a digit", &["t@1sys=1"]),
            ("empty tenant", &["@sys=1"]),
            ("empty system", &["t@=1"]),
            ("two @", &["a@b@c=1"]),
            ("no equals", &["foo"]),
            ("empty key", &["=1"]),
            ("empty value", &["foo="]),
            ("value with equals", &["foo=a=b"]),
            ("value too long", &[&format!("foo={v257}")]),
            ("duplicated key", &["foo=1,foo=2"]),
            ("duplicated key across lines", &["foo=1", "bar=2,foo=3"]),
            ("one bad member spoils the list", &["foo=1,Bad=2,bar=3"]),
        ];
        for (why, input) in table {
            assert!(lines(input).is_empty(), "{why}: {input:?} must be dropped");
        }
        // Characters a header line cannot carry are refused by the parser too.
        assert_eq!(TraceState::parse("foo=a\u{7f}"), None);
        assert_eq!(TraceState::parse("foo=caf\u{e9}"), None);
        // A trailing space inside a value (before the separator) is whitespace, not value.
        assert_eq!(lines(&["foo=1 ,bar=2"]).as_str(), "foo=1,bar=2");
    }

    #[test]
    fn at_most_32_members() {
        let members = |n: usize| (0..n).map(|i| format!("k{i}=v")).collect::<Vec<_>>();
        let ok = members(32).join(",");
        assert_eq!(lines(&[&ok]).as_str(), ok);
        assert!(lines(&[&members(33).join(",")]).is_empty());
        // Empty members do not count.
        let with_empties = format!("{ok},,,");
        assert_eq!(lines(&[&with_empties]).as_str(), ok);
        // Across lines, the limit holds for the combined list.
        let (a, b) = (members(20), members(33));
        assert!(lines(&[&a.join(","), &b[20..].join(",")]).is_empty());
        assert_eq!(lines(&[&a.join(","), &b[20..32].join(",")]).as_str(), ok);
    }

    #[test]
    fn lookup_and_header() {
        let ts = TraceState::parse("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7").unwrap();
        assert_eq!(ts.get("rojo"), Some("00f067aa0ba902b7"));
        assert_eq!(ts.get("nope"), None);
        assert_eq!(
            ts.to_header_value().unwrap(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
        assert_eq!(TraceState::default().to_header_value(), None);
        let huge = format!("a={}", "x".repeat(20_000));
        assert!(lines(&[&huge[..200], &huge]).is_empty());
    }
}
