//! What of a request may leave the process in an event.
//!
//! With PII off (the default), headers are an allowlist ([`KEPT_HEADERS`]: host, user
//! agent, content type and length, accept, origin, request id), so credentials
//! (`Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, API-key and token
//! headers), client addresses (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`, ...) and
//! whatever custom header an application invents never leave; the URL loses its user and
//! password, and the values of secret-looking query keys (`token`, `password`, `key`,
//! `session`, `signature`, ...) become `[Filtered]`. With PII on, every header is sent and the
//! query is kept. Either way, a header value marked [`HeaderValue::is_sensitive`] is never
//! sent.
//!
//! The allowlist is also what keeps the happy path cheap: the kept values are cloned into
//! a fixed array (reference-counted bytes, no allocation) when the request arrives.

use std::collections::BTreeMap;

use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// What replaces a secret value.
pub(crate) const FILTERED: &str = "[Filtered]";

/// How many headers are kept when PII is off.
const KEPT: usize = 7;

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

/// What of a request's headers is kept for the event it may become.
pub(crate) enum KeptHeaders {
    /// PII off: the first value of each of [`KEPT_HEADERS`], unless marked sensitive.
    Allowed([Option<HeaderValue>; KEPT]),
    /// PII on: every header (sensitive values are dropped when the event is built).
    All(HeaderMap),
}

impl KeptHeaders {
    pub(crate) fn capture(headers: &HeaderMap, send_pii: bool) -> Self {
        if send_pii {
            return KeptHeaders::All(headers.clone());
        }
        let mut kept: [Option<HeaderValue>; KEPT] = Default::default();
        for (name, value) in headers {
            if let Some(i) = KEPT_HEADERS.iter().position(|k| k == name) {
                if kept[i].is_none() && !value.is_sensitive() {
                    kept[i] = Some(value.clone());
                }
            }
        }
        KeptHeaders::Allowed(kept)
    }

    /// The `Host` header, for the URL of origin-form requests.
    pub(crate) fn host(&self) -> Option<&HeaderValue> {
        match self {
            KeptHeaders::Allowed(kept) => kept[0].as_ref(),
            KeptHeaders::All(headers) => headers.get(HOST),
        }
    }

    /// The headers as the event's request carries them.
    pub(crate) fn to_map(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut add = |name: &HeaderName, value: &HeaderValue| {
            let Ok(value) = value.to_str() else { return };
            if value_is_sensitive(value) {
                return;
            }
            out.entry(name.as_str().to_owned())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        };
        match self {
            KeptHeaders::Allowed(kept) => {
                for (name, value) in KEPT_HEADERS.iter().zip(kept) {
                    if let Some(value) = value {
                        add(name, value);
                    }
                }
            }
            KeptHeaders::All(headers) => {
                for (name, value) in headers {
                    if !value.is_sensitive() {
                        add(name, value);
                    }
                }
            }
        }
        out
    }
}

/// Values never sent whatever the header: none so far beyond `is_sensitive`; kept as the
/// one place to add a value pattern (e.g. a token format) should one be needed.
fn value_is_sensitive(_value: &str) -> bool {
    false
}

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

/// The request's URL without user, password or query: `scheme://host[:port]/path`.
///
/// Requests in origin form (`/path?query`, what servers mostly see) take their host from
/// the `Host` header.
pub(crate) fn url(uri: &Uri, host: Option<&HeaderValue>) -> Option<String> {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = match uri.authority() {
        // `user:password@` is never kept: only host and port.
        Some(authority) => match authority.port() {
            Some(port) => format!("{}:{}", authority.host(), port),
            None => authority.host().to_owned(),
        },
        None => host
            .and_then(|h| h.to_str().ok())
            // A Host header holding credentials is refused rather than parsed.
            .filter(|h| !h.contains('@'))?
            .to_owned(),
    };
    Some(format!("{scheme}://{host}{}", uri.path()))
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
    use http::HeaderValue;

    #[test]
    fn credentials_and_addresses_never_pass_without_pii() {
        let mut h = HeaderMap::new();
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
            "x-api-key",
            "api-key",
            "x-auth-token",
            "x-csrf-token",
            "x-forwarded-for",
            "x-real-ip",
            "forwarded",
            "cf-connecting-ip",
            "true-client-ip",
            "referer",
            "x-tenant-secret",
        ] {
            h.insert(name, HeaderValue::from_static("secret"));
        }
        h.insert("user-agent", HeaderValue::from_static("curl"));
        h.insert("x-request-id", HeaderValue::from_static("r-1"));
        let mut marked = HeaderValue::from_static("hidden");
        marked.set_sensitive(true);
        h.insert("content-type", marked.clone());
        h.insert("x-custom", marked);
        let kept = KeptHeaders::capture(&h, false).to_map();
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            ["user-agent", "x-request-id"]
        );
        let with_pii = KeptHeaders::capture(&h, true).to_map();
        assert!(with_pii.contains_key("authorization"));
        assert!(
            !with_pii.contains_key("x-custom"),
            "is_sensitive is always honoured"
        );
        assert!(!with_pii.contains_key("content-type"));
    }

    #[test]
    fn urls_lose_credentials_and_query() {
        let uri: Uri = "http://ada:hunter2@example.com:8080/a/b?token=x"
            .parse()
            .unwrap();
        assert_eq!(
            url(&uri, None).as_deref(),
            Some("http://example.com:8080/a/b")
        );
        let host = HeaderValue::from_static("api.example.com");
        let uri: Uri = "/users/7?x=1".parse().unwrap();
        assert_eq!(
            url(&uri, Some(&host)).as_deref(),
            Some("http://api.example.com/users/7")
        );
    }

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
