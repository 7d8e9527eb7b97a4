//! The `tracestate` header (W3C Trace Context): vendor entries passed along unchanged.
//!
//! By the current editor's draft: keys are `[a-z0-9][_0-9a-z-*/@]{0,255}` (an `@`, or
//! several, anywhere after the first character: the draft no longer splits keys into
//! tenant and system), values 1 to 256 printable ASCII characters without `,` or `=`,
//! not ending in a space. Several header lines are one list, joined in order. Empty
//! members are skipped. A duplicated key keeps its first occurrence (the draft lets either
//! be passed on; the left-most is the most recent). A list with an invalid key or value,
//! or more than 32 members, is invalid and dropped as a whole, without touching the
//! `traceparent` it came with.

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
        let lines = headers.get_all(&TRACESTATE_NAME);
        // Joined by commas, the lines must fit in MAX_LEN.
        let mut total = 0;
        for line in lines.iter() {
            total += line.len() + 1;
            if total > MAX_LEN + 1 {
                return TraceState::default();
            }
        }
        if total == 0 {
            // No header: the common case, with nothing to parse.
            return TraceState::default();
        }
        Self::parse_lines(lines.iter().map(HeaderValue::as_bytes)).unwrap_or_default()
    }

    /// Parses one header value; `None` when it is invalid.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() > MAX_LEN {
            return None;
        }
        Self::parse_lines(std::iter::once(value.as_bytes()))
    }

    fn parse_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<Self> {
        let members = lines
            .flat_map(|l| l.split(|b| *b == b','))
            .map(trim_ows)
            .filter(|m| !m.is_empty());
        // The members passed on and their keys; at most 32 of each, so no allocation.
        let mut kept: [(&[u8], &[u8]); MAX_MEMBERS] = [(&[], &[]); MAX_MEMBERS];
        let (mut count, mut n, mut len) = (0, 0, 0);
        for member in members {
            count += 1;
            if count > MAX_MEMBERS {
                return None;
            }
            let key = check_member(member)?;
            if kept[..n].iter().any(|(k, _)| *k == key) {
                continue;
            }
            kept[n] = (key, member);
            n += 1;
            len += member.len() + 1;
        }
        if n == 0 {
            return Some(TraceState::default());
        }
        let mut out = String::with_capacity(len);
        for (_, member) in &kept[..n] {
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

/// `(lcalpha / DIGIT) 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@")`.
fn valid_key(key: &[u8]) -> bool {
    matches!(key.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && key.len() <= 256
        && key[1..].iter().all(|b| {
            matches!(
                b,
                b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'
            )
        })
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
        let k242 = format!("{}@v", "t".repeat(242));
        let sys15 = format!("t@{}", "v".repeat(15));
        let at256 = format!("a{}", "@".repeat(255));
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
            // Keys by the editor's draft: a digit may start any key, and `@` may appear
            // anywhere after the first character, any number of times.
            (&["tenant@vendor=x"], "tenant@vendor=x".into()),
            (&["1tenant@vendor=x"], "1tenant@vendor=x".into()),
            (&["1foo=1"], "1foo=1".into()),
            (&["0=1"], "0=1".into()),
            (&["foo@=1,bar=2"], "foo@=1,bar=2".into()),
            (&["foo@@bar=1,bar=2"], "foo@@bar=1,bar=2".into()),
            (&["foo@bar@baz=1,bar=2"], "foo@bar@baz=1,bar=2".into()),
            (&["t@1sys=1"], "t@1sys=1".into()),
            (&["a_b-c*d/e=x"], "a_b-c*d/e=x".into()),
            (
                &["abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/=x"],
                "abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/=x".into(),
            ),
            // Lengths: only the whole key's 256 counts, not the old tenant and system parts.
            (&[&format!("{k241}=x")], format!("{k241}=x")),
            (&[&format!("{k256}=x")], format!("{k256}=x")),
            (&[&format!("{k242}=x")], format!("{k242}=x")),
            (&[&format!("{sys15}=x")], format!("{sys15}=x")),
            (&[&format!("{at256}=x")], format!("{at256}=x")),
            // A duplicated key keeps its first occurrence, the rest of the list passes.
            (&["foo=1,foo=2"], "foo=1".into()),
            (&["foo=1,foo=1"], "foo=1".into()),
            (&["foo=1", "foo=2"], "foo=1".into()),
            (&["foo=1", "bar=2,foo=3"], "foo=1,bar=2".into()),
            (&["a=1,b=2,a=3,c=4,b=5"], "a=1,b=2,c=4".into()),
            (&["t@v=1,t@v=2,t=3"], "t@v=1,t=3".into()),
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
            ("key starting with an underscore", &["_foo=1"]),
            ("key starting with an @", &["@foo=1,bar=2"]),
            ("key starting with a slash", &["/foo=1"]),
            ("key with a dot", &["foo.bar=1"]),
            ("key with a space", &["foo =1"]),
            ("key too long", &[&format!("{k257}=1")]),
            (
                "key with @ too long",
                &[&format!("{}@v=1", "t".repeat(255))],
            ),
            (
                "key too long on another line",
                &["foo=1", &format!("{k257}=1")],
            ),
            ("no equals", &["foo"]),
            ("empty key", &["=1"]),
            ("empty value", &["foo="]),
            ("value with equals", &["foo=a=b"]),
            ("value too long", &[&format!("foo={v257}")]),
            ("invalid duplicate", &["foo=1,foo=a=b"]),
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
        // Members count as sent, duplicates included.
        let duplicated = format!("{ok},k0=again");
        assert!(lines(&[&duplicated]).is_empty());
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
