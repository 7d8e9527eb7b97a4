//! What the builder and the `SENTRY_*` variables configure.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sentry_core::protocol::Event;
use sentry_core::types::Dsn;
use sentry_core::TransportFactory;

use crate::error::BuildError;

/// The user's last look at an event before it is sent: return `None` to drop it.
pub(crate) type BeforeSend = Arc<dyn Fn(Event<'static>) -> Option<Event<'static>> + Send + Sync>;

/// Default bound on events waiting for the transport.
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 64;
/// Default time one send may take, connection included.
pub(crate) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Error reporting to Sentry (feature `sentry`): where events go and what they carry,
/// given to [`ObservabilityBuilder::sentry`](crate::ObservabilityBuilder::sentry).
///
/// [`Observability::from_env`](crate::Observability::from_env) reads it from `SENTRY_DSN`,
/// `SENTRY_ENVIRONMENT`, `SENTRY_RELEASE` and `SENTRY_SAMPLE_RATE`
/// ([`Sentry::from_env`] does the same alone, to refine in code). Without a DSN, or with an
/// empty one, reporting is off and costs nothing per request.
///
/// ```
/// use tower_observability::{MetricsBackend, Observability, Sentry};
///
/// let obs = Observability::builder("api")
///     .sentry(
///         Sentry::dsn("http://public@127.0.0.1:9/1")
///             .environment("staging")
///             .sample_rate(0.5)
///             .before_send(|event| {
///                 // Timeouts of the search route are known: keep them out of Sentry.
///                 let search = event.transaction.as_deref() == Some("GET /search");
///                 (!search).then_some(event)
///             }),
///     )
/// #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
///     .build()?;
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
#[must_use]
#[derive(Clone)]
pub struct Sentry {
    /// Empty or absent: reporting is off.
    pub(crate) dsn: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) release: Option<String>,
    pub(crate) sample_rate: f32,
    pub(crate) before_send: Option<BeforeSend>,
    pub(crate) send_pii: bool,
    pub(crate) report_client_errors: bool,
    pub(crate) queue_capacity: usize,
    pub(crate) send_timeout: Duration,
    pub(crate) transport: Option<Arc<dyn TransportFactory>>,
}

impl Default for Sentry {
    fn default() -> Self {
        Sentry {
            dsn: None,
            environment: None,
            release: None,
            sample_rate: 1.0,
            before_send: None,
            send_pii: false,
            report_client_errors: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            transport: None,
        }
    }
}

impl fmt::Debug for Sentry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The DSN holds the project's public key: say whether there is one, not what it is.
        f.debug_struct("Sentry")
            .field("dsn", &self.dsn.as_ref().map(|_| "<set>"))
            .field("environment", &self.environment)
            .field("release", &self.release)
            .field("sample_rate", &self.sample_rate)
            .field("send_pii", &self.send_pii)
            .field("report_client_errors", &self.report_client_errors)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

impl Sentry {
    /// Reports to `dsn` (empty: reporting off).
    ///
    /// The built-in transport speaks plain HTTP (a Sentry Relay beside the service, a
    /// self-hosted Sentry); for an `https` DSN such as sentry.io plug a TLS transport with
    /// [`transport`](Self::transport).
    pub fn dsn(dsn: impl Into<String>) -> Self {
        Sentry {
            dsn: Some(dsn.into()),
            ..Sentry::default()
        }
    }

    /// What `SENTRY_DSN`, `SENTRY_ENVIRONMENT`, `SENTRY_RELEASE` and `SENTRY_SAMPLE_RATE`
    /// say (reporting off without a DSN), to refine in code; a variable that cannot be used
    /// is an error naming it.
    ///
    /// ```
    /// # use tower_observability::{MetricsBackend, Observability, Sentry};
    /// let obs = Observability::from_env("api")?
    ///     .sentry(Sentry::from_env()?.send_pii(false))
    /// #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
    ///     .build()?;
    /// # Ok::<(), tower_observability::BuildError>(())
    /// ```
    pub fn from_env() -> Result<Self, BuildError> {
        crate::config::env::sentry(&|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
    }

    /// The environment events are tagged with (`SENTRY_ENVIRONMENT`); default: the
    /// builder's [`environment`](crate::ObservabilityBuilder::environment), when set.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// The release events are tagged with (`SENTRY_RELEASE`); default: the builder's
    /// [`service_version`](crate::ObservabilityBuilder::service_version), when set.
    pub fn release(mut self, release: impl Into<String>) -> Self {
        self.release = Some(release.into());
        self
    }

    /// The share of error events sent, from 0.0 to 1.0 (default 1.0;
    /// `SENTRY_SAMPLE_RATE`).
    pub fn sample_rate(mut self, rate: f32) -> Self {
        self.sample_rate = rate;
        self
    }

    /// The application's last look at every event: return it (changed or not) to send it,
    /// `None` to drop it. Runs after the layer has scrubbed PII.
    pub fn before_send<F>(mut self, f: F) -> Self
    where
        F: Fn(Event<'static>) -> Option<Event<'static>> + Send + Sync + 'static,
    {
        self.before_send = Some(Arc::new(f));
        self
    }

    /// Sends personal data too (default: off): every request header (not only host, user
    /// agent, content type and length, accept, origin and request id) and the query as it
    /// came. Header values marked sensitive (`HeaderValue::set_sensitive`) are never sent.
    pub fn send_pii(mut self, send: bool) -> Self {
        self.send_pii = send;
        self
    }

    /// Reports 4xx responses too, at level `warning` (default: only server errors).
    pub fn report_client_errors(mut self, report: bool) -> Self {
        self.report_client_errors = report;
        self
    }

    /// How many events may wait for the transport (default 64). Beyond it, and while
    /// Sentry is unreachable or rate-limits, events are dropped and counted in
    /// `tower_observability_sentry_events_dropped_total`; requests never wait.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// How long the built-in transport gives one event, connecting included (default 5 s).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// Sends events through the application's own transport instead of the built-in
    /// plain-HTTP one: the way to an `https` DSN such as sentry.io. Events handed to it are
    /// counted in `tower_observability_sentry_events_sent_total`; its own queue decides
    /// what is dropped.
    ///
    /// With the `sentry` crate (features `reqwest` and `rustls` or `native-tls`):
    ///
    /// ```ignore
    /// let sentry = Sentry::from_env()?
    ///     .transport(std::sync::Arc::new(sentry::transports::DefaultTransportFactory));
    /// ```
    pub fn transport(mut self, factory: Arc<dyn TransportFactory>) -> Self {
        self.transport = Some(factory);
        self
    }

    /// The values, checked with every other setting: the DSN, `None` when reporting is
    /// off. (Whether the transport can reach it is seen when the reporter starts: a
    /// transport may still be given in code after `from_env`.)
    pub(crate) fn check(&self) -> Result<Option<Dsn>, BuildError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(BuildError::setting(
                "sentry.sample_rate",
                format!("{} is outside 0.0..=1.0", self.sample_rate),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(BuildError::setting(
                "sentry.queue_capacity",
                "must be at least 1",
            ));
        }
        let Some(raw) = self.dsn.as_deref().map(str::trim).filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let dsn = parse_dsn(raw).map_err(|reason| BuildError::setting("sentry.dsn", reason))?;
        Ok(Some(dsn))
    }
}

/// Parses a DSN; the error says why without repeating the key.
pub(crate) fn parse_dsn(raw: &str) -> Result<Dsn, String> {
    Dsn::from_str(raw.trim())
        .map_err(|e| format!("not a Sentry DSN ({e}); expected https://<key>@<host>/<project>"))
}
