//! What must not leave the process: the values of secret-looking query and form keys, and
//! the user info of a URL. One list for every output: Sentry events, span attributes and
//! log lines.
//!
//! # Which keys are secret
//!
//! A key is read as the application reads it (percent-decoded, `+` as a space) and compared
//! without regard to case. It is secret when
//!
//! - it contains a fragment no everyday word holds: `passw`, `passphrase`, `passcode`,
//!   `pwd`, `secret`, `token`, `bearer`, `session`, `cookie`, `credential`, `signature`,
//!   `jwt`, `csrf`, `xsrf`, `nonce`, `authoriz`, `authent`, `cvv`, `cvc`, and the personal
//!   `email` and `phone`;
//! - or one of its words (split at anything but a letter, and where a lowercase letter
//!   meets a capital: `apiKey` is `api`, `key`) is, or ends with, a short fragment: `pass`,
//!   `pw`, `auth`, `key`, `keys`, `sid`, `sess`, `otp`, `sig`, `pin`, `ssn`. Short fragments
//!   match only there because inside words they mostly mean something else: `keyboard`,
//!   `keyword`, `author`, `authority`, `passenger`, `inside`, `sidebar`, `signal`,
//!   `footprint` are not secret, while `apikey`, `x-api-key`, `AWSAccessKeyId`, `oauth`,
//!   `userpass`, `dbPw`, `PHPSESSID`, `connect.sid`, `totp` are. What this still catches
//!   wrongly (a word ending like a fragment: `sort_key`, `monkey`, `bypass`, `compass`,
//!   `ssid`) only loses a value in a report, never leaks one;
//! - or it is exactly `code`, OAuth 2.0's authorization code (`country_code`, `zipcode`
//!   are not secret).

use std::borrow::Cow;
use std::fmt;

/// Fragments that make a key secret wherever they appear in it.
const ANYWHERE: [&str; 21] = [
    "passw",
    "passphrase",
    "passcode",
    "pwd",
    "secret",
    "token",
    "bearer",
    "session",
    "cookie",
    "credential",
    "signature",
    "jwt",
    "csrf",
    "xsrf",
    "nonce",
    "authoriz",
    "authent",
    "cvv",
    "cvc",
    "email",
    "phone",
];

/// Fragments that make a key secret as one of its words or the end of one.
const WORD_END: [&str; 11] = [
    "pass", "pw", "auth", "key", "keys", "sid", "sess", "otp", "sig", "pin", "ssn",
];

/// Keys that are secret only as the whole key.
const WHOLE: [&str; 1] = ["code"];

/// What replaces a secret value in span attributes (the OpenTelemetry conventions' word).
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) const REDACTED: &str = "REDACTED";

/// Whether a query or form key, as written in the URL or body, names a secret.
#[cfg_attr(not(any(feature = "sentry", feature = "otlp")), allow(dead_code))]
pub(crate) fn is_secret_key(raw: &str) -> bool {
    let decoded = crate::percent::decode_form(raw);
    let key = decoded.as_bytes();
    let contains = |fragment: &str| {
        key.windows(fragment.len())
            .any(|w| w.eq_ignore_ascii_case(fragment.as_bytes()))
    };
    if ANYWHERE.iter().any(|f| contains(f)) {
        return true;
    }
    let trimmed = std::str::from_utf8(key).unwrap_or_default().trim();
    if WHOLE.iter().any(|w| trimmed.eq_ignore_ascii_case(w)) {
        return true;
    }
    let ends_like = |word: &[u8], f: &str| {
        word.len() >= f.len() && word[word.len() - f.len()..].eq_ignore_ascii_case(f.as_bytes())
    };
    for word in words(key) {
        if WORD_END.iter().any(|f| ends_like(word, f)) {
            return true;
        }
    }
    false
}

/// The words of a key: runs of ASCII letters, also split where a lowercase letter is
/// followed by a capital (`apiKey`, `AWSAccessKeyId` → `AWSAccess`, `Key`, `Id`).
fn words(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < key.len() {
            let b = key[i];
            if !b.is_ascii_alphabetic() {
                let word = &key[start..i];
                i += 1;
                start = i;
                if !word.is_empty() {
                    return Some(word);
                }
                continue;
            }
            if i > start && b.is_ascii_uppercase() && key[i - 1].is_ascii_lowercase() {
                let word = &key[start..i];
                start = i;
                i += 1;
                return Some(word);
            }
            i += 1;
        }
        if start < key.len() {
            let word = &key[start..];
            start = key.len();
            return Some(word);
        }
        None
    })
}

