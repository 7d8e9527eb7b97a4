//! Security headers: a preset of hardened response headers, per-header overrides and a
//! removal list, checked by `build()` so that a request only inserts ready-made values.

use std::borrow::Cow;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request};

use crate::client_address::TrustedProxies;
use crate::error::BuildError;

/// How the response headers of a preset entry are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Set unless the handler already set the header.
    IfAbsent,
    /// Set even over the handler's value.
    Override,
    /// Not sent (taken out of the preset).
    Omit,
}

#[derive(Debug, Clone)]
struct Entry {
    name: Cow<'static, str>,
    value: Cow<'static, str>,
    mode: Mode,
}

/// The hardened headers every response leaves with: a preset ([`api`](Self::api), the
/// default, or [`web`](Self::web)), per-header changes, and a removal list for headers that
/// only tell attackers what runs the service (`Server`, `X-Powered-By`, ...).
///
/// Headers the handler already set are kept unless [`override_header`](Self::override_header)
/// says otherwise. Every name and value is checked by
/// [`ObservabilityBuilder::build`](crate::ObservabilityBuilder::build): a bad one is a
/// [`BuildError`] naming the header, never a failure at request time.
///
/// ```
/// use tower_observability::{MetricsBackend, Observability, SecurityHeaders};
///
/// let headers = SecurityHeaders::web()
///     .header("content-security-policy", "default-src 'self'; img-src *")
///     .without("x-dns-prefetch-control")
///     .strip("x-backend-host")
///     .hsts_only_over_tls();
/// let obs = Observability::builder("shop")
///     .security_headers(headers)
/// #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
///     .build()?;
/// # let _ = obs;
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    entries: Vec<Entry>,
    strip: Vec<Cow<'static, str>>,
    hsts_only_over_tls: bool,
    trusted_proxies: Vec<Cow<'static, str>>,
}

/// Headers removed from every response by the presets: they only advertise the stack.
const STRIPPED: [&str; 4] = [
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
];

/// Headers the security-header policy may not touch: framing belongs to the HTTP server,
/// CORS to [`Cors`](crate::Cors).
fn reserved(name: &str) -> bool {
    matches!(
        name,
        "content-length" | "transfer-encoding" | "connection" | "upgrade" | "trailer"
    ) || name.starts_with("access-control-")
}

impl Default for SecurityHeaders {
    /// [`SecurityHeaders::api`].
    fn default() -> Self {
        Self::api()
    }
}

impl SecurityHeaders {
    fn preset(values: &[(&'static str, &'static str)]) -> Self {
        SecurityHeaders {
            entries: values
                .iter()
                .map(|(name, value)| Entry {
                    name: Cow::Borrowed(name),
                    value: Cow::Borrowed(value),
                    mode: Mode::IfAbsent,
                })
                .collect(),
            strip: STRIPPED.iter().map(|s| Cow::Borrowed(*s)).collect(),
            hsts_only_over_tls: false,
            trusted_proxies: Vec::new(),
        }
    }

    /// The default: the OWASP Secure Headers Project values for JSON APIs.
    ///
    /// | header | value |
    /// |---|---|
    /// | `Strict-Transport-Security` | `max-age=31536000; includeSubDomains` |
    /// | `X-Content-Type-Options` | `nosniff` |
    /// | `X-Frame-Options` | `DENY` |
    /// | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` |
    /// | `Referrer-Policy` | `no-referrer` |
    /// | `Cross-Origin-Embedder-Policy` | `require-corp` |
    /// | `Cross-Origin-Opener-Policy` | `same-origin` |
    /// | `Cross-Origin-Resource-Policy` | `same-origin` |
    /// | `Permissions-Policy` | every powerful feature off |
    /// | `X-Permitted-Cross-Domain-Policies` | `none` |
    /// | `Cache-Control` | `no-store, max-age=0` (the handler's own value wins) |
    ///
    /// and `Server`, `X-Powered-By`, `X-AspNet-Version`, `X-AspNetMvc-Version` removed.
    /// `Cross-Origin-Resource-Policy` does not restrict `fetch` with CORS: pages on origins
    /// that [`Cors`](crate::Cors) allows still read the responses.
    pub fn api() -> Self {
        Self::preset(&[
            (
                "strict-transport-security",
                "max-age=31536000; includeSubDomains",
            ),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
            ("referrer-policy", "no-referrer"),
            ("cross-origin-embedder-policy", "require-corp"),
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-resource-policy", "same-origin"),
            ("permissions-policy", PERMISSIONS_OFF),
            ("x-permitted-cross-domain-policies", "none"),
            ("cache-control", "no-store, max-age=0"),
        ])
    }

