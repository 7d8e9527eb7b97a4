//! Percent-decoding (RFC 3986 §2.1): the crate's one decoder, with the rules of the two
//! kinds of text it decodes.
//!
//! - [`decode_strict`], for configuration (`OTEL_*` lists in W3C Baggage octets): a `%` not
//!   followed by two hex digits, or bytes that are not UTF-8, are the user's mistake to fix,
//!   so the value is refused.
//! - [`decode_lossy`], for what a peer sent (a `grpc-message`): decoding never fails, as
//!   WHATWG URL's percent-decode and the gRPC spec ask: a `%` that starts no escape stays as
//!   written, bytes that are not UTF-8 become U+FFFD.
//! - [`decode_form`], for `application/x-www-form-urlencoded` text (query and form keys):
//!   [`decode_lossy`] with `+` read as a space.
//!
//! The lossy decoders borrow when there is nothing to decode, which is the common case.

use std::borrow::Cow;

/// `s` with its `%XX` escapes decoded; `None` when an escape is malformed or the result is
/// not UTF-8. `+` is a `+`.
pub(crate) fn decode_strict(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(escape_at(bytes, i)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `s` with its `%XX` escapes decoded; never fails (see the module docs).
#[cfg_attr(not(feature = "sentry"), allow(dead_code))]
pub(crate) fn decode_lossy(s: &str) -> Cow<'_, str> {
    lossy(s, false)
}

/// A form-urlencoded component decoded: `%XX` escapes and `+` as a space; never fails.
#[cfg_attr(not(any(feature = "sentry", feature = "otlp")), allow(dead_code))]
pub(crate) fn decode_form(s: &str) -> Cow<'_, str> {
    lossy(s, true)
}

fn lossy(s: &str, plus_as_space: bool) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let special = |b: &u8| *b == b'%' || (plus_as_space && *b == b'+');
    let Some(first) = bytes.iter().position(special) else {
        return Cow::Borrowed(s);
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut i = first;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if let Some(b) = escape_at(bytes, i) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// The byte of the escape `%XX` starting at `i`, when both `X` are hex digits.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    let digit = |at: usize| (*bytes.get(at)? as char).to_digit(16);
    // Two hex digits make at most 0xFF.
    Some((digit(i + 1)? * 16 + digit(i + 2)?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_refuses_what_it_cannot_decode() {
        let table: &[(&str, Option<&str>)] = &[
            ("", Some("")),
            ("plain", Some("plain")),
            ("a%20b", Some("a b")),
            ("%41%62%63", Some("Abc")),
            ("caf%C3%A9", Some("café")),
            ("caf%c3%a9", Some("café")),
            ("a+b", Some("a+b")),
            ("100%25", Some("100%")),
            ("%", None),
            ("%4", None),
            ("%zz", None),
            ("%+1", None),
            ("%-1", None),
            ("% 1", None),
            ("%é1", None),
            ("%FF", None),
            ("%C3", None),
        ];
        for (input, want) in table {
            assert_eq!(decode_strict(input).as_deref(), *want, "{input:?}");
        }
    }

    #[test]
    fn lossy_decodes_what_it_can_and_keeps_the_rest() {
        let table: &[(&str, &str, &str)] = &[
            // input, lossy, form
            ("", "", ""),
            ("plain", "plain", "plain"),
            ("a%20b", "a b", "a b"),
            ("a+b", "a+b", "a b"),
            ("%2B", "+", "+"),
            ("%70assword", "password", "password"),
            ("PASS%57ORD", "PASSWORD", "PASSWORD"),
            ("caf%C3%A9", "café", "café"),
            ("café", "café", "café"),
            // Not escapes: kept as written.
            ("%", "%", "%"),
            ("50%", "50%", "50%"),
            ("%4", "%4", "%4"),
            ("%zz", "%zz", "%zz"),
            ("%+1", "%+1", "% 1"),
            ("%%41", "%A", "%A"),
            ("%é", "%é", "%é"),
            // Not UTF-8: replaced, never an error.
            ("%FF%FEx", "\u{FFFD}\u{FFFD}x", "\u{FFFD}\u{FFFD}x"),
            ("%C3", "\u{FFFD}", "\u{FFFD}"),
            ("pass%C3word", "pass\u{FFFD}word", "pass\u{FFFD}word"),
        ];
        for (input, lossy, form) in table {
            assert_eq!(decode_lossy(input), *lossy, "lossy {input:?}");
            assert_eq!(decode_form(input), *form, "form {input:?}");
        }
    }

    #[test]
    fn nothing_to_decode_borrows() {
        assert!(matches!(decode_lossy("a+b"), Cow::Borrowed("a+b")));
        assert!(matches!(decode_form("ab"), Cow::Borrowed("ab")));
        assert!(matches!(decode_form("a+b"), Cow::Owned(_)));
    }

    #[test]
    fn long_input_is_linear() {
        let long = "%41".repeat(100_000);
        assert_eq!(decode_lossy(&long).len(), 100_000);
        assert_eq!(decode_strict(&long).map(|s| s.len()), Some(100_000));
    }
}