/// `raw` (a query, or a form body) with the value of every secret-looking key replaced by
/// `replacement` (a secret-looking pair without `=` becomes `replacement` whole). Pairs are
/// separated by `&` or `;`; everything else (order, empty pairs, encoding, duplicates) is
/// kept as written. Borrowed when nothing is secret.
#[cfg_attr(not(any(feature = "sentry", feature = "otlp")), allow(dead_code))]
pub(crate) fn query<'a>(raw: &'a str, replacement: &str) -> Cow<'a, str> {
    let mut out: Option<String> = None;
    let mut start = 0;
    for (end, _) in raw
        .match_indices(['&', ';'])
        .chain(std::iter::once((raw.len(), "")))
    {
        let pair = &raw[start..end];
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        if !pair.is_empty() && is_secret_key(key) {
            let out = out.get_or_insert_with(|| {
                let mut s = String::with_capacity(raw.len());
                s.push_str(&raw[..start]);
                s
            });
            if key.len() < pair.len() {
                out.push_str(key);
                out.push('=');
            }
            out.push_str(replacement);
        } else if let Some(out) = &mut out {
            out.push_str(pair);
        }
        if let Some(out) = &mut out {
            // The separator as written.
            out.push_str(&raw[end..(end + 1).min(raw.len())]);
        }
        start = end + 1;
    }
    match out {
        Some(out) => Cow::Owned(out),
        None => Cow::Borrowed(raw),
    }
}

/// Where the user info of a URL (`https://user:pw@host/..`) or of an authority
/// (`user:pw@host:port`, as a `Host` header may hold) lies: `start..end`, `end` just past
/// the `@`. Only the authority is looked at: an `@` in the path or query is not user info.
pub(crate) fn userinfo(url: &[u8]) -> Option<std::ops::Range<usize>> {
    // After `scheme://` when the first delimiter is that `//`, else from the start (a
    // `Host` value): a `://` in the path or query never moves it.
    let first = url
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(url.len());
    let start = match first.checked_sub(1).map(|i| &url[i..]) {
        Some([b':', b'/', b'/', ..]) => first + 2,
        // Scheme-relative: `//user@host/..`.
        None if url.starts_with(b"//") => 2,
        _ => 0,
    };
    let rest = &url[start..];
    let authority = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(rest, |end| &rest[..end]);
    let at = authority.iter().rposition(|b| *b == b'@')?;
    Some(start..start + at + 1)
}

/// A URL, origin or authority for a log line: user info replaced by `REDACTED:REDACTED@`,
/// bytes that are not printable ASCII escaped, cut after [`LOGGED_URL`] bytes, so a hostile
/// value can neither leak a password nor flood or forge log lines.
pub(crate) struct LoggedUrl<'a>(pub(crate) &'a [u8]);

/// How much of a URL a log line shows.
pub(crate) const LOGGED_URL: usize = 200;

