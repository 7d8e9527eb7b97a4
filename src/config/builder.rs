//! [`ObservabilityBuilder`]: every setting, validated once by `build()`.

use super::{Origins, Setup};
use crate::client_address::{ForwardedHeader, TrustedProxies};
use crate::cors::{CompiledCors, Cors};
use crate::error::BuildError;
use crate::exclude::PathFilter;
use crate::metrics::{
    open_backend, MetricsBackend, ServiceInfo, DEFAULT_DURATION_BUCKETS, DEFAULT_SIZE_BUCKETS,
};
use crate::observability::{Observability, Readiness};
use crate::route::{RequestHead, RouteFn, RouteResolver};
use crate::security_headers::{CompiledHeaders, SecurityHeaders};
use crate::shared::Shared;
use crate::signal::Signals;
use crate::trace::{Sampler, REQUEST_ID};
use http::HeaderName;

/// The admin endpoints, kept out of the request metrics unless asked.
pub(crate) const ADMIN_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// The default cap on distinct routes.
pub const DEFAULT_ROUTE_LIMIT: usize = 1000;

/// The largest cap on distinct routes.
pub(crate) const MAX_ROUTE_LIMIT: usize = 100_000;

/// Configuration of an [`Observability`]; made by [`Observability::builder`] or
/// [`Observability::from_env`], finished by [`build`](Self::build).
///
/// ```
/// use tower_observability::{MetricsBackend, Observability};
///
/// let obs = Observability::builder("checkout")
///     .service_version(env!("CARGO_PKG_VERSION"))
///     .environment("production")
///     .route_limit(500)
///     .exclude_prefix("/internal/")
///     .metrics_backend(MetricsBackend::IsolatedPrometheus)
///     .build()?;
/// assert_eq!(obs.service_name(), "checkout");
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct ObservabilityBuilder {
    pub(crate) service_name: String,
    pub(crate) service_version: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) duration_buckets: Vec<f64>,
    pub(crate) size_buckets: Vec<f64>,
    pub(crate) route_limit: usize,
    pub(crate) excluded: Vec<String>,
    pub(crate) excluded_prefixes: Vec<String>,
    pub(crate) observe_admin_paths: bool,
    pub(crate) route_fn: Option<RouteFn>,
    pub(crate) backend: MetricsBackend,
    pub(crate) catch_panics: bool,
    pub(crate) security_headers: SecurityHeaders,
    pub(crate) cors: Option<Cors>,
    pub(crate) tracing: bool,
    pub(crate) sampler: Sampler,
    pub(crate) trust_inbound_context: bool,
    pub(crate) traceresponse: bool,
    pub(crate) request_id_header: Option<String>,
    pub(crate) record_query: bool,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) forwarded_header: ForwardedHeader,
    pub(crate) rate_limit: Option<crate::rate_limit::RateLimit>,
    pub(crate) shutdown_timeout: std::time::Duration,
    #[cfg(feature = "otlp")]
    pub(crate) export: crate::trace::otlp::ExportConfig,
    #[cfg(feature = "sentry")]
    pub(crate) sentry: crate::Sentry,
    pub(crate) strict_env: bool,
    /// Which settings the environment set, so errors about them name the variable.
    pub(crate) origins: Origins,
}

impl ObservabilityBuilder {
    pub(crate) fn new(service_name: String) -> Self {
        ObservabilityBuilder {
            service_name,
            service_version: None,
            environment: None,
            duration_buckets: DEFAULT_DURATION_BUCKETS.to_vec(),
            size_buckets: DEFAULT_SIZE_BUCKETS.to_vec(),
            route_limit: DEFAULT_ROUTE_LIMIT,
            excluded: Vec::new(),
            excluded_prefixes: Vec::new(),
            observe_admin_paths: false,
            route_fn: None,
            backend: MetricsBackend::default(),
            catch_panics: true,
            security_headers: SecurityHeaders::api(),
            cors: None,
            tracing: true,
            sampler: Sampler::default(),
            trust_inbound_context: true,
            traceresponse: false,
            request_id_header: Some(REQUEST_ID.to_owned()),
            record_query: false,
            resource_attributes: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            rate_limit: None,
            shutdown_timeout: crate::shutdown::DEFAULT_SHUTDOWN_TIMEOUT,
            #[cfg(feature = "otlp")]
            export: Default::default(),
            #[cfg(feature = "sentry")]
            sentry: crate::Sentry::default(),
            strict_env: false,
            origins: Origins::default(),
        }
    }

