//! The `traceparent` header (W3C Trace Context Level 1 and 2): parsed by the version-00
//! rules, future versions included, and written into a stack buffer.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{hex, SpanId, TraceFlags, TraceId};

/// `traceparent`.
pub const TRACEPARENT: &str = "traceparent";

/// The header name, made once: looking up by `&str` parses the name on every request.
pub(crate) const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);

/// Length of a version-00 value: `00-` + 32 + `-` + 16 + `-` + 2.
const LEN: usize = 55;

/// A parsed `traceparent`: the caller's trace, its span, and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace the caller belongs to.
    pub trace_id: TraceId,
    /// The caller's span (the parent of the span that receives it).
    pub parent_id: SpanId,
    /// The flags this crate understands (sampled, random); others are not propagated.
    pub flags: TraceFlags,
}

impl TraceParent {
    /// Reads the header from a request: exactly one valid `traceparent` line, else `None`
    /// (several lines are invalid: the caller's context is ambiguous).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut lines = headers.get_all(&TRACEPARENT_NAME).iter();
        let line = lines.next()?;
        if lines.next().is_some() {
            return None;
        }
        Self::parse(line.as_bytes())
    }

    /// Parses one header value; `None` when it is invalid by the specification.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let value = trim_ows(value);
        if value.len() < LEN {
            return None;
        }
        let version = hex::byte(&value[0..2])?;
        if version == 0xff || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        match version {
            // Version 00 is exactly 55 characters.
            0 if value.len() != LEN => return None,
            // A future version may append fields, after a dash.
            _ if value.len() > LEN && value[LEN] != b'-' => return None,
            _ => {}
        }
        let trace_id = TraceId(hex::decode::<16>(&value[3..35])?);
        let parent_id = SpanId(hex::decode::<8>(&value[36..52])?);
        let flags = hex::byte(&value[53..55])?;
        if !trace_id.is_valid() || !parent_id.is_valid() {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags: TraceFlags(flags & TraceFlags::KNOWN),
        })
    }

    /// The version-00 header value, written without allocating until the `HeaderValue`.
    pub fn to_header_value(&self) -> HeaderValue {
        let buf = self.encode();
        HeaderValue::from_bytes(&buf).expect("lowercase hex and dashes are a valid header value")
    }

    /// The version-00 encoding, on the stack.
    pub fn encode(&self) -> [u8; LEN] {
        let mut buf = [0u8; LEN];
        buf[0..3].copy_from_slice(b"00-");
        hex::encode_into(&self.trace_id.0, &mut buf[3..35]);
        buf[35] = b'-';
        hex::encode_into(&self.parent_id.0, &mut buf[36..52]);
        buf[52] = b'-';
        hex::encode_into(&[self.flags.0 & TraceFlags::KNOWN], &mut buf[53..55]);
        buf
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let buf = self.encode();
        f.write_str(std::str::from_utf8(&buf).expect("ascii"))
    }
}