    /// helmet's defaults, for services that serve HTML: a same-origin CSP, `SAMEORIGIN`
    /// framing, HSTS, `nosniff`, `no-referrer`, COOP/CORP `same-origin`,
    /// `Origin-Agent-Cluster`, `X-DNS-Prefetch-Control: off`, `X-Download-Options: noopen`,
    /// `X-Permitted-Cross-Domain-Policies: none` and `X-XSS-Protection: 0` (the old filter
    /// caused more holes than it closed). No `Cache-Control`: pages choose their own caching.
    pub fn web() -> Self {
        Self::preset(&[
            ("content-security-policy", WEB_CSP),
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-resource-policy", "same-origin"),
            ("origin-agent-cluster", "?1"),
            ("referrer-policy", "no-referrer"),
            (
                "strict-transport-security",
                "max-age=31536000; includeSubDomains",
            ),
            ("x-content-type-options", "nosniff"),
            ("x-dns-prefetch-control", "off"),
            ("x-download-options", "noopen"),
            ("x-frame-options", "SAMEORIGIN"),
            ("x-permitted-cross-domain-policies", "none"),
            ("x-xss-protection", "0"),
        ])
    }

    /// No headers and no removals: the layer leaves response headers alone.
    pub fn none() -> Self {
        SecurityHeaders {
            entries: Vec::new(),
            strip: Vec::new(),
            hsts_only_over_tls: false,
            trusted_proxies: Vec::new(),
        }
    }

    fn set(mut self, name: Cow<'static, str>, value: Cow<'static, str>, mode: Mode) -> Self {
        let name = lower(name);
        self.entries.retain(|e| e.name != name);
        self.entries.push(Entry { name, value, mode });
        self
    }

    /// Sends `name: value`, replacing the preset's value; a value the handler set is kept.
    pub fn header(
        self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.set(name.into(), value.into(), Mode::IfAbsent)
    }

    /// Sends `name: value` on every response, replacing any value the handler set.
    pub fn override_header(
        self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.set(name.into(), value.into(), Mode::Override)
    }

    /// Takes `name` out of the preset: the layer does not send it (a handler still may).
    pub fn without(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.set(name.into(), Cow::Borrowed(""), Mode::Omit)
    }

    /// Removes `name` from every response, whoever set it (added to the removal list).
    pub fn strip(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = lower(name.into());
        if !self.strip.contains(&name) {
            self.strip.push(name);
        }
        self
    }

    /// Sends `Strict-Transport-Security` only on requests that arrived over TLS: an
    /// `https` request URI (HTTP/2 and HTTP/3 carry the scheme), the [`ArrivedOverTls`]
    /// request extension set by the TLS acceptor, or `X-Forwarded-Proto: https` from a
    /// [trusted proxy](crate::ObservabilityBuilder::trusted_proxies). Browsers ignore HSTS over plain
    /// HTTP anyway; this keeps it off internal plain-HTTP traffic.
    pub fn hsts_only_over_tls(mut self) -> Self {
        self.hsts_only_over_tls = true;
        self
    }