    /// The service's name (`service_name` on `target_info`, `service.name` of spans):
    /// replaces the one given to [`Observability::builder`] (`OTEL_SERVICE_NAME`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// The service's version (`service_version` on `target_info`); default `unknown`.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// The deployment environment (`deployment_environment` on `target_info`); default
    /// `unknown`.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Buckets of the duration histograms, in seconds, strictly increasing.
    pub fn duration_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.duration_buckets = buckets.into_iter().collect();
        self
    }

    /// Buckets of the body-size histograms, in bytes, strictly increasing.
    pub fn size_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.size_buckets = buckets.into_iter().collect();
        self
    }

    /// The cap on distinct routes (default 1000); beyond it, requests are recorded with
    /// `http_route="overflow"` and counted in `tower_observability_routes_overflowed_total`.
    pub fn route_limit(mut self, limit: usize) -> Self {
        self.route_limit = limit;
        self
    }

    /// Keeps requests to exactly `path` out of the request signals.
    pub fn exclude_path(mut self, path: impl Into<String>) -> Self {
        self.excluded.push(path.into());
        self
    }

    /// Keeps requests whose path starts with `prefix` out of the request signals.
    pub fn exclude_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.excluded_prefixes.push(prefix.into());
        self
    }

    /// Counts requests to `/metrics`, `/healthz` and `/readyz` too (default: not counted,
    /// so scrapes and probes do not drown the service's own traffic).
    pub fn observe_admin_paths(mut self, observe: bool) -> Self {
        self.observe_admin_paths = observe;
        self
    }

    /// A route function for routers other than axum's, asked when there is no
    /// `MatchedPath` and the request is not gRPC. Return templates, not raw paths.
    ///
    /// ```
    /// # use tower_observability::{MetricsBackend, Observability};
    /// let obs = Observability::builder("api")
    ///     .route_fn(|head| match head.uri.path() {
    ///         "/" => Some("/".into()),
    ///         p if p.starts_with("/users/") => Some("/users/{id}".into()),
    ///         _ => None,
    ///     })
    /// #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
    ///     .build()?;
    /// # Ok::<(), tower_observability::BuildError>(())
    /// ```
    pub fn route_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(RequestHead<'_>) -> Option<std::borrow::Cow<'static, str>> + Send + Sync + 'static,
    {
        self.route_fn = Some(RouteFn::new(f));
        self
    }

    /// Where metrics are recorded (default: install a Prometheus recorder).
    pub fn metrics_backend(mut self, backend: MetricsBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Whether panics in handlers are caught and answered with a 500 (default: yes). When
    /// off, a panic unwinds through the layer, which still records it and frees the gauge.
    pub fn catch_panics(mut self, catch: bool) -> Self {
        self.catch_panics = catch;
        self
    }

    /// The security headers every response leaves with (default
    /// [`SecurityHeaders::api`]; [`SecurityHeaders::none`] turns them off).
    pub fn security_headers(mut self, headers: SecurityHeaders) -> Self {
        self.security_headers = headers;
        self
    }

    /// The CORS policy (default: none, so browsers allow no other origin). Replaces a
    /// policy read from `OBSERVABILITY_CORS_ALLOWED_ORIGINS`.
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = Some(cors);
        self
    }

    /// The proxies in front of the service (load balancers, ingress): IP addresses or CIDR
    /// networks (`10.0.0.0/8`, `fd00::/8`, `::ffff:10.0.0.0/104`); also
    /// `OBSERVABILITY_TRUSTED_PROXIES`. Only on requests whose peer is one of them are the
    /// forwarding headers believed: the client address is then the right-most address of
    /// `X-Forwarded-For` (or [`Forwarded`](ForwardedHeader)) that is not a trusted proxy,
    /// never the left-most, which the client writes; and `X-Forwarded-Proto` tells whether
    /// the request arrived over TLS ([`SecurityHeaders::hsts_only_over_tls`]). Default:
    /// none, every request is judged by its own connection.
    pub fn trusted_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.trusted_proxies
            .extend(proxies.into_iter().map(Into::into));
        self
    }

    /// The header the [trusted proxies](Self::trusted_proxies) write the client address
    /// into (default `X-Forwarded-For`; also `OBSERVABILITY_FORWARDED_HEADER`). Only that
    /// one is read: the other would be the client's own, passed on untouched.
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.forwarded_header = header;
        self
    }

    /// Rate limits applied in the layer's pass (default: none; also
    /// `OBSERVABILITY_RATE_LIMIT*`, which this replaces). See
    /// [`RateLimit`](crate::rate_limit::RateLimit).
    pub fn rate_limit(mut self, limits: crate::rate_limit::RateLimit) -> Self {
        self.rate_limit = Some(limits);
        self
    }

    /// Whether requests get a server span, trace context and request id at all (default:
    /// yes). Off, the layer neither reads nor writes `traceparent` or `x-request-id`.
    pub fn tracing(mut self, on: bool) -> Self {
        self.tracing = on;
        self
    }

    /// Which traces are recorded (default `parentbased_always_on`; `OTEL_TRACES_SAMPLER`).
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// Whether a caller's `traceparent` makes the server span its child (default: yes).
    /// When off (for services at the edge, called by clients you do not control), every
    /// request starts a new trace whose server span links to the caller's context.
    pub fn trust_inbound_context(mut self, trust: bool) -> Self {
        self.trust_inbound_context = trust;
        self
    }

    /// Adds the `traceresponse` header (the server span's id and sampled flag) to every
    /// response (default: off).
    pub fn traceresponse(mut self, on: bool) -> Self {
        self.traceresponse = on;
        self
    }

    /// The request id header, taken from requests and echoed in responses (default
    /// `x-request-id`); `None` turns request ids off.
    pub fn request_id_header(mut self, header: Option<&str>) -> Self {
        self.request_id_header = header.map(str::to_owned);
        self
    }

    /// Records the query string in the span's `url.query` (default: off, queries often carry
    /// secrets).
    pub fn record_query(mut self, record: bool) -> Self {
        self.record_query = record;
        self
    }

    /// The longest the final flush of queued spans and Sentry events may take when the last
    /// handle to the layer is dropped (default 5 s; `OBSERVABILITY_SHUTDOWN_TIMEOUT`): the
    /// drop waits for them, so the process does not exit before they left. See
    /// `Observability::shutdown_signal`.
    pub fn shutdown_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Exports spans with OTLP (feature `otlp`). [`Observability::from_env`] turns this on
    /// by itself, as OpenTelemetry SDKs do, unless `OTEL_TRACES_EXPORTER=none` or
    /// `OTEL_SDK_DISABLED=true`.
    #[cfg(feature = "otlp")]
    pub fn otlp(mut self, settings: crate::trace::OtlpSettings) -> Self {
        self.export.target = crate::trace::otlp::Target::Otlp(settings);
        self
    }

    /// Exports spans through `exporter` behind the layer's bounded queue (feature `otlp`):
    /// for exporters other than OTLP, or an OTLP exporter configured in code.
    #[cfg(feature = "otlp")]
    pub fn span_exporter<E>(mut self, exporter: E) -> Self
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        self.export.target = crate::trace::otlp::Target::exporter(exporter);
        self
    }

    /// Hands every finished span to `processor` (feature `otlp`): for an existing
    /// OpenTelemetry pipeline (e.g. a `BatchSpanProcessor` shared with other spans). The
    /// layer's own drop and export counters then stay at 0; the processor has its own.
    #[cfg(feature = "otlp")]
    pub fn span_processor<P>(mut self, processor: P) -> Self
    where
        P: opentelemetry_sdk::trace::SpanProcessor + 'static,
    {
        self.export.target = crate::trace::otlp::Target::processor(processor);
        self
    }

    /// The export queue's bound, batch size, delay and timeout (feature `otlp`; defaults
    /// and `OTEL_BSP_*` variables in [`BatchSettings`](crate::trace::BatchSettings)).
    #[cfg(feature = "otlp")]
    pub fn batch_settings(mut self, batch: crate::trace::BatchSettings) -> Self {
        self.export.batch = batch;
        self
    }

    /// Reports server errors and panics to Sentry (feature `sentry`): see [`Sentry`](crate::Sentry).
    /// Replaces what `SENTRY_*` variables set ([`Sentry::from_env`](crate::Sentry::from_env)
    /// reads them, to refine in code).
    #[cfg(feature = "sentry")]
    pub fn sentry(mut self, sentry: crate::Sentry) -> Self {
        self.sentry = sentry;
        self
    }

    /// Makes a telemetry variable set for a cargo feature that is not compiled in (such as
    /// `SENTRY_DSN` without the `sentry` feature) a [`BuildError`] instead of one warning
    /// at [`build`](Self::build) (default: a warning; also `OBSERVABILITY_STRICT_ENV`).
    pub fn strict_env(mut self, strict: bool) -> Self {
        self.strict_env = strict;
        self
    }

    /// Checks every setting and starts the layer's shared state. An error about a value
    /// read from the environment names the variable.
    pub fn build(self) -> Result<Observability, BuildError> {
        let checked = self.check().map_err(|e| self.origins.name(e))?;
        self.origins.warn_inert(self.strict_env)?;
        let Checked {
            info,
            excluded,
            headers,
            cors,
            request_id,
            trusted,
            #[cfg(feature = "sentry")]
            sentry_dsn,
        } = checked;
        let (sink, exposition) =
            open_backend(&self.backend, &self.duration_buckets, &self.size_buckets);
        let signals = Signals::build(&mut Setup {
            settings: &self,
            info: &info,
            sink: &sink,
            headers,
            cors,
            request_id,
            trusted,
            #[cfg(feature = "sentry")]
            sentry_dsn,
        })
        .map_err(|e| self.origins.name(e))?;
        Ok(Observability::start(Shared {
            info,
            routes: RouteResolver::new(self.route_limit, self.route_fn),
            excluded,
            catch_panics: self.catch_panics,
            signals,
            exposition,
            scrape_buffer: Default::default(),
            readiness: Readiness::new(true),
            shutdown: crate::shutdown::Shutdown::new(self.shutdown_timeout),
        }))
    }

    /// Every setting checked, the one place they are: before anything starts, so a bad
    /// setting installs no recorder and starts no thread. Also run by
    /// [`Observability::from_env`] on what the environment set, so its errors come early.
    pub(crate) fn check(&self) -> Result<Checked, BuildError> {
        let name = self.service_name.trim();
        if name.is_empty() || name.len() > 255 {
            return Err(BuildError::setting(
                "service_name",
                "must be 1 to 255 characters",
            ));
        }
        check_buckets("duration_buckets", &self.duration_buckets)?;
        check_buckets("size_buckets", &self.size_buckets)?;
        if self.route_limit == 0 || self.route_limit > MAX_ROUTE_LIMIT {
            return Err(BuildError::setting(
                "route_limit",
                format!("{} is outside 1..={MAX_ROUTE_LIMIT}", self.route_limit),
            ));
        }
        let mut excluded = PathFilter::default();
        for path in &self.excluded {
            check_path("exclude_path", path)?;
            excluded.exact(path);
        }
        for prefix in &self.excluded_prefixes {
            check_path("exclude_prefix", prefix)?;
            excluded.prefix(prefix);
        }
        if !self.observe_admin_paths {
            ADMIN_PATHS.iter().for_each(|p| excluded.exact(p));
        }
        let proxies: Vec<&str> = self
            .trusted_proxies
            .iter()
            .map(String::as_str)
            .chain(
                self.security_headers
                    .legacy_trusted_proxies()
                    .iter()
                    .map(|p| &**p),
            )
            .collect();
        let trusted = TrustedProxies::parse(&proxies, self.forwarded_header)
            .map_err(|e| BuildError::setting("trusted_proxies", e))?;
        if let Some(limits) = &self.rate_limit {
            limits.check()?;
        }
        let request_id = match &self.request_id_header {
            Some(name) => Some(HeaderName::try_from(name.as_str()).map_err(|_| {
                BuildError::setting(
                    "request_id_header",
                    format!("{name:?} is not a header name"),
                )
            })?),
            None => None,
        };
        #[cfg(feature = "otlp")]
        self.export.check()?;
        Ok(Checked {
            info: ServiceInfo {
                name: name.to_owned(),
                version: self
                    .service_version
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
                environment: self.environment.clone().unwrap_or_else(|| "unknown".into()),
            },
            excluded,
            headers: self.security_headers.compile(&trusted)?,
            cors: self.cors.as_ref().map(Cors::compile).transpose()?,
            request_id,
            trusted,
            #[cfg(feature = "sentry")]
            sentry_dsn: self.sentry.check()?,
        })
    }
}

