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
use crate::metrics::exemplar::Exemplar;
use crate::metrics::series::Sample;
use crate::observability::Shared;
use crate::route::Route;
use crate::trace::span::ServerSpan;

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
    /// Boxed: a span is 400 bytes, which every request would otherwise move around
    /// (the future and the body carry the exchange), tracing on or off.
    span: Option<Box<ServerSpan>>,
    /// The request's Sentry hub and what an event needs of the request (DSN set only).
    #[cfg(feature = "sentry")]
    report: Option<Box<crate::sentry::RequestReport>>,
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
        let span = shared.tracing.enabled.then(|| {
            Box::new(ServerSpan::begin(
                &shared.tracing,
                req,
                method,
                &resolved.route,
            ))
        });
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
            #[cfg(feature = "sentry")]
            report: shared.sentry.as_ref().map(|reporter| reporter.begin(req)),
        })
    }

    /// The counter the request body wrapper adds to, if the request has a body.
    pub(crate) fn request_counter(&self) -> Option<Arc<AtomicU64>> {
        self.request_bytes.clone()
    }

    /// Makes the request's context current on this thread until the guard is dropped: its
    /// span (and Sentry hub): wrap every call into the inner service and every poll of its
    /// future and body.
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            _span: self.span.as_deref().map(ServerSpan::enter),
            #[cfg(feature = "sentry")]
            _report: self.report.as_ref().map(|report| report.enter()),
        }
    }

    /// The inner service returned `error` instead of a response.
    pub(crate) fn on_service_error<E: std::fmt::Display>(&mut self, _error: &E) {
        #[cfg(feature = "sentry")]
        if let Some(report) = self.report.as_mut() {
            report.detail = Some(crate::sentry::Detail::ServiceError {
                type_name: std::any::type_name::<E>(),
                message: _error.to_string(),
            });
        }
    }

    /// The response body failed with `error`.
    pub(crate) fn on_body_error(&mut self, _error: &(dyn std::error::Error + 'static)) {
        #[cfg(feature = "sentry")]
        if let Some(report) = self.report.as_mut() {
            report.detail = Some(crate::sentry::Detail::BodyError {
                message: _error.to_string(),
            });
        }
    }

    /// The handler or the body panicked with `panic`.
    pub(crate) fn on_panic(&mut self, _panic: &crate::panic::Caught) {
        #[cfg(feature = "sentry")]
        if let Some(report) = self.report.as_mut() {
            report.detail = Some(crate::sentry::Detail::Panic {
                message: _panic.message().to_owned(),
                backtrace: crate::sentry::panic_capture::take(),
            });
        }
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
        if let Some(span) = &self.span {
            span.on_response(&self.shared.tracing, res.headers_mut());
        }
        if self.grpc_call {
            // Trailers-only responses carry the status in the headers.
            self.grpc_status = GrpcCode::from_headers(res.headers());
            self.keep_grpc_message(res.headers());
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
                self.keep_grpc_message(trailers);
            }
        }
    }

    /// Keeps `grpc-message` for the error report when the status is a server fault.
    fn keep_grpc_message(&mut self, _headers: &HeaderMap) {
        #[cfg(feature = "sentry")]
        if let (Some(report), Some(code)) = (self.report.as_mut(), self.grpc_status) {
            if code.is_server_fault() {
                report.grpc_message = _headers.get("grpc-message").cloned();
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
            nanos: u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX),
            request_bytes: self
                .request_bytes
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            response_bytes: self.response_bytes,
        };
        let metrics = &self.shared.metrics;
        let exemplar = self.span.as_ref().and_then(|span| span.exported_ids());
        let exemplar = exemplar.map(|(trace_id, span_id)| Exemplar {
            trace_id,
            span_id,
            start: self.start,
        });
        self.route.series.record(
            &metrics.sink,
            self.route.name(),
            self.method,
            &outcome,
            &sample,
            exemplar.as_ref(),
        );
        metrics.active(self.method).decrement(1.0);
        if failure == Some(Failure::Panic) {
            metrics.panics.increment(1);
        }
        if let Some(span) = &mut self.span {
            let tracing = &self.shared.tracing;
            span.finish(tracing, &outcome, self.grpc_call, &self.route, self.start);
        }
        #[cfg(feature = "sentry")]
        if let (Some(report), Some(reporter)) = (self.report.take(), self.shared.sentry.as_ref()) {
            // With tracing off there is no trace to point to.
            let trace = self.span.as_ref().map(|span| {
                let (trace_id, span_id) = span.ids();
                crate::sentry::TraceIds { trace_id, span_id }
            });
            report.finish(reporter, &outcome, self.method, self.route.name(), trace);
        }
    }
}

/// The request's context made current; see [`Exchange::enter`].
pub(crate) struct Entered<'a> {
    _span: Option<crate::trace::span::Entered<'a>>,
    #[cfg(feature = "sentry")]
    _report: Option<crate::sentry::Entered>,
}

#[cfg(test)]
mod tests {
    /// The exchange rides in every response future and body, and is moved with them:
    /// what it holds inline, every request copies, tracing on or off.
    #[test]
    fn the_exchange_stays_small() {
        let size = std::mem::size_of::<super::Exchange>();
        assert!(size <= 96, "Exchange is {size} bytes: box what grew");
    }
}