    /// Trusts `X-Forwarded-Proto` on requests whose peer address is one of `proxies`.
    ///
    /// Deprecated: the crate has one trusted-proxies setting for every signal,
    /// [`ObservabilityBuilder::trusted_proxies`](crate::ObservabilityBuilder::trusted_proxies)
    /// (also read for the client address the rate limiter keys on); the networks given
    /// here are added to it.
    #[deprecated(
        since = "0.1.0",
        note = "use ObservabilityBuilder::trusted_proxies: one setting for X-Forwarded-Proto and the client address"
    )]
    pub fn trust_forwarded_proto_from<I, P>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Cow<'static, str>>,
    {
        self.trusted_proxies
            .extend(proxies.into_iter().map(Into::into));
        self
    }

    /// The proxies given to the deprecated `trust_forwarded_proto_from`, which `build()`
    /// adds to the one trusted-proxies setting.
    pub(crate) fn legacy_trusted_proxies(&self) -> &[Cow<'static, str>] {
        &self.trusted_proxies
    }

    /// Checks every name and value; the result only inserts ready-made values.
    /// `X-Forwarded-Proto` is believed from `trusted` proxies.
    pub(crate) fn compile(
        &self,
        trusted: &TrustedProxies,
    ) -> Result<Option<CompiledHeaders>, BuildError> {
        let bad = |reason: String| BuildError::setting("security_headers", reason);
        let name_of = |name: &Cow<'static, str>| {
            if reserved(name) {
                return Err(bad(format!(
                    "{name:?} is not a security header (framing belongs to the server, \
                     access-control-* to Cors)"
                )));
            }
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("{name:?} is not a valid header name")))?;
            // A static name is kept static: copied into every response, it is then never
            // reference-counted (checked above, so `from_static` cannot panic).
            Ok(match name {
                Cow::Borrowed(s) if parsed.as_str() == *s => HeaderName::from_static(s),
                _ => parsed,
            })
        };
        let mut compiled = CompiledHeaders::default();
        for entry in &self.entries {
            let name = name_of(&entry.name)?;
            if entry.mode == Mode::Omit {
                continue;
            }
            let value = header_value(entry.value.clone()).ok_or_else(|| {
                bad(format!(
                    "{}: {:?} is not a valid header value",
                    entry.name, entry.value
                ))
            })?;
            let overwrite = entry.mode == Mode::Override;
            if name == header::STRICT_TRANSPORT_SECURITY && self.hsts_only_over_tls {
                compiled.hsts = Some((value, overwrite));
            } else if overwrite {
                compiled.always.push((name, value));
            } else {
                compiled.if_absent.push((name, value));
            }
        }
        for name in &self.strip {
            compiled.strip.push(name_of(name)?);
        }
        compiled.trusted_proxies = trusted.clone();
        let empty = compiled.if_absent.is_empty()
            && compiled.always.is_empty()
            && compiled.hsts.is_none()
            && compiled.strip.is_empty();
        Ok((!empty).then_some(compiled))
    }
}

/// Every powerful feature a JSON API never needs, off.
const PERMISSIONS_OFF: &str = "accelerometer=(), autoplay=(), camera=(), display-capture=(), \
encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), \
midi=(), payment=(), picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), \
sync-xhr=(), usb=(), xr-spatial-tracking=()";

/// helmet's default Content-Security-Policy.
const WEB_CSP: &str = "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; \
form-action 'self'; frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; \
script-src 'self'; script-src-attr 'none'; style-src 'self' https: 'unsafe-inline'; \
upgrade-insecure-requests";

fn lower(name: Cow<'static, str>) -> Cow<'static, str> {
    let clean = |s: &str| s.trim() == s && !s.bytes().any(|b| b.is_ascii_uppercase());
    if clean(&name) {
        name
    } else {
        Cow::Owned(name.trim().to_ascii_lowercase())
    }
}

/// A header value made once: static strings are not copied, owned ones are shared.
fn header_value(value: Cow<'static, str>) -> Option<HeaderValue> {
    // `from_static` accepts only visible ASCII and tab (and panics on the rest), while
    // `from_str` also takes obs-text: check first, never panic.
    let visible = |s: &str| s.bytes().all(|b| b == b'\t' || (32..127).contains(&b));
    match value {
        Cow::Borrowed(s) if visible(s) => Some(HeaderValue::from_static(s)),
        Cow::Borrowed(s) => HeaderValue::from_str(s).ok(),
        Cow::Owned(s) => HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).ok(),
    }
}

/// A marker a TLS acceptor puts in the request extensions: the request arrived over TLS.
///
/// Used by [`SecurityHeaders::hsts_only_over_tls`].
///
/// ```
/// use tower_observability::ArrivedOverTls;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ArrivedOverTls);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArrivedOverTls;

