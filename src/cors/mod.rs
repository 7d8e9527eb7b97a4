//! CORS: an allowlist of origins, checked by `build()`, answered in the layer's one pass.
//!
//! Only real preflights (`OPTIONS` + `Origin` + `Access-Control-Request-Method`) are answered
//! by the layer; every other request, `OPTIONS` included, reaches the application and its
//! response gets the grant (or, for a refused origin, none at all). `Vary` is merged with the
//! application's own. A public policy ([`Cors::public`]) grants `*` on every response, with
//! or without `Origin`, and sends no `Vary: Origin`: its answer never depends on the origin,
//! so a cached response serves every page. Refusals are counted in
//! `tower_observability_cors_refused_total{reason}` and logged at debug, the origin without
//! any user info.

mod origin;
mod preflight;
mod vary;

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use metrics::{Counter, Label};

use crate::error::BuildError;
use crate::metrics::names::{CORS_REFUSED, LABEL_CORS_REASON};
use crate::metrics::Sink;
use origin::{AllowedOrigins, Matched, OriginRule};

pub(crate) use preflight::is_preflight;

const ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
static TRUE: HeaderValue = HeaderValue::from_static("true");
pub(crate) static ANY: HeaderValue = HeaderValue::from_static("*");
static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("origin");

/// A CORS policy: which other origins' pages may call the service from a browser, with
/// which methods and headers, and what they may read of the response.
///
/// It is an allowlist: nothing is allowed unless listed. Mistakes are a [`BuildError`]
/// from [`ObservabilityBuilder::build`](crate::ObservabilityBuilder::build): a malformed
/// origin, an origin with a path (even `https://app.example.com/`), the `null` origin, a `*`
/// origin (every origin is [`Cors::public`]), or credentials together with any `*`.
///
/// ```
/// use std::time::Duration;
/// use tower_observability::{Cors, MetricsBackend, Observability};
///
/// let cors = Cors::allow_origins(["https://app.example.com", "https://*.staging.example.com"])
///     .allow_methods(["GET", "POST", "DELETE"])
///     .allow_headers(["content-type", "authorization"])
///     .expose_headers(["x-request-id"])
///     .allow_credentials(true)
///     .max_age(Duration::from_secs(600));
/// let obs = Observability::builder("api")
///     .cors(cors)
/// #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
///     .build()?;
/// # let _ = obs;
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
///
/// A mistake found by `build()`:
///
/// ```
/// use tower_observability::{Cors, Observability};
///
/// let err = Observability::builder("api")
///     .cors(Cors::allow_origins(["https://app.example.com/"]))
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("path"));
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
    public: bool,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    credentials: bool,
    max_age: Option<Duration>,
    private_network: bool,
}

