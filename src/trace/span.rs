//! The server span of one request: made in [`Exchange::begin`](crate::exchange), entered
//! around every poll, and ended with the exchange's outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, Request, Version};

use super::current;
use super::export::{FinishedSpan, Kind, RequestText, SpanSink};
use super::{
    RequestId, Sampler, SpanContext, SpanId, TraceFlags, TraceId, TraceParent, TraceState,
};
use super::{REQUEST_ID, TRACERESPONSE_NAME};
use crate::classify::Outcome;
use crate::config::Setup;
use crate::error::BuildError;
use crate::method::MethodLabel;
use crate::route::Route;
use crate::signal::{Arrival, Ending, Head, OverQuotaFinding, Signal, SpanIds};

/// The tracing settings every request reads.
pub(crate) struct TraceConfig {
    /// Whether requests get a server span at all.
    pub(crate) enabled: bool,
    pub(crate) sampler: Sampler,
    pub(crate) trust_inbound: bool,
    pub(crate) traceresponse: bool,
    pub(crate) request_id: Option<HeaderName>,
    pub(crate) record_query: bool,
    pub(crate) sink: Option<Arc<dyn SpanSink>>,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            enabled: true,
            sampler: Sampler::default(),
            trust_inbound: true,
            traceresponse: false,
            request_id: Some(HeaderName::from_static(REQUEST_ID)),
            record_query: false,
            sink: None,
        }
    }
}

impl TraceConfig {
    /// A new span's context: a child of `parent`, or the root of a new trace.
    pub(crate) fn child_of(&self, parent: Option<(&TraceParent, TraceState)>) -> SpanContext {
        match parent {
            Some((parent, state)) => {
                let sampled = self.sampler.sample(Some(parent.flags), parent.trace_id);
                SpanContext {
                    trace_id: parent.trace_id,
                    span_id: SpanId::random(),
                    flags: parent.flags.with_sampled(sampled),
                    state,
                }
            }
            None => {
                let trace_id = TraceId::random();
                let sampled = self.sampler.sample(None, trace_id);
                SpanContext {
                    trace_id,
                    span_id: SpanId::random(),
                    flags: TraceFlags(TraceFlags::RANDOM).with_sampled(sampled),
                    state: TraceState::default(),
                }
            }
        }
    }
}

/// What a handler can read of its request's trace: [`current_request`](super::current_request),
/// or an axum extractor (`async fn handler(ctx: RequestContext)`).
///
/// Not a request extension: inserting one costs every request an allocation, and the
/// context is current on the thread whenever the handler runs.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The server span's context (pass it to work spawned off the request).
    pub span: SpanContext,
    /// The request id, unless request ids are off.
    pub request_id: Option<RequestId>,
}

/// What is kept of the request for the exported span (only when it will be exported).
struct Capture {
    method: http::Method,
    text: RequestText,
    version: Version,
    peer: Option<SocketAddr>,
    start: SystemTime,
}

pub(crate) struct ServerSpan {
    /// The span's context and the request id: what [`current`] hands out while polled.
    current: RequestContext,
    parent: Option<SpanId>,
    link: Option<TraceParent>,
    span: tracing::Span,
    capture: Option<Capture>,
    /// What a rate limit found, recorded as `rate_limit.*` attributes.
    over_quota: Option<OverQuotaFinding>,
}

