//! Error reporting to Sentry: every server error and panic becomes an event carrying the
//! route, status, release, environment and trace ids, with PII scrubbed.
//!
//! The parts, each in its own file:
//! - [`settings`]: what the builder and `SENTRY_*` variables configure;
//! - [`Reporter`] (here): the client built once, shared by every request;
//! - [`RequestReport`] (here): one request's hub and the little of the request an event
//!   needs, made in `Exchange::begin` and turned into an event when the exchange ends badly;
//! - [`event`]: the event itself; [`privacy`]: what of the request may leave the process;
//! - [`panic_capture`]: backtraces of handler panics; [`transport`]: the bounded queue.

pub(crate) mod event;
pub(crate) mod kept;
pub(crate) mod panic_capture;
pub(crate) mod privacy;
pub(crate) mod settings;
pub(crate) mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request};
use sentry_core::protocol::Event;
use sentry_core::{Client, ClientOptions, Hub, HubSwitchGuard, Scope};

use crate::classify::{GrpcCode, Outcome};
use crate::config::Setup;
use crate::error::BuildError;
use crate::method::MethodLabel;
use crate::metrics::names::{SENTRY_EVENTS_DROPPED, SENTRY_EVENTS_SENT};

use crate::signal::{Arrival, Ending, Failed, Head, Signal, SpanIds};
use kept::KeptRequest;
pub use settings::Sentry;
use transport::{Delivery, HttpTransport};

/// The Sentry client of one [`Observability`](crate::Observability): built when a DSN is
/// configured, shared by every request.
pub(crate) struct Reporter {
    client: Arc<Client>,
    scope: Arc<Scope>,
    delivery: Arc<Delivery>,
    /// The built-in transport, closed at shutdown; `None` with the application's own.
    transport: Option<Arc<HttpTransport>>,
    pub(crate) service: String,
    pub(crate) environment: Option<String>,
    pub(crate) release: Option<String>,
    pub(crate) send_pii: bool,
    report_client_errors: bool,
    /// The headers an event keeps with PII off, the layer's request id header among them.
    pub(crate) kept_headers: privacy::KeptHeaders,
}

impl Reporter {
    /// The reporter for the settings and the DSN [`Sentry::check`] returned, or `None`
    /// when there is no DSN (reporting off).
    pub(crate) fn build(setup: &mut Setup<'_>) -> Result<Option<Self>, BuildError> {
        let settings = setup.settings.sentry.clone();
        let (info, sink) = (setup.info, setup.sink);
        let Some(dsn) = setup.sentry_dsn.take() else {
            return Ok(None);
        };
        if settings.transport.is_none() && dsn.scheme() != sentry_core::types::Scheme::Http {
            return Err(BuildError::setting(
                "sentry.dsn",
                "the built-in transport speaks plain HTTP (a Sentry Relay or self-hosted \
                 Sentry on the network); for an https DSN plug a TLS transport with \
                 `Sentry::transport` (see its documentation)",
            ));
        }
        let environment = settings
            .environment
            .clone()
            .or_else(|| (info.environment != "unknown").then(|| info.environment.clone()));
        let release = settings
            .release
            .clone()
            .or_else(|| (info.version != "unknown").then(|| info.version.clone()));
        let delivery = Arc::new(Delivery::new(
            sink.counter_at_zero(SENTRY_EVENTS_SENT),
            Arc::new(crate::delivery::Dropped::register(
                sink,
                SENTRY_EVENTS_DROPPED,
            )),
            settings.queue_capacity,
        ));
        let (transport, built_in): (Arc<dyn sentry_core::TransportFactory>, _) =
            match &settings.transport {
                Some(factory) => (
                    Arc::new(transport::CountingFactory::new(
                        factory.clone(),
                        delivery.clone(),
                    )),
                    None,
                ),
                None => {
                    let http = HttpTransport::start(&dsn, delivery.clone(), settings.send_timeout)
                        .map_err(|e| {
                            BuildError::setting(
                                "sentry.dsn",
                                format!("cannot start the Sentry transport: {e}"),
                            )
                        })?;
                    let http = Arc::new(http);
                    (Arc::new(http.clone()), Some(http))
                }
            };
        let mut options = ClientOptions::default();
        options.dsn = Some(dsn);
        options.release = release.clone().map(Into::into);
        options.environment = environment.clone().map(Into::into);
        options.event_sampling_strategy =
            sentry_core::EventSamplingStrategy::FixedRate(settings.sample_rate);
        options.before_send = settings.before_send.clone();
        options.send_default_pii = settings.send_pii;
        options.default_integrations = false;
        options.transport = Some(transport);
        panic_capture::install_hook();
        Ok(Some(Reporter {
            client: Arc::new(Client::with_options(options)),
            scope: Arc::new(Scope::default()),
            delivery,
            transport: built_in,
            service: info.name.clone(),
            environment,
            release,
            send_pii: settings.send_pii,
            report_client_errors: settings.report_client_errors,
            kept_headers: privacy::KeptHeaders::new(setup.request_id.clone()),
        }))
    }