/// Strips the optional whitespace (spaces, tabs) HTTP allows around a field value.
pub(crate) fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn parse(s: &str) -> Option<TraceParent> {
        TraceParent::parse(s.as_bytes())
    }

    #[test]
    fn valid_values() {
        let ok = |s: String, flags: u8| {
            let tp = parse(&s).unwrap_or_else(|| panic!("{s:?} should parse"));
            assert_eq!(tp.trace_id.to_string(), TRACE, "{s}");
            assert_eq!(tp.parent_id.to_string(), SPAN, "{s}");
            assert_eq!(tp.flags.0, flags, "{s}");
        };
        let table: &[(String, u8)] = &[
            (format!("00-{TRACE}-{SPAN}-01"), 1),
            (format!("00-{TRACE}-{SPAN}-00"), 0),
            // Level 2: the random flag is kept.
            (format!("00-{TRACE}-{SPAN}-03"), 3),
            (format!("00-{TRACE}-{SPAN}-02"), 2),
            // Unknown flags are ignored, not an error.
            (format!("00-{TRACE}-{SPAN}-ff"), 3),
            (format!("00-{TRACE}-{SPAN}-09"), 1),
            // Optional whitespace around the value.
            (format!(" 00-{TRACE}-{SPAN}-01\t"), 1),
            // Future versions are parsed by the version-00 rules...
            (format!("01-{TRACE}-{SPAN}-01"), 1),
            (format!("cc-{TRACE}-{SPAN}-01"), 1),
            // ...and may carry more fields after a dash.
            (
                format!("cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like"),
                1,
            ),
            (format!("fe-{TRACE}-{SPAN}-01-"), 1),
        ];
        for (value, flags) in table {
            ok(value.clone(), *flags);
        }
    }

    #[test]
    fn invalid_values() {
        let zeros32 = "0".repeat(32);
        let zeros16 = "0".repeat(16);
        let table: &[(&str, String)] = &[
            ("empty", String::new()),
            ("version ff", format!("ff-{TRACE}-{SPAN}-01")),
            ("version not hex", format!("0g-{TRACE}-{SPAN}-01")),
            ("version uppercase", format!("0A-{TRACE}-{SPAN}-01")),
            ("version one digit", format!("0-{TRACE}-{SPAN}-01")),
            ("version 00 too long", format!("00-{TRACE}-{SPAN}-01-")),
            (
                "version 00 with extra field",
                format!("00-{TRACE}-{SPAN}-01-00"),
            ),
            (
                "future version, no dash after flags",
                format!("cc-{TRACE}-{SPAN}-01.x"),
            ),
            ("future version too short", format!("cc-{TRACE}-{SPAN}-1")),
            ("trace id all zero", format!("00-{zeros32}-{SPAN}-01")),
            ("parent id all zero", format!("00-{TRACE}-{zeros16}-01")),
            (
                "trace id uppercase",
                format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
            ),
            (
                "parent id uppercase",
                format!("00-{TRACE}-{}-01", SPAN.to_uppercase()),
            ),
            ("flags uppercase", format!("00-{TRACE}-{SPAN}-0A")),
            ("trace id short", format!("00-{}-{SPAN}-01", &TRACE[1..])),
            ("trace id long", format!("00-{TRACE}0-{SPAN}-01")),
            ("parent id short", format!("00-{TRACE}-{}-01", &SPAN[1..])),
            ("parent id long", format!("00-{TRACE}-{SPAN}0-01")),
            ("flags one digit", format!("00-{TRACE}-{SPAN}-1")),
            ("flags three digits", format!("00-{TRACE}-{SPAN}-001")),
            ("flags not hex", format!("00-{TRACE}-{SPAN}-0x")),
            ("trace id not hex", format!("00-{}g-{SPAN}-01", &TRACE[1..])),
            (
                "parent id not hex",
                format!("00-{TRACE}-{}z-01", &SPAN[1..]),
            ),
            ("underscore separators", format!("00_{TRACE}_{SPAN}_01")),
            ("missing version", format!("{TRACE}-{SPAN}-01")),
            ("whitespace inside", format!("00- {TRACE}-{SPAN}-01")),
            (
                "comma-joined lines",
                format!("00-{TRACE}-{SPAN}-01,00-{TRACE}-{SPAN}-01"),
            ),
        ];
        for (why, value) in table {
            assert_eq!(parse(value), None, "{why}: {value:?} must be invalid");
        }
    }

    #[test]
    fn several_lines_are_invalid_one_line_is_read() {
        let value = format!("00-{TRACE}-{SPAN}-01");
        let mut headers = HeaderMap::new();
        assert_eq!(TraceParent::from_headers(&headers), None);
        headers.append(TRACEPARENT, value.parse().unwrap());
        assert!(TraceParent::from_headers(&headers).is_some());
        headers.append(TRACEPARENT, value.parse().unwrap());
        assert_eq!(
            TraceParent::from_headers(&headers),
            None,
            "two identical lines"
        );
    }

    #[test]
    fn writes_version_00_with_known_flags_only() {
        let tp = parse(&format!("cc-{TRACE}-{SPAN}-03-future")).unwrap();
        assert_eq!(tp.to_string(), format!("00-{TRACE}-{SPAN}-03"));
        let tp = TraceParent {
            flags: TraceFlags(0xff),
            ..tp
        };
        assert_eq!(
            tp.to_header_value().to_str().unwrap(),
            format!("00-{TRACE}-{SPAN}-03")
        );
        assert_eq!(
            parse(&tp.to_string()),
            Some(TraceParent {
                flags: TraceFlags(3),
                ..tp
            })
        );
    }
}