impl Cors {
    /// Allows pages from `origins`: exact origins (`https://app.example.com`,
    /// `http://localhost:3000`, compared after the normalisation browsers apply: lowercase,
    /// default port left out) and subdomain patterns (`https://*.example.com` matches
    /// `https://a.example.com` and `https://a.b.example.com`, never `https://example.com`,
    /// another scheme or port). For every origin, use [`Cors::public`].
    ///
    /// Defaults: methods `GET`, `HEAD`, `POST`; no request headers beyond the CORS-safelisted
    /// ones; nothing exposed; no credentials; no `max-age` (browsers cache for 5 s).
    pub fn allow_origins<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cors {
            origins: origins.into_iter().map(Into::into).collect(),
            public: false,
            methods: ["GET", "HEAD", "POST"].map(String::from).to_vec(),
            headers: Vec::new(),
            expose: Vec::new(),
            credentials: false,
            max_age: None,
            private_network: false,
        }
    }

    /// A public API: every origin may call it and read the responses. Every response
    /// carries `Access-Control-Allow-Origin: *`, also one to a request without `Origin`
    /// (a cache may hand it to any page later), and needs no `Vary: Origin`. Public data
    /// only: browsers send no cookies or HTTP authentication to a `*` grant, and `build()`
    /// refuses [`allow_credentials`](Self::allow_credentials) here.
    ///
    /// Defaults as for [`allow_origins`](Self::allow_origins): methods `GET`, `HEAD`, `POST`,
    /// no request headers beyond the CORS-safelisted ones, nothing exposed.
    ///
    /// ```
    /// # use tower_observability::{Cors, MetricsBackend, Observability};
    /// let open = Cors::public().allow_headers(["content-type"]);
    /// # Observability::builder("api").cors(open)
    /// #   .metrics_backend(MetricsBackend::IsolatedPrometheus).build()?;
    /// # Ok::<(), tower_observability::BuildError>(())
    /// ```
    pub fn public() -> Self {
        Cors {
            public: true,
            ..Cors::allow_origins(["*"])
        }
    }

    /// The methods pages may use (default `GET`, `HEAD`, `POST`). Compared case-sensitively,
    /// as browsers do: `PATCH` must be written in capitals and sent that way. `*` allows any
    /// method (not with credentials).
    pub fn allow_methods<I>(mut self, methods: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.methods = methods.into_iter().map(|m| m.as_ref().to_owned()).collect();
        self
    }

    /// Request headers pages may send beyond the CORS-safelisted ones, e.g. `content-type`
    /// for JSON bodies. `*` allows any header except `authorization`, which must always be
    /// listed by name (not with credentials).
    pub fn allow_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.headers = headers.into_iter().map(|h| h.as_ref().to_owned()).collect();
        self
    }

    /// Response headers pages may read beyond the CORS-safelisted ones
    /// (`Access-Control-Expose-Headers`).
    pub fn expose_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.expose = headers.into_iter().map(|h| h.as_ref().to_owned()).collect();
        self
    }

    /// Lets pages send cookies and HTTP authentication (`credentials: "include"`) and read
    /// the answer. The allowed origin is then always echoed, and no `*` is accepted anywhere.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// How long browsers may cache a preflight answer (`Access-Control-Max-Age`). Chromium
    /// caps it at 2 hours, Firefox at 24.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Answers private-network-access preflights
    /// (`Access-Control-Request-Private-Network: true`) with a grant: for services on a
    /// private address that public pages may call. Off by default, and refused preflights
    /// are counted with `reason="private_network"`.
    pub fn allow_private_network(mut self, allow: bool) -> Self {
        self.private_network = allow;
        self
    }

    /// Checks the policy; its counters are registered by [`CompiledCors::register`].
    pub(crate) fn compile(&self) -> Result<CompiledCors, BuildError> {
        let bad = |reason: String| BuildError::setting("cors", reason);
        let mut origins = AllowedOrigins::default();
        for raw in &self.origins {
            let rule = origin::parse(raw).map_err(|e| bad(format!("origin {e}")))?;
            if rule == OriginRule::Any && !self.public {
                return Err(bad(
                    "origin `*` allows every site to call the service: list the origins, \
                     or use `Cors::public()` if the API really is public"
                        .into(),
                ));
            }
            origins.add(rule);
        }
        if origins.is_empty() {
            return Err(bad("no allowed origins: list at least one".into()));
        }
        let star = |list: &[String]| list.iter().any(|s| s.trim() == "*");
        if self.credentials {
            let wildcard = [
                (origins.any, "origins"),
                (star(&self.methods), "methods"),
                (star(&self.headers), "headers"),
                (star(&self.expose), "exposed headers"),
            ];
            if let Some((_, what)) = wildcard.iter().find(|(w, _)| *w) {
                return Err(bad(format!(
                    "credentials with `*` in the {what}: browsers read `*` literally on \
                     credentialed requests; list them by name"
                )));
            }
        }
        let mut methods = Vec::new();
        for m in self.methods.iter().map(|m| m.trim()) {
            if m == "*" {
                continue;
            }
            let method = Method::from_bytes(m.as_bytes())
                .map_err(|_| bad(format!("{m:?} is not a valid method")))?;
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
        let names = |what: &str, list: &[String]| -> Result<Vec<HeaderName>, BuildError> {
            let mut out = Vec::new();
            for h in list.iter().map(|h| h.trim()).filter(|h| *h != "*") {
                let name = HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| bad(format!("{what} {h:?} is not a valid header name")))?;
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            Ok(out)
        };
        let headers = names("allowed header", &self.headers)?;
        let expose = names("exposed header", &self.expose)?;
        let list = |items: Vec<&str>| {
            HeaderValue::from_str(&items.join(", ")).expect("validated names and methods")
        };
        let any_method = star(&self.methods);
        let mut method_list: Vec<&str> = methods.iter().map(Method::as_str).collect();
        if any_method {
            method_list.insert(0, "*");
        }
        let mut expose_list: Vec<&str> = expose.iter().map(HeaderName::as_str).collect();
        if star(&self.expose) {
            expose_list.insert(0, "*");
        }
        Ok(CompiledCors {
            origins,
            methods_value: list(method_list),
            methods,
            any_method,
            any_header: star(&self.headers),
            headers,
            expose: (!expose_list.is_empty()).then(|| list(expose_list)),
            credentials: self.credentials,
            max_age: self.max_age.map(|d| HeaderValue::from(d.as_secs())),
            private_network: self.private_network,
            refused: Refusal::ALL.map(|_| Counter::noop()),
        })
    }
}

/// Why a CORS request was refused: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Origin,
    Method,
    Headers,
    PrivateNetwork,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::Origin,
        Refusal::Method,
        Refusal::Headers,
        Refusal::PrivateNetwork,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Refusal::Origin => "origin",
            Refusal::Method => "method",
            Refusal::Headers => "headers",
            Refusal::PrivateNetwork => "private_network",
        }
    }
}

/// A [`Cors`] policy made ready for requests.
pub(crate) struct CompiledCors {
    origins: AllowedOrigins,
    methods: Vec<Method>,
    any_method: bool,
    methods_value: HeaderValue,
    headers: Vec<HeaderName>,
    any_header: bool,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
    private_network: bool,
    refused: [Counter; 4],
}

