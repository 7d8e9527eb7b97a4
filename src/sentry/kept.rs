//! What of a request is kept for the event it may become.
//!
//! Most requests never fail, so keeping must cost next to nothing: the URL's authority and
//! path and the allowlisted headers ([`KeptHeaders`]) are copied into one fixed buffer
//! inside the request's report: no allocation, no reference count touched (cloning a
//! `HeaderValue` or `Uri` may allocate when its bytes are not shared yet). Values longer
//! than the room left are cut. With PII on, every header is kept as well (a map clone: the
//! price of the opt-in).

use std::collections::BTreeMap;

use http::header::{HOST, ORIGIN, REFERER};
use http::{HeaderMap, HeaderName, Method, Request};

use super::privacy::{KeptHeaders, KEPT};

/// Bytes kept per request: room for a long URL and the usual header values.
const ROOM: usize = 640;
/// No header value takes more than this, so the URL keeps some room.
const MAX_HEADER: usize = 256;
const AUTHORITY: usize = 0;
const PATH_AND_QUERY: usize = 1;
const FIRST_HEADER: usize = 2;
const ABSENT: (u16, u16) = (u16::MAX, 0);
/// Where `Host` is among the kept headers.
const HOST_SLOT: usize = 0;

pub(crate) struct KeptRequest {
    pub(crate) method: Method,
    https: bool,
    /// `(start, len)` in `bytes` of the authority, the path and query, then each kept header.
    slots: [(u16, u16); FIRST_HEADER + KEPT],
    used: u16,
    bytes: [u8; ROOM],
    /// Every header, when PII is on.
    all_headers: Option<Box<HeaderMap>>,
}

impl KeptRequest {
    pub(crate) fn capture<B>(req: &Request<B>, send_pii: bool, kept_headers: &KeptHeaders) -> Self {
        let uri = req.uri();
        let mut kept = KeptRequest {
            method: req.method().clone(),
            https: uri.scheme() == Some(&http::uri::Scheme::HTTPS),
            slots: [ABSENT; FIRST_HEADER + KEPT],
            used: 0,
            bytes: [0; ROOM],
            all_headers: send_pii.then(|| Box::new(req.headers().clone())),
        };
        for (name, value) in req.headers() {
            if let Some(i) = kept_headers.position(name) {
                if kept.slots[FIRST_HEADER + i] == ABSENT && !value.is_sensitive() {
                    let value = value.as_bytes();
                    // Credentials are taken out when an event is built (most requests never
                    // make one); a value cut here is checked whole now, so a cut cannot
                    // hide the `@` that marks them.
                    let whole = value.len() <= MAX_HEADER;
                    if let Some(value) = if whole {
                        Some(value)
                    } else {
                        without_credentials(name, value)
                    } {
                        kept.put(FIRST_HEADER + i, &value[..value.len().min(MAX_HEADER)]);
                    }
                }
            }
        }
        if let Some(authority) = uri.authority() {
            // Host and port only: `user:password@` never leaves.
            let authority = authority.as_str().as_bytes();
            let host =
                crate::redact::userinfo(authority).map_or(authority, |at| &authority[at.end..]);
            kept.put(AUTHORITY, host);
        }
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        kept.put(PATH_AND_QUERY, path.as_bytes());
        kept
    }

    fn put(&mut self, slot: usize, value: &[u8]) {
        let start = usize::from(self.used);
        let len = value.len().min(ROOM - start);
        self.bytes[start..start + len].copy_from_slice(&value[..len]);
        // Both fit in u16: ROOM is far below u16::MAX.
        self.slots[slot] = (start as u16, len as u16);
        self.used += len as u16;
    }

    fn get(&self, slot: usize) -> Option<&str> {
        let (start, len) = self.slots[slot];
        if (start, len) == ABSENT {
            return None;
        }
        let (start, len) = (usize::from(start), usize::from(len));
        // A value cut inside a UTF-8 sequence, or not text at all, is left out.
        std::str::from_utf8(&self.bytes[start..start + len]).ok()
    }

    /// `scheme://host[:port]/path`: no user, no password, no query. Requests in origin form
    /// (what servers mostly see) take their host from the `Host` header.
    pub(crate) fn url(&self) -> Option<String> {
        let scheme = if self.https { "https" } else { "http" };
        let host = self
            .get(AUTHORITY)
            .or_else(|| self.header(HOST_SLOT, &HOST))?;
        let path = self.get(PATH_AND_QUERY)?;
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        Some(format!("{scheme}://{host}{path}"))
    }

    /// The raw query, if the request had one.
    pub(crate) fn query(&self) -> Option<&str> {
        self.get(PATH_AND_QUERY)?.split_once('?').map(|(_, q)| q)
    }

    /// The headers the event carries: the allowlist, or every header with PII on; never
    /// a value marked sensitive.
    pub(crate) fn headers(&self, kept_headers: &KeptHeaders) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(all) = &self.all_headers {
            for (name, value) in all.iter() {
                if value.is_sensitive() {
                    continue;
                }
                let Some(value) = without_credentials(name, value.as_bytes()) else {
                    continue;
                };
                let Ok(value) = std::str::from_utf8(value) else {
                    continue;
                };
                out.entry(name.as_str().to_owned())
                    .and_modify(|v: &mut String| {
                        v.push_str(", ");
                        v.push_str(value);
                    })
                    .or_insert_with(|| value.to_owned());
            }
            return out;
        }
        for (i, name) in kept_headers.iter() {
            if let Some(value) = self.header(i, name) {
                out.insert(name.as_str().to_owned(), value.to_owned());
            }
        }
        out
    }

    /// The kept value of the `i`th kept header, `name`, without URL credentials.
    fn header(&self, i: usize, name: &HeaderName) -> Option<&str> {
        let value = self.get(FIRST_HEADER + i)?;
        let clean = without_credentials(name, value.as_bytes())?;
        // A suffix of valid UTF-8 cut at an ASCII `@` is valid UTF-8.
        std::str::from_utf8(clean).ok()
    }
}