/// What checking the settings made of them.
pub(crate) struct Checked {
    info: ServiceInfo,
    excluded: PathFilter,
    headers: Option<CompiledHeaders>,
    cors: Option<CompiledCors>,
    request_id: Option<HeaderName>,
    trusted: TrustedProxies,
    #[cfg(feature = "sentry")]
    sentry_dsn: Option<sentry_core::types::Dsn>,
}

fn check_buckets(setting: &'static str, buckets: &[f64]) -> Result<(), BuildError> {
    if buckets.is_empty() {
        return Err(BuildError::setting(setting, "needs at least one bucket"));
    }
    if let Some(bad) = buckets.iter().find(|b| !b.is_finite() || **b < 0.0) {
        return Err(BuildError::setting(
            setting,
            format!("{bad} is not a finite, non-negative boundary"),
        ));
    }
    if let Some(w) = buckets.windows(2).find(|w| w[0] >= w[1]) {
        return Err(BuildError::setting(
            setting,
            format!(
                "boundaries must be strictly increasing ({} then {})",
                w[0], w[1]
            ),
        ));
    }
    Ok(())
}

fn check_path(setting: &'static str, path: &str) -> Result<(), BuildError> {
    if !path.starts_with('/') {
        return Err(BuildError::setting(
            setting,
            format!("{path:?} must start with '/'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(b: ObservabilityBuilder) -> String {
        b.metrics_backend(MetricsBackend::IsolatedPrometheus)
            .build()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_settings_are_errors_naming_the_setting() {
        let b = || Observability::builder("svc");
        assert!(err(Observability::builder("  ")).contains("service_name"));
        assert!(err(b().duration_buckets([])).contains("duration_buckets"));
        assert!(err(b().duration_buckets([0.1, f64::NAN])).contains("finite"));
        assert!(err(b().size_buckets([10.0, 10.0])).contains("size_buckets"));
        assert!(err(b().route_limit(0)).contains("route_limit"));
        assert!(err(b().exclude_path("metrics")).contains("exclude_path"));
        assert!(err(b().exclude_prefix("x/")).contains("exclude_prefix"));
        assert!(err(b().trusted_proxies(["10.0.0.0/33"])).contains("10.0.0.0/33"));
        #[allow(deprecated)]
        let legacy = SecurityHeaders::api().trust_forwarded_proto_from(["nonsense"]);
        assert!(err(b().security_headers(legacy)).contains("trusted_proxies"));
    }
}