impl fmt::Display for LoggedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let (before, after) = match userinfo(url) {
            Some(range) => (&url[..range.start], &url[range.end..]),
            None => (url, &url[url.len()..]),
        };
        let (mut room, mut cut) = (LOGGED_URL, false);
        let mut write = |f: &mut fmt::Formatter<'_>, bytes: &[u8]| -> fmt::Result {
            let shown = bytes.len().min(room);
            for &b in &bytes[..shown] {
                match b {
                    b' '..=b'~' if b != b'\\' => write!(f, "{}", b as char)?,
                    _ => write!(f, "\\x{b:02x}")?,
                }
            }
            room -= shown;
            cut |= shown < bytes.len();
            Ok(())
        };
        write(f, before)?;
        if before.len() < url.len() {
            write(f, b"REDACTED:REDACTED@")?;
            write(f, after)?;
        }
        if cut {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LoggedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fragments_of_the_issue_are_secret() {
        for key in [
            "pass",
            "password",
            "PassWord",
            "pwd",
            "pw",
            "secret",
            "client_secret",
            "token",
            "access_token",
            "auth",
            "bearer",
            "key",
            "api_key",
            "apiKey",
            "x-api-key",
            "session",
            "sessionId",
            "sid",
            "cookie",
            "credential",
            "X-Amz-Credential",
            "signature",
            "X-Goog-Signature",
            "jwt",
            "otp",
            "totp",
        ] {
            assert!(is_secret_key(key), "{key} must be secret");
        }
    }

    #[test]
    fn keys_are_read_as_the_application_reads_them() {
        for key in [
            "%70assword",
            "%50ASSWORD",
            "pass%77ord",
            "p%61ss",
            "user%5Bpassword%5D",
            "user[password]",
            "a%26token",
            "pass+word",
            "my+pw",
            "pass%FFword",
            "PHPSESSID",
            "connect.sid",
            "AWSAccessKeyId",
            "oauth_verifier",
            "dbPw",
            "userpass",
            "authCode",
            "s3key",
            "pw2",
            " code ",
            "CODE",
            "sig",
            "pin",
            "email",
        ] {
            assert!(is_secret_key(key), "{key} must be secret");
        }
    }

    #[test]
    fn everyday_words_holding_a_short_fragment_are_not_secret() {
        for key in [
            "keyboard",
            "keyword",
            "keywords",
            "author",
            "authors",
            "authorName",
            "authority",
            "passenger",
            "passage",
            "inside",
            "sidebar",
            "consider",
            "signal",
            "design",
            "signup",
            "footprint",
            "upward",
            "country_code",
            "zipcode",
            "q",
            "page",
            "sort",
            "",
            "%zz",
        ] {
            assert!(!is_secret_key(key), "{key} must not be secret");
        }
    }

    #[test]
    fn hostile_queries_are_scrubbed_and_nothing_else_changes() {
        let long = "v".repeat(100_000);
        let long_query = format!("q=1&token={long}&page=2");
        let table: &[(&str, &str)] = &[
            // Separators: `&` and `;`, kept as written.
            ("q=1;token=abc", "q=1;token=R"),
            ("token=abc&q=1", "token=R&q=1"),
            ("a=1;b=2&pw=3", "a=1;b=2&pw=R"),
            // Encoded keys; the key stays as written.
            ("%70assword=hunter2", "%70assword=R"),
            ("pass%77ord=x&x=pass", "pass%77ord=R&x=pass"),
            ("PASS%57ORD=x", "PASS%57ORD=R"),
            // Duplicate keys: each one.
            ("token=a&token=b&token=c", "token=R&token=R&token=R"),
            // Keys without values; empty pairs and keys.
            ("token", "R"),
            ("debug&token&x", "debug&R&x"),
            ("&&token=a&&", "&&token=R&&"),
            ("=a&=b", "=a&=b"),
            ("token=", "token=R"),
            // `+` is a space in a key; a value is never looked at.
            ("pass+word=x", "pass+word=R"),
            ("q=token+password", "q=token+password"),
            ("q=a=b&secret=c=d", "q=a=b&secret=R"),
            // Invalid escapes and bytes that are not UTF-8.
            ("%zz=1&%=2&pw%=3", "%zz=1&%=2&pw%=R"),
            ("pass%FFword=x&%FF=y", "pass%FFword=R&%FF=y"),
            // Nothing secret: unchanged.
            ("", ""),
            ("q=rust&page=2", "q=rust&page=2"),
            ("keyboard=qwerty&author=ada", "keyboard=qwerty&author=ada"),
        ];
        for (raw, want) in table {
            assert_eq!(query(raw, "R"), *want, "{raw:?}");
        }
        assert_eq!(query(&long_query, "R"), "q=1&token=R&page=2");
        assert!(matches!(query("q=1;page=2", "R"), Cow::Borrowed(_)));
    }

    #[test]
    fn user_info_is_found_in_the_authority_only() {
        let table: &[(&str, Option<&str>)] = &[
            ("https://ada:pw@app.example.com", Some("ada:pw@")),
            ("https://ada@app.example.com:8443/x", Some("ada@")),
            ("ada:pw@api.example.com:8443", Some("ada:pw@")),
            ("https://a@b@c.example.com", Some("a@b@")),
            ("ada@api.example.com", Some("ada@")),
            // A `://` further on is not where the authority starts.
            ("ada:pw@h.test/?u=http://x", Some("ada:pw@")),
            ("https://h.test/?u=http://ada:pw@x", None),
            ("1a://ada@h.test", Some("ada@")),
            ("ada:pw@h.test?x://y", Some("ada:pw@")),
            ("//ada:pw@h.test/x", Some("ada:pw@")),
            ("https://app.example.com", None),
            ("https://app.example.com/u?mail=a@b", None),
            ("https://app.example.com#a@b", None),
            ("api.example.com", None),
            ("", None),
        ];
        for (url, want) in table {
            let found = userinfo(url.as_bytes()).map(|r| &url[r]);
            assert_eq!(found, *want, "{url:?}");
        }
    }

    #[test]
    fn logged_urls_carry_no_user_info_and_cannot_flood() {
        let log = |url: &[u8]| LoggedUrl(url).to_string();
        assert_eq!(
            log(b"https://ada:hunter2@evil.test"),
            "https://REDACTED:REDACTED@evil.test"
        );
        assert_eq!(log(b"https://app.example.com"), "https://app.example.com");
        assert_eq!(log(b"http://a\tb\xff\\"), "http://a\\x09b\\xff\\x5c");
        let long = format!("https://{}:hunter2@evil.test", "u".repeat(5000));
        let logged = log(long.as_bytes());
        assert!(!logged.contains("hunter2") && !logged.contains("uuu"));
        let long = format!("https://{}.evil.test", "a".repeat(5000));
        let logged = log(long.as_bytes());
        assert_eq!(logged.len(), LOGGED_URL + 3, "{logged}");
        assert!(logged.ends_with("..."));
        assert_eq!(format!("{:?}", LoggedUrl(b"null")), "\"null\"");
    }
}
