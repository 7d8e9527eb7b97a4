//! One request/response exchange, from the request's arrival to the end of its response body.
//!
//! This is the seam every signal plugs into: an [`Exchange`] is made when the request
//! arrives ([`Exchange::begin`]), sees the response head ([`Exchange::on_response`]), the body's
//! bytes and trailers, and is finished exactly once: by [`Exchange::finish`] when the body
//! ends or fails, or by being dropped early (client gone: `cancelled`; unwinding: `panic`).
//! Recording happens in `Drop`, so no path can leak the in-flight gauge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::Body;

use crate::classify::{is_grpc, Failure, GrpcCode, Outcome};
use crate::method::MethodLabel;
use crate::metrics::series::Sample;
use crate::observability::Shared;
use crate::route::Route;
use crate::trace::span::{RequestContext, ServerSpan};

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The response body was sent to its end.
    Complete,
    /// The exchange failed (panic, service error, body error).
    Failed(Failure),
}

pub(crate) struct Exchange {
    shared: Arc<Shared>,
    start: Instant,
    method: MethodLabel,
    route: Arc<Route>,
    grpc_call: bool,
    request_bytes: Option<Arc<AtomicU64>>,
    status: u16,
    grpc_status: Option<GrpcCode>,
    response_bytes: u64,
    end: Option<End>,
    span: ServerSpan,
}

impl Exchange {
    /// Starts observing a request, or returns `None` when its path is excluded.
    pub(crate) fn begin<B: Body>(shared: &Arc<Shared>, req: &Request<B>) -> Option<Self> {
        let start = Instant::now();
        if shared.excluded.matches(req.uri().path()) {
            return None;
        }
        let method = MethodLabel::of(req.method());
        let resolved = shared.routes.resolve(req);
        let metrics = &shared.metrics;
        if resolved.overflowed {
            metrics.routes_overflowed.increment(1);
        }
        metrics.active(method).increment(1.0);
        // Bodiless requests (most GETs) need no shared counter.
        let request_bytes = (!req.body().is_end_stream()).then(|| Arc::new(AtomicU64::new(0)));
        let span = ServerSpan::begin(&shared.tracing, req, method, &resolved.route);
        Some(Exchange {
            shared: shared.clone(),
            start,
            method,
            route: resolved.route,
            grpc_call: is_grpc(req.headers()),
            request_bytes,
            status: 0,
            grpc_status: None,
            response_bytes: 0,
            end: None,
            span,
        })
    }

    /// The counter the request body wrapper adds to, if the request has a body.
    pub(crate) fn request_counter(&self) -> Option<Arc<AtomicU64>> {
        self.request_bytes.clone()
    }

    /// The trace context handlers see as a request extension.
    pub(crate) fn request_context(&self) -> RequestContext {
        self.span.request_context()
    }

    /// Enters the request's span until the guard is dropped: wrap every poll in it.
    pub(crate) fn enter(&self) -> crate::trace::span::Entered<'_> {
        self.span.enter()
    }

    pub(crate) fn route_name(&self) -> &str {
        self.route.name()
    }

    pub(crate) fn is_grpc(&self) -> bool {
        self.grpc_call
    }

    /// The response head arrived.
    pub(crate) fn on_response<B>(&mut self, res: &mut Response<B>) {
        self.status = res.status().as_u16();
        self.span
            .on_response(&self.shared.tracing, res.headers_mut());
        if self.grpc_call {
            // Trailers-only responses carry the status in the headers.
            self.grpc_status = GrpcCode::from_headers(res.headers());
        }
    }

    /// A data frame of `len` bytes left.
    pub(crate) fn on_data(&mut self, len: usize) {
        self.response_bytes += len as u64;
    }

    /// The trailers left.
    pub(crate) fn on_trailers(&mut self, trailers: &HeaderMap) {
        if self.grpc_call {
            if let Some(code) = GrpcCode::from_headers(trailers) {
                self.grpc_status = Some(code);
            }
        }
    }

    /// Ends the exchange now and records it.
    pub(crate) fn finish(mut self, end: End) {
        self.end = Some(end);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let failure = match self.end {
            Some(End::Complete) => None,
            Some(End::Failed(failure)) => Some(failure),
            // Dropped before the end: unwinding from a panic, or the client went away.
            None if std::thread::panicking() => Some(Failure::Panic),
            None => Some(Failure::Cancelled),
        };
        let outcome = Outcome::classify(self.status, self.grpc_call, self.grpc_status, failure);
        let sample = Sample {
            seconds: self.start.elapsed().as_secs_f64(),
            request_bytes: self
                .request_bytes
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            response_bytes: self.response_bytes,
        };
        let metrics = &self.shared.metrics;
        self.route.series.record(
            &metrics.sink,
            self.route.name(),
            self.method,
            &outcome,
            &sample,
        );
        metrics.active(self.method).decrement(1.0);
        if failure == Some(Failure::Panic) {
            metrics.panics.increment(1);
        }
        self.span.finish(
            &self.shared.tracing,
            &outcome,
            self.grpc_call,
            &self.route,
            self.start,
        );
    }
}
