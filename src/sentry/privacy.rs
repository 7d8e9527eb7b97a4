//! What of a request may leave the process in an event.
//!
//! With PII off (the default), headers are an allowlist ([`KEPT_HEADERS`]: host, user
//! agent, content type and length, accept, origin, request id), so credentials
//! (`Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, API-key and token
//! headers), client addresses (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`, ...) and
//! whatever custom header an application invents never leave; the URL loses its user and
//! password, and the values of secret-looking query keys (`token`, `password`, `key`,
//! `session`, `signature`, ...) become `[Filtered]`. With PII on, every header is sent and the
//! query is kept. Either way, a header value marked [`http::HeaderValue::is_sensitive`] is never
//! sent.
//!
//! What is kept of each request is in [`kept`](super::kept).

use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, USER_AGENT};
use http::HeaderName;

/// What replaces a secret value.
pub(crate) const FILTERED: &str = "[Filtered]";

/// How many headers are kept when PII is off.
pub(crate) const KEPT: usize = 7;

/// The headers an event carries when PII is off: useful to debug, never personal.
pub(crate) static KEPT_HEADERS: [HeaderName; KEPT] = [
    HOST,
    USER_AGENT,
    CONTENT_TYPE,
    CONTENT_LENGTH,
    ACCEPT,
    ORIGIN,
    HeaderName::from_static("x-request-id"),
];

/// Name fragments that make a header or query key secret-looking.
const SECRET_FRAGMENTS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "passw",
    "pwd",
    "key",
    "session",
    "sess",
    "sig",
    "credential",
    "cookie",
    "csrf",
    "xsrf",
    "jwt",
    "otp",
    "code",
    "nonce",
    "email",
    "phone",
];

/// Whether a header or query key looks like it names a secret.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_FRAGMENTS.iter().any(|f| name.contains(f))
}

/// The query string with the values of secret-looking keys replaced by `[Filtered]`.
pub(crate) fn query(raw: &str, send_pii: bool) -> String {
    if send_pii {
        return raw.to_owned();
    }
    raw.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_name(&percent_decode(key, true)) => {
                format!("{key}={FILTERED}")
            }
            None if is_secret_name(&percent_decode(pair, true)) => FILTERED.to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `%`-decodes `s` (and `+` as a space in query keys), so `pass%77ord` is seen as `password`
/// and a `grpc-message` is readable.
pub(crate) fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok();
        match bytes[i] {
            b'%' => match hex().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_are_filtered() {
        let q = "page=2&token=abc&Password=p&api_key=k&pass%77ord=x&sig&q=rust";
        assert_eq!(
            query(q, false),
            "page=2&token=[Filtered]&Password=[Filtered]&api_key=[Filtered]&pass%77ord=[Filtered]&[Filtered]&q=rust"
        );
        assert_eq!(query(q, true), q);
    }
}
