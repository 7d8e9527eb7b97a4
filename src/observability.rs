//! The [`Observability`] handle: built once, gives the layer, the admin endpoints and the
//! readiness switch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::ObservabilityBuilder;
use crate::error::BuildError;
use crate::layer::ObservabilityLayer;
use crate::metrics::exposition::Format;
use crate::metrics::process::ProcessStats;
use crate::shared::Shared;

/// How often histogram samples are folded into buckets between scrapes, so memory stays
/// flat however rarely `/metrics` is scraped.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The observability of one service: build it once at start-up, then add
/// [`layer`](Self::layer) to the service and serve the [admin endpoints](Self::serve_admin).
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_observability::{MetricsBackend, Observability};
///
/// let obs = Observability::builder("checkout")
///     .metrics_backend(MetricsBackend::IsolatedPrometheus)
///     .build()?;
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "hello" }))
///     .layer(obs.layer());
/// # let _ = app;
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Observability {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observability")
            .field("service_name", &self.shared.info.name)
            .finish_non_exhaustive()
    }
}

impl Observability {
    /// Starts a configuration with the crate's defaults for the service `service_name`.
    pub fn builder(service_name: impl Into<String>) -> ObservabilityBuilder {
        ObservabilityBuilder::new(service_name.into())
    }

    /// Starts a configuration from the environment: `OTEL_SERVICE_NAME`,
    /// `OTEL_RESOURCE_ATTRIBUTES` and the crate's `OBSERVABILITY_*` variables (see the
    /// crate docs). `service_name` is used when `OTEL_SERVICE_NAME` is unset.
    ///
    /// A variable holding a value that cannot be used is a [`BuildError`] naming it.
    pub fn from_env(service_name: impl Into<String>) -> Result<ObservabilityBuilder, BuildError> {
        Self::from_env_with(service_name, |var| std::env::var(var).ok())
    }

    /// [`from_env`](Self::from_env), reading variables through `lookup` instead of the
    /// process environment.
    ///
    /// ```
    /// use tower_observability::Observability;
    ///
    /// let err = Observability::from_env_with("api", |var| {
    ///     (var == "OBSERVABILITY_ROUTE_LIMIT").then(|| "lots".to_owned())
    /// })
    /// .unwrap_err();
    /// assert!(err.to_string().contains("OBSERVABILITY_ROUTE_LIMIT"));
    /// ```
    pub fn from_env_with(
        service_name: impl Into<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ObservabilityBuilder, BuildError> {
        crate::config::env::apply(ObservabilityBuilder::new(service_name.into()), lookup)
    }

    pub(crate) fn start(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        if shared.exposition.is_some() {
            spawn_upkeep(Arc::downgrade(&shared));
        }
        Observability { shared }
    }

    /// The layer to add to the service. Every call returns a layer sharing the same state.
    pub fn layer(&self) -> ObservabilityLayer {
        ObservabilityLayer {
            shared: self.shared.clone(),
        }
    }

    /// The layer for outbound HTTP clients: a client span under the request being served,
    /// and `traceparent`/`tracestate` injected into the call.
    pub fn client_layer(&self) -> crate::trace::TraceClientLayer {
        crate::trace::TraceClientLayer::new(self.shared.signals.tracing.config().clone())
    }

    /// Exports the finished spans still queued; false if that did not end within `timeout`
    /// (or there is no exporter). Never needed for correctness: the queue drains by itself.
    pub fn flush_traces(&self, timeout: Duration) -> bool {
        self.shared.signals.tracing.flush(timeout)
    }

    /// Sends the spans (and, with the `sentry` feature, the error events) still queued and
    /// stops the span exporter and the Sentry transport, both at once, within `timeout`;
    /// false if something could not be delivered. The last handle's drop does the same
    /// (within the shutdown timeout), so this is only needed for a handle that is never
    /// dropped (one kept in a `static`), or for a timeout of its own.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        crate::shutdown::flush(&self.shared, timeout)
    }

    /// Pushes the metrics now (OTLP metrics push, feature `otlp`), without waiting for the
    /// interval; false if the collector did not take them within `timeout`, or there is no
    /// push. Never needed for correctness: the push runs by itself, and shutdown pushes a
    /// last time.
    pub fn flush_metrics(&self, timeout: Duration) -> bool {
        self.shared.signals.metrics.flush_push(timeout)
    }

    /// Waits up to `timeout` for the Sentry events still queued to leave; false if some
    /// remain. Call it before the process exits (a no-op when no DSN is configured).
    #[cfg(feature = "sentry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentry")))]
    pub fn flush_sentry(&self, timeout: Duration) -> bool {
        self.shared.signals.errors.flush(timeout)
    }

    /// The service's name, as recorded on `target_info`.
    pub fn service_name(&self) -> &str {
        &self.shared.info.name
    }

    /// The switch behind `/readyz`.
    pub fn readiness(&self) -> Readiness {
        self.shared.readiness.clone()
    }

    /// The metrics in the Prometheus text format, as `/metrics` serves them: the registry
    /// (when the backend has one) followed by the process metrics.
    ///
    /// Each call returns a new `String`. To serve scrapes, prefer the admin endpoints
    /// ([`admin_service`](Self::admin_service), `admin_router`, `serve_admin`): they
    /// render into a buffer reused between scrapes, which for a large exposition (tens of
    /// megabytes at thousands of routes) is about three times faster.
    ///
    /// ```
    /// # use tower_observability::{MetricsBackend, Observability};
    /// let obs = Observability::builder("api")
    ///     .metrics_backend(MetricsBackend::IsolatedPrometheus)
    ///     .build()?;
    /// let text = obs.render_metrics();
    /// assert!(text.contains("target_info{"));
    /// # Ok::<(), tower_observability::BuildError>(())
    /// ```
    pub fn render_metrics(&self) -> String {
        self.shared
            .scrape_buffer
            .render_owned(|out| self.render_into(out))
    }

    /// The exposition in `format`, into a buffer reused from one scrape to the next, as
    /// the admin endpoint serves it.
    pub(crate) fn render_metrics_bytes(&self, format: Format) -> bytes::Bytes {
        self.shared
            .scrape_buffer
            .render(|out| self.shared.exposition.render_as(format, out))
    }

    fn render_into(&self, out: &mut String) {
        self.shared.exposition.render(out);
        ProcessStats::read().render(out);
    }
}

fn spawn_upkeep(shared: Weak<Shared>) {
    let upkeep = move || loop {
        std::thread::sleep(UPKEEP_INTERVAL);
        // Ends by itself once the last handle to the layer is gone.
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.exposition.run_upkeep();
    };
    if let Err(e) = std::thread::Builder::new()
        .name("tower-observability-upkeep".into())
        .spawn(upkeep)
    {
        warning!(
            target: "tower_observability::metrics",
            { error = %e, },
            "could not start the metrics upkeep thread ({e}); histograms are folded at scrape \
             time only"
        );
    }
}

/// The readiness switch behind `/readyz`: flip it off while shutting down so load balancers
/// drain the instance, on again once dependencies are back.
///
/// ```
/// # use tower_observability::{MetricsBackend, Observability};
/// # let obs = Observability::builder("api")
/// #     .metrics_backend(MetricsBackend::IsolatedPrometheus).build()?;
/// let readiness = obs.readiness();
/// assert!(readiness.is_ready());
/// readiness.set_ready(false); // /readyz now answers 503
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub(crate) fn new(ready: bool) -> Self {
        Readiness(Arc::new(AtomicBool::new(ready)))
    }

    /// Sets whether the service is ready to receive traffic.
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
