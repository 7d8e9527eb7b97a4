//! What a finished span hands to the exporter: the raw facts of the exchange, cheap to
//! capture on the request path. Names, attributes and strings are built on the exporter's
//! own thread, not while serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

use super::{RequestId, SpanContext, SpanId, TraceParent};
use crate::classify::{ErrorType, Failure, GrpcCode};
use crate::route::Route;

/// Server (an inbound request) or client (an outbound call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Server,
    Client,
}

/// One finished span, as captured.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct FinishedSpan {
    pub(crate) kind: Kind,
    pub(crate) context: SpanContext,
    /// The parent span, and whether it is remote (in another process).
    pub(crate) parent: Option<(SpanId, bool)>,
    /// The caller's context when it was not trusted as the parent.
    pub(crate) link: Option<TraceParent>,
    pub(crate) method: Method,
    /// The resolved route (server spans); `None` for client spans.
    pub(crate) route: Option<Arc<Route>>,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) request_id: Option<RequestId>,
    pub(crate) grpc_call: bool,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    /// The response status; 0 when there was no response.
    pub(crate) status: u16,
    pub(crate) grpc_status: Option<GrpcCode>,
    pub(crate) error: Option<ErrorType>,
    pub(crate) record_query: bool,
}

#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
impl FinishedSpan {
    /// Whether the span's status is Error: a server error on a server span, any error
    /// (5xx, failure) on a client span. A cancelled request is not an error of the server.
    pub(crate) fn is_error(&self) -> bool {
        match self.error {
            None | Some(ErrorType::Failure(Failure::Cancelled)) => false,
            Some(_) => true,
        }
    }
}

/// Where finished spans go: a bounded queue in front of an exporter, or a user's
/// OpenTelemetry tracer provider. `submit` never blocks and never fails the request.
pub(crate) trait SpanSink: Send + Sync {
    fn submit(&self, span: FinishedSpan);
    /// Exports what is queued; false if that did not finish within `timeout`.
    fn flush(&self, timeout: Duration) -> bool;
    /// Flushes, then stops the exporter.
    fn shutdown(&self, timeout: Duration) -> bool;
}