    /// Starts the report of one request: its own hub, and what an event would need of it.
    pub(crate) fn begin<B>(&self, req: &Request<B>) -> Box<RequestReport> {
        Box::new(RequestReport {
            hub: Arc::new(Hub::new(Some(self.client.clone()), self.scope.clone())),
            request: KeptRequest::capture(req, self.send_pii, &self.kept_headers),
            detail: None,
            grpc_message: None,
        })
    }

    /// Waits up to `timeout` for queued events to leave; false if some are still queued.
    pub(crate) fn flush(&self, timeout: std::time::Duration) -> bool {
        self.client.flush(Some(timeout))
    }

    /// Shutting down: the built-in transport stops taking events and sends what is queued
    /// until `deadline`, while the caller does other work (see [`close`](Self::close)).
    pub(crate) fn begin_close(&self, deadline: std::time::Instant) {
        if let Some(transport) = &self.transport {
            transport.close(deadline);
        }
    }

    /// Waits, at most until `deadline`, for the events queued to leave and the transport to
    /// stop; false if it did not. The application's own transport is shut down here.
    pub(crate) fn close(&self, deadline: std::time::Instant) -> bool {
        match &self.transport {
            Some(transport) => {
                transport.close(deadline);
                transport.wait(deadline)
            }
            None => self.client.close(Some(
                deadline.saturating_duration_since(std::time::Instant::now()),
            )),
        }
    }

    /// Events queued or being sent by the built-in transport.
    pub(crate) fn pending(&self) -> usize {
        self.delivery.pending()
    }

    fn wants(&self, outcome: &Outcome) -> bool {
        // Cancellations (499) are the client's doing, neither server nor client error.
        outcome.is_server_error()
            || (self.report_client_errors
                && outcome.error.is_none()
                && (400..499).contains(&outcome.status))
    }
}

/// Why the exchange failed, beyond what the [`Outcome`] says: the error or panic itself.
#[derive(Debug)]
pub(crate) enum Detail {
    /// The inner service's error: its type and message.
    ServiceError {
        type_name: &'static str,
        message: String,
    },
    /// The response body's error message.
    BodyError { message: String },
    /// A handler panic: its message and, when captured, backtrace.
    Panic {
        message: String,
        backtrace: Option<std::backtrace::Backtrace>,
    },
}

/// One request's error report: its hub, bound while the handler and the body run, and
/// what of the request an event needs.
pub(crate) struct RequestReport {
    hub: Arc<Hub>,
    pub(crate) request: KeptRequest,
    pub(crate) detail: Option<Detail>,
    pub(crate) grpc_message: Option<HeaderValue>,
}

impl RequestReport {
    /// Binds the request's hub to this thread (and arms backtrace capture) until dropped.
    pub(crate) fn enter(&self) -> HubEntered {
        HubEntered {
            _hub: HubSwitchGuard::new(self.hub.clone()),
            _armed: panic_capture::Armed::new(),
        }
    }