/// A header value without URL credentials, even with PII on: `Host: user:pw@example.com`
/// keeps `example.com`; an `Origin` or `Referer` whose authority holds credentials is left
/// out.
fn without_credentials<'a>(name: &HeaderName, value: &'a [u8]) -> Option<&'a [u8]> {
    let userinfo = || crate::redact::userinfo(value);
    if name == HOST {
        return Some(userinfo().map_or(value, |at| &value[at.end..]));
    }
    if (name == ORIGIN || name == REFERER) && userinfo().is_some() {
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept_headers() -> KeptHeaders {
        KeptHeaders::new(Some(HeaderName::from_static("x-request-id")))
    }

    fn capture<B>(req: &Request<B>, pii: bool) -> KeptRequest {
        KeptRequest::capture(req, pii, &kept_headers())
    }
    use http::HeaderValue;

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::get(uri).body(()).unwrap();
        for (name, value) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        req
    }

    #[test]
    fn credentials_and_addresses_never_pass_without_pii() {
        let secrets = [
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
        ];
        let mut headers: Vec<(&str, &str)> = secrets.iter().map(|n| (*n, "secret")).collect();
        headers.extend([("user-agent", "curl"), ("x-request-id", "r-1")]);
        let mut req = request("/a", &headers);
        let mut marked = HeaderValue::from_static("hidden");
        marked.set_sensitive(true);
        req.headers_mut().insert("content-type", marked.clone());
        req.headers_mut().insert("x-custom", marked);

        let kept = capture(&req, false).headers(&kept_headers());
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            ["user-agent", "x-request-id"]
        );
        let with_pii = capture(&req, true).headers(&kept_headers());
        assert!(with_pii.contains_key("authorization"));
        assert!(
            !with_pii.contains_key("x-custom"),
            "is_sensitive is always honoured"
        );
        assert!(!with_pii.contains_key("content-type"));
        // The request id header is the one the layer is configured with.
        let correlation = KeptHeaders::new(Some(HeaderName::from_static("x-correlation-id")));
        let req = request(
            "/a",
            &[("x-request-id", "r-1"), ("x-correlation-id", "c-2")],
        );
        let kept = KeptRequest::capture(&req, false, &correlation).headers(&correlation);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["x-correlation-id"]);
        let none = KeptHeaders::new(None);
        assert!(KeptRequest::capture(&req, false, &none)
            .headers(&none)
            .is_empty());
    }

    #[test]
    fn urls_lose_credentials_and_query() {
        let req = request("http://ada:hunter2@example.com:8080/a/b?token=x", &[]);
        let kept = capture(&req, false);
        assert_eq!(kept.url().as_deref(), Some("http://example.com:8080/a/b"));
        assert_eq!(kept.query(), Some("token=x"));
        let req = request("/users/7?x=1", &[("host", "api.example.com")]);
        let kept = capture(&req, false);
        assert_eq!(
            kept.url().as_deref(),
            Some("http://api.example.com/users/7")
        );
        // Credentials in the Host header (or Origin) never leave either, PII on or off.
        let req = request(
            "/users/7",
            &[
                ("host", "ada:pw@api.example.com:8443"),
                ("origin", "https://ada:pw@app.example.com"),
                ("referer", "https://ada:pw@app.example.com/a?b=c@d"),
            ],
        );
        for pii in [false, true] {
            let kept = capture(&req, pii);
            assert_eq!(
                kept.url().as_deref(),
                Some("http://api.example.com:8443/users/7")
            );
            let headers = kept.headers(&kept_headers());
            assert_eq!(headers["host"], "api.example.com:8443", "pii {pii}");
            assert!(!headers.contains_key("origin"), "pii {pii}");
            assert!(!headers.contains_key("referer"), "pii {pii}");
            assert!(!format!("{headers:?}").contains("pw"), "pii {pii}");
        }
    }

    #[test]
    fn an_at_sign_outside_the_authority_is_not_a_credential() {
        let req = request(
            "/",
            &[
                ("origin", "https://app.example.com"),
                ("referer", "https://app.example.com/u?mail=a@b"),
            ],
        );
        let headers = capture(&req, true).headers(&kept_headers());
        assert_eq!(headers["origin"], "https://app.example.com");
        assert_eq!(headers["referer"], "https://app.example.com/u?mail=a@b");
    }

    #[test]
    fn long_values_are_cut_not_overflowed() {
        let long = "a".repeat(5000);
        let req = request(
            &format!("/search?q={long}"),
            &[("user-agent", &long), ("host", "h")],
        );
        let kept = capture(&req, false);
        assert_eq!(
            kept.headers(&kept_headers())["user-agent"].len(),
            MAX_HEADER
        );
        assert!(kept.url().unwrap().starts_with("http://h/search"));
        assert!(kept.query().unwrap().len() < ROOM);
    }

    #[test]
    fn a_cut_cannot_hide_credentials() {
        // The `@` lies past the cut: the value is checked whole before it is cut.
        let user = "u".repeat(MAX_HEADER + 10);
        let origin = format!("https://{user}:pw@app.example.com");
        let host = format!("{user}:pw@api.example.com");
        let req = request("/", &[("origin", &origin), ("host", &host)]);
        let headers = capture(&req, false).headers(&kept_headers());
        assert!(!headers.contains_key("origin"), "{headers:?}");
        assert_eq!(headers["host"], "api.example.com");
    }
}