impl ServerSpan {
    pub(crate) fn begin<B>(
        config: &TraceConfig,
        req: &Request<B>,
        method: MethodLabel,
        route: &Route,
    ) -> Self {
        let inbound = SpanContext::extract(req.headers());
        let (context, parent, link) = match inbound {
            Some((caller, state)) if config.trust_inbound => (
                config.child_of(Some((&caller, state))),
                Some(caller.parent_id),
                None,
            ),
            // Untrusted: a new root, linked to the caller's span; its tracestate is not ours.
            Some((caller, _)) => (config.child_of(None), None, Some(caller)),
            None => (config.child_of(None), None, None),
        };
        let request_id = config
            .request_id
            .as_ref()
            .map(|name| RequestId::take_or_make(req.headers(), name, context.trace_id));
        // ERROR level: the span is enabled whenever any event is, so every line carries ids.
        let span = tracing::error_span!(
            target: "tower_observability::request",
            "request",
            trace_id = %context.trace_id.to_hex(),
            span_id = %context.span_id.to_hex(),
            request_id = request_id.as_ref().map(tracing::field::display),
            http.request.method = method.as_str(),
            http.route = route.name(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        // A sink that backs off or is full counts the span instead: nothing is captured.
        let capture = (context.flags.is_sampled()
            && config.sink.as_ref().is_some_and(|sink| sink.admit()))
        .then(|| {
            let headers = req.headers();
            Capture {
                method: req.method().clone(),
                text: RequestText::capture(
                    req.uri(),
                    headers.get(http::header::HOST),
                    headers.get(http::header::USER_AGENT),
                    request_id.as_ref().and_then(RequestId::from_caller),
                    config.record_query,
                ),
                version: req.version(),
                peer: crate::client_address::peer_address(req),
                start: SystemTime::now(),
            }
        });
        ServerSpan {
            current: RequestContext {
                span: context,
                request_id,
            },
            parent,
            link,
            span,
            capture,
            over_quota: None,
        }
    }

    /// Enters the span (for `tracing` and for [`current`](super::current)) until dropped.
    pub(crate) fn enter(&self) -> SpanEntered<'_> {
        SpanEntered {
            _span: self.span.enter(),
            _current: current::enter(&self.current),
        }
    }

    /// The response head is leaving: echo the request id, add `traceresponse` if asked.
    pub(crate) fn on_response(&self, config: &TraceConfig, headers: &mut HeaderMap) {
        if let (Some(id), Some(name)) = (&self.current.request_id, &config.request_id) {
            headers.entry(name).or_insert_with(|| id.header_value());
        }
        if config.traceresponse {
            headers.insert(
                TRACERESPONSE_NAME,
                self.current.span.traceparent().to_header_value(),
            );
        }
    }

    /// The exchange ended with `outcome`: record it, hand the span to the exporter, and
    /// return its ids.
    pub(crate) fn finish(
        &mut self,
        config: &TraceConfig,
        outcome: &Outcome,
        grpc_call: bool,
        route: &Arc<Route>,
        started: Instant,
    ) -> SpanIds {
        if !self.span.is_disabled() {
            self.span
                .record("http.response.status_code", outcome.status);
            if let Some(error) = outcome.error {
                self.span
                    .record("error.type", tracing::field::display(&error));
            }
        }
        let context = &self.current.span;
        let mut ids = SpanIds {
            trace_id: context.trace_id.0,
            span_id: context.span_id.0,
            exported: false,
        };
        let (Some(capture), Some(sink)) = (self.capture.take(), config.sink.as_ref()) else {
            return ids;
        };
        let Capture {
            method,
            text,
            version,
            peer,
            start,
        } = capture;
        ids.exported = sink.submit(FinishedSpan {
            kind: Kind::Server,
            context: context.clone(),
            parent: self.parent.map(|p| (p, true)),
            link: self.link,
            method,
            route: Some(route.clone()),
            text,
            version,
            peer,
            grpc_call,
            start,
            end: start + started.elapsed(),
            status: outcome.status,
            grpc_status: outcome.grpc,
            error: outcome.error,
            over_quota: self
                .over_quota
                .as_ref()
                .and_then(|found| found.get().cloned()),
        });
        ids
    }
}

/// Tracing as a signal of the pass: the server span, W3C Trace Context in and out, the
/// request id.
pub(crate) struct Tracing(Arc<TraceConfig>);

impl Tracing {
    /// The settings, shared with the client layer.
    pub(crate) fn config(&self) -> &Arc<TraceConfig> {
        &self.0
    }

    /// Exports the spans still queued; false if that did not end within `timeout` (or there
    /// is no exporter).
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.0.sink.as_ref().is_some_and(|sink| sink.flush(timeout))
    }

    /// Flushes and stops the exporter; false if that did not end within `timeout`.
    pub(crate) fn shutdown(&self, timeout: Duration) -> bool {
        self.0
            .sink
            .as_ref()
            .is_none_or(|sink| sink.shutdown(timeout))
    }

    /// Spans queued or being exported.
    pub(crate) fn pending(&self) -> usize {
        self.0.sink.as_ref().map_or(0, |sink| sink.pending())
    }

    /// Spans dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.0.sink.as_ref().map_or(0, |sink| sink.dropped())
    }
}

impl Signal for Tracing {
    type Exchange = Option<Box<ServerSpan>>;
    type Entered<'a> = Option<SpanEntered<'a>>;

    fn build(setup: &mut Setup<'_>) -> Result<Self, BuildError> {
        let settings = setup.settings;
        #[cfg(feature = "otlp")]
        let sink = settings
            .export
            .open(setup.info, &settings.resource_attributes, setup.sink)?;
        #[cfg(not(feature = "otlp"))]
        let sink = None;
        Ok(Tracing(Arc::new(TraceConfig {
            enabled: settings.tracing,
            sampler: settings.sampler.clone(),
            trust_inbound: settings.trust_inbound_context,
            traceresponse: settings.traceresponse,
            request_id: setup.request_id.clone(),
            record_query: settings.record_query,
            sink,
        })))
    }

    #[inline]
    fn arrive<B>(&self, req: &Request<B>, arrival: &mut Arrival<'_>) -> Self::Exchange {
        // Boxed: a span is 400 bytes, which every request would otherwise move around.
        (arrival.observed && self.0.enabled).then(|| {
            let mut span = Box::new(ServerSpan::begin(
                &self.0,
                req,
                arrival.method,
                arrival.route,
            ));
            span.over_quota = arrival.over_quota.take();
            span
        })
    }

    #[inline]
    fn enter<'a>(&'a self, span: &'a Self::Exchange) -> Self::Entered<'a> {
        span.as_deref().map(ServerSpan::enter)
    }

    fn respond(&self, span: &mut Self::Exchange, head: &mut Head<'_>) {
        if let Some(span) = span {
            span.on_response(&self.0, head.headers);
        }
    }

    fn end(&self, span: &mut Self::Exchange, ending: &mut Ending<'_>) {
        if let Some(span) = span {
            ending.span = Some(span.finish(
                &self.0,
                &ending.outcome,
                ending.grpc,
                ending.route,
                ending.started,
            ));
        }
    }
}

/// The request's span entered, for `tracing` and for [`current`](super::current).
pub(crate) struct SpanEntered<'a> {
    _span: tracing::span::Entered<'a>,
    _current: current::CurrentGuard,
}

/// The client's address, when the server put it in the request (axum's `ConnectInfo`).
/// `async fn handler(ctx: RequestContext)`: the context of the request being served;
/// rejected with a 500 when the handler is not behind the observability layer.
#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestContext {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        _parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        super::current_request().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "RequestContext needs the observability layer with tracing on",
        ))
    }
}