/// [`SecurityHeaders`] made ready: names and values parsed once.
#[derive(Debug, Default)]
pub(crate) struct CompiledHeaders {
    if_absent: Vec<(HeaderName, HeaderValue)>,
    always: Vec<(HeaderName, HeaderValue)>,
    /// HSTS when limited to TLS requests: the value and whether it overrides the handler's.
    hsts: Option<(HeaderValue, bool)>,
    strip: Vec<HeaderName>,
    trusted_proxies: TrustedProxies,
}

impl CompiledHeaders {
    /// Whether the TLS-only HSTS header goes on this request's response.
    pub(crate) fn hsts_for<B>(&self, req: &Request<B>) -> bool {
        if self.hsts.is_none() {
            return false;
        }
        if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS)
            || req.extensions().get::<ArrivedOverTls>().is_some()
        {
            return true;
        }
        if !self.trusted_proxies.peer_is_trusted(req) {
            return false;
        }
        // The nearest proxy's value is the last one, whatever the client sent before it.
        req.headers()
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }

    /// Adds the layer's headers to a response template.
    pub(crate) fn add_to(&self, map: &mut HeaderMap, hsts: bool) {
        for (name, value) in self.always.iter().chain(&self.if_absent) {
            crate::response_policy::add(map, name, value);
        }
        if let (true, Some((value, _))) = (hsts, &self.hsts) {
            crate::response_policy::add(map, &header::STRICT_TRANSPORT_SECURITY, value);
        }
    }

    /// Names whose value the application cannot set: overrides and the removal list.
    pub(crate) fn owned(&self) -> Vec<HeaderName> {
        let mut owned: Vec<HeaderName> = self.always.iter().map(|(n, _)| n.clone()).collect();
        if let Some((_, true)) = &self.hsts {
            owned.push(header::STRICT_TRANSPORT_SECURITY);
        }
        owned.extend(self.strip.iter().cloned());
        owned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cors::Grant;
    use crate::response_policy::{apply_for_test, ResponsePolicy};
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn compiled(h: SecurityHeaders) -> Arc<ResponsePolicy> {
        ResponsePolicy::new(h.compile(&TrustedProxies::default()).unwrap(), None).unwrap()
    }

    fn applied(h: &Arc<ResponsePolicy>, mut headers: HeaderMap, hsts: bool) -> HeaderMap {
        apply_for_test(h, &mut headers, hsts, Grant::NotCors);
        headers
    }

    #[test]
    fn api_preset_sets_each_header_once_and_strips_the_stack() {
        let h = compiled(SecurityHeaders::api());
        let mut start = HeaderMap::new();
        start.insert("server", HeaderValue::from_static("nginx/1.2"));
        start.insert("x-powered-by", HeaderValue::from_static("PHP"));
        let out = applied(&h, start, false);
        assert!(out.get("server").is_none() && out.get("x-powered-by").is_none());
        // Exactly the table of `api()`'s docs.
        let mut sent: Vec<(&str, &str)> = out
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        sent.sort();
        assert_eq!(
            sent,
            [
                ("cache-control", "no-store, max-age=0"),
                (
                    "content-security-policy",
                    "default-src 'none'; frame-ancestors 'none'"
                ),
                ("cross-origin-embedder-policy", "require-corp"),
                ("cross-origin-opener-policy", "same-origin"),
                ("cross-origin-resource-policy", "same-origin"),
                ("permissions-policy", PERMISSIONS_OFF),
                ("referrer-policy", "no-referrer"),
                (
                    "strict-transport-security",
                    "max-age=31536000; includeSubDomains"
                ),
                ("x-content-type-options", "nosniff"),
                ("x-frame-options", "DENY"),
                ("x-permitted-cross-domain-policies", "none"),
            ]
        );
        // Applying twice (e.g. nested layers) never duplicates a header.
        let out = applied(&h, out, false);
        for name in out.keys() {
            assert_eq!(out.get_all(name).iter().count(), 1, "{name} duplicated");
        }
    }

    #[test]
    fn handler_values_are_kept_unless_overridden() {
        let h = compiled(
            SecurityHeaders::api()
                .override_header("X-Frame-Options", "SAMEORIGIN")
                .without("permissions-policy"),
        );
        let mut start = HeaderMap::new();
        start.insert("cache-control", HeaderValue::from_static("max-age=60"));
        start.insert("x-frame-options", HeaderValue::from_static("DENY"));
        start.append("set-cookie", HeaderValue::from_static("a=1"));
        start.append("set-cookie", HeaderValue::from_static("b=2"));
        start.append("server", HeaderValue::from_static("x"));
        start.append("server", HeaderValue::from_static("y"));
        let out = applied(&h, start, false);
        let cookies: Vec<_> = out.get_all("set-cookie").iter().collect();
        assert_eq!(
            cookies,
            ["a=1", "b=2"],
            "every value of a repeated header is kept"
        );
        assert!(
            out.get("server").is_none(),
            "every value of a stripped header goes"
        );
        assert_eq!(out["cache-control"], "max-age=60");
        assert_eq!(out["x-frame-options"], "SAMEORIGIN");
        assert!(out.get("permissions-policy").is_none());
    }

    #[test]
    fn invalid_names_and_values_are_build_errors_naming_the_header() {
        let err = |h: SecurityHeaders| {
            h.compile(&TrustedProxies::default())
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(SecurityHeaders::api().header("x-frame-options", "DENY\r\nx: y"))
                .contains("x-frame-options")
        );
        assert!(err(SecurityHeaders::api().header("bad name", "v")).contains("bad name"));
        assert!(
            err(SecurityHeaders::api().header("content-length", "1")).contains("content-length")
        );
        assert!(
            err(SecurityHeaders::api().header("access-control-allow-origin", "*")).contains("Cors")
        );
        let none = TrustedProxies::default();
        assert!(SecurityHeaders::none().compile(&none).unwrap().is_none());
        // Non-ASCII (obs-text) is a valid value, and must not reach `from_static`'s panic.
        let h = SecurityHeaders::none().header("x-note", "caf\u{e9}");
        assert!(h.compile(&none).unwrap().is_some());
        assert!(err(SecurityHeaders::none().header("x-note", "a\u{7f}")).contains("x-note"));
    }

    #[test]
    fn hsts_can_be_limited_to_tls_and_trusted_proxies() {
        let config = SecurityHeaders::api().hsts_only_over_tls();
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "::1"], Default::default()).unwrap();
        let h = config.compile(&trusted).unwrap().unwrap();
        let req = |uri: &str, peer: Option<&str>, proto: Option<&str>| {
            let mut req = Request::get(uri).body(()).unwrap();
            if let Some(peer) = peer {
                req.extensions_mut()
                    .insert(peer.parse::<SocketAddr>().unwrap());
            }
            if let Some(proto) = proto {
                req.headers_mut()
                    .insert("x-forwarded-proto", HeaderValue::from_str(proto).unwrap());
            }
            req
        };
        assert!(h.hsts_for(&req("https://api.example.com/", None, None)));
        assert!(!h.hsts_for(&req("/", None, None)));
        let mut tls = req("/", None, None);
        tls.extensions_mut().insert(ArrivedOverTls);
        assert!(h.hsts_for(&tls));
        assert!(h.hsts_for(&req("/", Some("10.1.2.3:5000"), Some("https"))));
        assert!(h.hsts_for(&req("/", Some("[::1]:5000"), Some("http, https"))));
        assert!(!h.hsts_for(&req("/", Some("10.1.2.3:5000"), Some("https, http"))));
        // Anyone else's X-Forwarded-Proto is not believed.
        assert!(!h.hsts_for(&req("/", Some("192.168.1.1:5000"), Some("https"))));
        assert!(!h.hsts_for(&req("/", None, Some("https"))));
        let h = compiled(config);
        assert!(applied(&h, HeaderMap::new(), false)
            .get("strict-transport-security")
            .is_none());
        assert!(applied(&h, HeaderMap::new(), true)
            .get("strict-transport-security")
            .is_some());
    }
}