    /// Keeps `grpc-message` for the event when `code` is a server fault.
    fn keep_grpc_message(&mut self, headers: &HeaderMap, code: Option<GrpcCode>) {
        if code.is_some_and(GrpcCode::is_server_fault) {
            self.grpc_message = headers.get("grpc-message").cloned();
        }
    }

    /// The exchange ended: sends an event if `outcome` is one to report.
    pub(crate) fn finish(
        self: Box<Self>,
        reporter: &Reporter,
        outcome: &Outcome,
        method: MethodLabel,
        route: &str,
        trace: Option<SpanIds>,
    ) {
        if !reporter.wants(outcome) {
            return;
        }
        // While the transport backs off, is rate limited or full: counted, never built.
        if !reporter.delivery.admit() {
            return;
        }
        let event: Event<'static> = event::build(reporter, &self, outcome, method, route, trace);
        self.hub.capture_event(event);
    }
}

/// Error reporting as a signal of the pass: an event for every server error and panic.
pub(crate) struct ErrorReporting(Option<Reporter>);

impl ErrorReporting {
    /// Waits up to `timeout` for queued events to leave; false if some are still queued.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.0
            .as_ref()
            .is_none_or(|reporter| reporter.flush(timeout))
    }

    /// Shutting down: stop taking events, send what is queued until `deadline`.
    pub(crate) fn begin_close(&self, deadline: Instant) {
        if let Some(reporter) = &self.0 {
            reporter.begin_close(deadline);
        }
    }

    /// Waits, at most until `deadline`, for the queue to empty and the transport to stop.
    pub(crate) fn close(&self, deadline: Instant) -> bool {
        self.0
            .as_ref()
            .is_none_or(|reporter| reporter.close(deadline))
    }

    /// Events queued or being sent.
    pub(crate) fn pending(&self) -> usize {
        self.0.as_ref().map_or(0, Reporter::pending)
    }

    /// Events dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |reporter| reporter.delivery.dropped())
    }
}

impl Signal for ErrorReporting {
    type Exchange = Option<Box<RequestReport>>;
    type Entered<'a> = Option<HubEntered>;

    fn build(setup: &mut Setup<'_>) -> Result<Self, BuildError> {
        Reporter::build(setup).map(ErrorReporting)
    }

    fn arrive<B>(&self, req: &Request<B>, arrival: &mut Arrival<'_>) -> Self::Exchange {
        let reporter = self.0.as_ref().filter(|_| arrival.observed)?;
        Some(reporter.begin(req))
    }

    fn enter<'a>(&'a self, report: &'a Self::Exchange) -> Self::Entered<'a> {
        report.as_ref().map(|report| report.enter())
    }

    fn respond(&self, report: &mut Self::Exchange, head: &mut Head<'_>) {
        if let Some(report) = report {
            report.keep_grpc_message(head.headers, head.grpc_status);
        }
    }

    fn trailers(
        &self,
        report: &mut Self::Exchange,
        trailers: &HeaderMap,
        grpc_status: Option<GrpcCode>,
    ) {
        if let (Some(report), Some(_)) = (report, grpc_status) {
            report.keep_grpc_message(trailers, grpc_status);
        }
    }

    fn fail(&self, report: &mut Self::Exchange, failed: &Failed<'_>) {
        if let Some(report) = report {
            report.detail = Some(match *failed {
                Failed::Service { type_name, error } => Detail::ServiceError {
                    type_name,
                    message: error.to_string(),
                },
                Failed::Body(error) => Detail::BodyError {
                    message: error.to_string(),
                },
                Failed::Panic(panic) => Detail::Panic {
                    message: panic.message().to_owned(),
                    backtrace: panic_capture::take(),
                },
            });
        }
    }

    fn end(&self, report: &mut Self::Exchange, ending: &mut Ending<'_>) {
        if let (Some(report), Some(reporter)) = (report.take(), self.0.as_ref()) {
            let route = ending.route.name();
            report.finish(reporter, &ending.outcome, ending.method, route, ending.span);
        }
    }
}

/// The request's hub bound to the current thread; see [`RequestReport::enter`].
pub(crate) struct HubEntered {
    _hub: HubSwitchGuard,
    _armed: panic_capture::Armed,
}