/// What the response to a request that is not a preflight gets.
#[derive(Debug, Clone)]
pub(crate) enum Grant {
    /// No `Origin`: not a CORS request (only `Vary: Origin`, for caches). A public policy
    /// grants [`Any`](Self::Any) instead.
    NotCors,
    /// Origin or method not allowed: no grant headers at all.
    Refused,
    /// `Access-Control-Allow-Origin: *` (public policies).
    Any,
    /// `Access-Control-Allow-Origin: <the configured exact origin of this index>`.
    Exact(usize),
    /// `Access-Control-Allow-Origin: <origin>` (a subdomain pattern matched).
    Echo(HeaderValue),
}

/// The grant a response template is made with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TemplateGrant {
    /// No grant headers (not a CORS request, or refused).
    None,
    /// The grant headers with `*` in `Access-Control-Allow-Origin`, which an echo replaces.
    Star,
    /// The grant of the exact origin of this index, complete.
    Exact(usize),
}

/// What the layer does with a request.
pub(crate) enum CorsDecision {
    /// A preflight, answered by the layer.
    Answer(Response<Bytes>),
    /// Any other request: to the application, then this grant on its response.
    Pass(Grant),
}

impl CompiledCors {
    /// Registers the refusal counters once, reading 0 until something is refused.
    pub(crate) fn register(&mut self, sink: &Sink) {
        self.refused = Refusal::ALL.map(|r| {
            let labels = vec![Label::new(LABEL_CORS_REASON, r.as_str())];
            let counter = sink.counter(CORS_REFUSED, labels);
            counter.increment(0);
            counter
        });
    }

    pub(crate) fn decide<B>(&self, req: &Request<B>) -> CorsDecision {
        let headers = req.headers();
        let Some(origin) = headers.get(header::ORIGIN) else {
            // `*` does not depend on the origin: sent always, a cached response serves all.
            let grant = if self.origins.any {
                Grant::Any
            } else {
                Grant::NotCors
            };
            return CorsDecision::Pass(grant);
        };
        if is_preflight(req.method(), headers) {
            return CorsDecision::Answer(preflight::answer(self, origin, headers));
        }
        let grant = match self.origins.matches(origin) {
            None => {
                self.refuse(Refusal::Origin, origin, "request");
                Grant::Refused
            }
            Some(_) if !(self.any_method || self.methods.contains(req.method())) => {
                self.refuse(Refusal::Method, origin, "request");
                Grant::Refused
            }
            Some(Matched::Any) => Grant::Any,
            Some(Matched::Exact(i)) => Grant::Exact(i),
            Some(Matched::Echo(origin)) => Grant::Echo(origin),
        };
        CorsDecision::Pass(grant)
    }

    /// Adds the layer's CORS headers to a response template: `Vary: Origin` whenever the
    /// answer depends on the origin (not for a public `*`), and the static part of a grant.
    pub(crate) fn add_to(&self, map: &mut HeaderMap, grant: TemplateGrant) {
        if self.varies() {
            crate::response_policy::add(map, &header::VARY, &VARY_ORIGIN);
        }
        let origin = match grant {
            TemplateGrant::None => return,
            // A slot whose value an echo replaces in place (`*` for public policies).
            TemplateGrant::Star => &ANY,
            TemplateGrant::Exact(i) => self.exact_origin(i),
        };
        crate::response_policy::add(map, &header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            crate::response_policy::add(map, &header::ACCESS_CONTROL_ALLOW_CREDENTIALS, &TRUE);
        }
        if let Some(expose) = &self.expose {
            crate::response_policy::add(map, &header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
    }

    /// How many exact origins there are (each gets response templates of its own).
    pub(crate) fn exact_origins(&self) -> usize {
        self.origins.exact().len()
    }

    /// The configured exact origin of index `i`.
    pub(crate) fn exact_origin(&self, i: usize) -> &HeaderValue {
        &self.origins.exact()[i]
    }

    /// Whether responses vary by `Origin`.
    pub(crate) fn varies(&self) -> bool {
        !self.origins.any
    }

    fn method_allowed(&self, method: &[u8]) -> bool {
        self.any_method || self.methods.iter().any(|m| m.as_str().as_bytes() == method)
    }

    fn header_allowed(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|h| h.as_str().eq_ignore_ascii_case(name))
            || (self.any_header && !name.eq_ignore_ascii_case("authorization"))
    }

    fn refuse(&self, refusal: Refusal, origin: &HeaderValue, what: &'static str) {
        self.refused[refusal as usize].increment(1);
        // The origin as a log may show it: a browser never sends user info, an attacker may.
        tracing::debug!(
            reason = refusal.as_str(),
            origin = %crate::redact::LoggedUrl(origin.as_bytes()),
            "CORS {what} refused"
        );
    }
}

impl std::fmt::Debug for CompiledCors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledCors")
            .field("origins", &self.origins)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Adds `Origin` to a response's `Vary`, keeping the application's.
pub(crate) fn merge_vary(headers: &mut HeaderMap) {
    vary::merge(headers, &VARY_ORIGIN);
}

#[cfg(test)]
mod tests;
