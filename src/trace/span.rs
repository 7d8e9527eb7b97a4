//! The server span of one request: made in [`Exchange::begin`](crate::exchange), entered
//! around every poll, and ended with the exchange's outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderName, Request, Version};

use super::current;
use super::export::{FinishedSpan, Kind, RequestText, SpanSink};
use super::{
    RequestId, Sampler, SpanContext, SpanId, TraceFlags, TraceId, TraceParent, TraceState,
};
use super::{REQUEST_ID, TRACERESPONSE_NAME};
use crate::classify::Outcome;
use crate::method::MethodLabel;
use crate::route::Route;

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
        let capture = (context.flags.is_sampled() && config.sink.is_some()).then(|| {
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
                peer: peer_address(req),
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
        }
    }

    /// The trace and span ids, for error reports that link to the trace.
    #[cfg(feature = "sentry")]
    pub(crate) fn ids(&self) -> ([u8; 16], [u8; 8]) {
        (self.current.span.trace_id.0, self.current.span.span_id.0)
    }

    /// The trace and span ids when the span is sampled and will be exported (what an
    /// exemplar may point to: a trace the backend will have).
    #[inline]
    pub(crate) fn exported_ids(&self) -> Option<([u8; 16], [u8; 8])> {
        self.capture
            .as_ref()
            .map(|_| (self.current.span.trace_id.0, self.current.span.span_id.0))
    }

    /// Enters the span (for `tracing` and for [`current`](super::current)) until dropped.
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
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

    /// The exchange ended with `outcome`: record it and hand the span to the exporter.
    pub(crate) fn finish(
        &mut self,
        config: &TraceConfig,
        outcome: &Outcome,
        grpc_call: bool,
        route: &Arc<Route>,
        started: Instant,
    ) {
        if !self.span.is_disabled() {
            self.span
                .record("http.response.status_code", outcome.status);
            if let Some(error) = outcome.error {
                let error = FinishedSpanError(error);
                self.span
                    .record("error.type", tracing::field::display(&error));
            }
        }
        let (Some(capture), Some(sink)) = (self.capture.take(), config.sink.as_ref()) else {
            return;
        };
        let Capture {
            method,
            text,
            version,
            peer,
            start,
        } = capture;
        sink.submit(FinishedSpan {
            kind: Kind::Server,
            context: self.current.span.clone(),
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
        });
    }
}

/// The request's span entered, for `tracing` and for [`current`](super::current).
pub(crate) struct Entered<'a> {
    _span: tracing::span::Entered<'a>,
    _current: current::Entered,
}

/// `error.type` for the `tracing` span, formatted only when a subscriber wants it.
struct FinishedSpanError(crate::classify::ErrorType);

impl std::fmt::Display for FinishedSpanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::classify::ErrorType;
        match self.0 {
            ErrorType::Failure(failure) => f.write_str(failure.as_str()),
            ErrorType::Grpc(code) => f.write_str(code.name()),
            ErrorType::Status(status) => write!(f, "{status}"),
        }
    }
}

/// The client's address, when the server put it in the request (axum's `ConnectInfo`).
fn peer_address<B>(req: &Request<B>) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0);
    }
    req.extensions().get::<SocketAddr>().copied()
}

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
