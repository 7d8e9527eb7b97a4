//! What of a request may leave the process in an event.
//!
//! With PII off (the default): no credentials (`Authorization`, `Proxy-Authorization`,
//! `Cookie`, `Set-Cookie`, API-key and token headers), no client addresses (`Forwarded`,
//! `X-Forwarded-For`, `X-Real-IP`, ...), no URL user or password, and the values of
//! secret-looking query keys (`token`, `password`, `key`, `session`, `signature`, ...)
//! replaced by `[Filtered]`. A header value marked [`HeaderValue::is_sensitive`] is never
//! sent, PII or not.
//!
//! [`HeaderValue::is_sensitive`]: http::HeaderValue::is_sensitive

use std::collections::BTreeMap;

use http::{HeaderMap, Uri};

/// What replaces a secret value.
pub(crate) const FILTERED: &str = "[Filtered]";

/// Headers that carry credentials or client addresses, by exact name.
const DENIED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "cf-connecting-ip",
    "true-client-ip",
    "fastly-client-ip",
    "x-envoy-external-address",
    // The previous page's full URL, query secrets included.
    "referer",
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

/// The headers an event may carry.
pub(crate) fn headers(headers: &HeaderMap, send_pii: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        if value.is_sensitive() {
            continue;
        }
        let name = name.as_str();
        if !send_pii && (DENIED_HEADERS.contains(&name) || is_secret_name(name)) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        out.entry(name.to_owned())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    out
}

/// The request's URL without user, password or query: `scheme://host[:port]/path`.
///
/// Requests in origin form (`/path?query`, what servers mostly see) take their host from
/// the `Host` header.
pub(crate) fn url(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = match uri.authority() {
        // `user:password@` is never kept: only host and port.
        Some(authority) => match authority.port() {
            Some(port) => format!("{}:{}", authority.host(), port),
            None => authority.host().to_owned(),
        },
        None => headers
            .get(http::header::HOST)
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
        ] {
            h.insert(name, HeaderValue::from_static("secret"));
        }
        h.insert("user-agent", HeaderValue::from_static("curl"));
        let mut marked = HeaderValue::from_static("hidden");
        marked.set_sensitive(true);
        h.insert("x-custom", marked);
        let kept = headers(&h, false);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["user-agent"]);
        let with_pii = headers(&h, true);
        assert!(with_pii.contains_key("authorization"));
        assert!(
            !with_pii.contains_key("x-custom"),
            "is_sensitive is always honoured"
        );
    }

    #[test]
    fn urls_lose_credentials_and_query() {
        let uri: Uri = "http://ada:hunter2@example.com:8080/a/b?token=x"
            .parse()
            .unwrap();
        assert_eq!(
            url(&uri, &HeaderMap::new()).as_deref(),
            Some("http://example.com:8080/a/b")
        );
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("api.example.com"));
        let uri: Uri = "/users/7?x=1".parse().unwrap();
        assert_eq!(
            url(&uri, &h).as_deref(),
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
