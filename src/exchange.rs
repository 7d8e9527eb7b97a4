//! One request/response exchange, from the request's arrival to the end of its response body.
//!
//! The pass's record of a request: what every signal needs to agree on (method, route, the
//! status and gRPC status seen, bytes each way, how it ended), and each signal's own state
//! ([`SignalStates`]). An [`Exchange`] is made when the request arrives
//! ([`Exchange::begin`]), sees the response head ([`Exchange::on_response`]), the body's
//! bytes and trailers, and ends exactly once: by [`Exchange::finish`] when the body ends or
//! fails, or by being dropped early (client gone: `cancelled`; unwinding: `panic`).
//! The signals are told of the end in `Drop`, so no path can leak the in-flight gauge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;

use crate::classify::{is_grpc, Failure, GrpcCode, Outcome};
use crate::method::MethodLabel;
use crate::route::Route;
use crate::shared::Shared;
use crate::signal::{
    Answer, Arrival, Deferred, Ending, EnteredContext, Failed, Head, SignalStates,
};

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The response was sent to its end.
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
    /// 0 until the response head leaves.
    status: u16,
    grpc_status: Option<GrpcCode>,
    response_bytes: u64,
    /// The body's exact length, when its head announced one: a body dropped once that many
    /// bytes left was complete (servers stop polling at the length).
    expected_bytes: Option<u64>,
    end: Option<End>,
    signals: SignalStates,
}

/// What [`Exchange::begin`] made of a request.
pub(crate) struct Begun {
    pub(crate) exchange: Exchange,
    /// A signal answered the request itself (a CORS preflight): the application is not
    /// called.
    pub(crate) answer: Option<Answer>,
    /// A signal's decision to await before calling the application (see
    /// [`Arrival::deferred`]).
    pub(crate) deferred: Option<Deferred>,
}

impl Exchange {
    /// Starts the exchange of a request: resolves its route (unless its path is excluded
    /// from the request signals) and tells every signal it arrived.
    pub(crate) fn begin<B: Body>(shared: &Arc<Shared>, req: &Request<B>) -> Begun {
        let start = Instant::now();
        let observed = !shared.excluded.matches(req.uri().path());
        let resolved = if observed {
            shared.routes.resolve(req)
        } else {
            shared.routes.unmatched()
        };
        let method = MethodLabel::of(req.method());
        let grpc_call = is_grpc(req.headers());
        let mut arrival = Arrival {
            observed,
            method,
            route: &resolved.route,
            overflowed: resolved.overflowed,
            answer: None,
            started: start,
            deferred: None,
            over_quota: None,
        };
        let signals = shared.signals.arrive(req, &mut arrival);
        let (answer, deferred) = (arrival.answer, arrival.deferred);
        // Bodiless requests (most GETs) need no shared counter.
        let request_bytes =
            (observed && !req.body().is_end_stream()).then(|| Arc::new(AtomicU64::new(0)));
        Begun {
            exchange: Exchange {
                shared: shared.clone(),
                start,
                method,
                route: resolved.route,
                grpc_call,
                request_bytes,
                status: 0,
                grpc_status: None,
                response_bytes: 0,
                expected_bytes: None,
                end: None,
                signals,
            },
            answer,
            deferred,
        }
    }

    /// The counter the request body wrapper adds to, if the request has a body.
    pub(crate) fn request_counter(&self) -> Option<Arc<AtomicU64>> {
        self.request_bytes.clone()
    }

    /// Makes the request's context current on this thread until the guard is dropped:
    /// wrap every call into the inner service and every poll of its future and body.
    pub(crate) fn enter(&self) -> EnteredContext<'_> {
        self.shared.signals.enter(&self.signals)
    }

    /// The exchange failed with `failed` (its end follows).
    pub(crate) fn on_failure(&mut self, failed: &Failed<'_>) {
        self.shared.signals.fail(&mut self.signals, failed);
    }

    pub(crate) fn route_name(&self) -> &str {
        self.route.name()
    }

    pub(crate) fn is_grpc(&self) -> bool {
        self.grpc_call
    }

    /// The response head leaves. Returns whether the exchange is over with it: a response
    /// that carries no body by HTTP's rules (to a HEAD request; 1xx, 204, 304) or whose
    /// body is already over is never polled by servers, so it ends with its head.
    pub(crate) fn on_response<B: Body>(&mut self, res: &mut Response<B>) -> bool {
        let exact = res.body().size_hint().exact();
        let over = res.body().is_end_stream();
        self.on_head(res.status(), res.headers_mut(), exact, over)
    }

    /// The head of a response the layer made itself (a preflight answer, a panic's 500)
    /// leaves; the body goes with it.
    pub(crate) fn on_made_response(&mut self, res: &mut Response<Bytes>) {
        let len = res.body().len() as u64;
        self.on_head(res.status(), res.headers_mut(), Some(len), len == 0);
    }

    fn on_head(
        &mut self,
        status: StatusCode,
        headers: &mut HeaderMap,
        exact: Option<u64>,
        over: bool,
    ) -> bool {
        self.status = status.as_u16();
        if self.grpc_call {
            // Trailers-only responses carry the status in the headers.
            self.grpc_status = GrpcCode::from_headers(headers);
        }
        self.expected_bytes = exact;
        let grpc_status = self.grpc_status;
        let head = &mut Head {
            headers,
            grpc_status,
        };
        self.shared.signals.respond(&mut self.signals, head);
        over || self.method == MethodLabel::Head || bodiless(status)
    }

    /// A data frame of `len` bytes left.
    pub(crate) fn on_data(&mut self, len: usize) {
        self.response_bytes += len as u64;
    }

    /// The trailers left.
    pub(crate) fn on_trailers(&mut self, trailers: &HeaderMap) {
        let code = if self.grpc_call {
            GrpcCode::from_headers(trailers)
        } else {
            None
        };
        if code.is_some() {
            self.grpc_status = code;
        }
        self.shared
            .signals
            .trailers(&mut self.signals, trailers, code);
    }

    /// Ends the exchange now.
    pub(crate) fn finish(mut self, end: End) {
        self.end = Some(end);
    }

    /// How the exchange ended, when it was dropped without [`finish`](Self::finish).
    fn dropped(&self) -> End {
        if std::thread::panicking() {
            return End::Failed(Failure::Panic);
        }
        // A body complete at its announced length, which servers stop polling there.
        let complete = self.status != 0
            && self
                .expected_bytes
                .is_some_and(|expected| self.response_bytes >= expected);
        if complete {
            End::Complete
        } else {
            // The client went away before the response was complete.
            End::Failed(Failure::Cancelled)
        }
    }
}

/// Statuses whose responses carry no body (RFC 9110 6.4.1).
fn bodiless(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let end = self.end.unwrap_or_else(|| self.dropped());
        let failure = match end {
            End::Complete => None,
            End::Failed(failure) => Some(failure),
        };
        let mut ending = Ending {
            outcome: Outcome::classify(self.status, self.grpc_call, self.grpc_status, failure),
            method: self.method,
            route: &self.route,
            grpc: self.grpc_call,
            started: self.start,
            nanos: u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX),
            request_bytes: self
                .request_bytes
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            response_bytes: self.response_bytes,
            span: None,
        };
        self.shared.signals.end(&mut self.signals, &mut ending);
    }
}

#[cfg(test)]
mod tests {
    /// The exchange rides in every response future and body, and is moved with them:
    /// what it holds inline, every request copies, whatever is switched on.
    #[test]
    fn the_exchange_stays_small() {
        let size = std::mem::size_of::<super::Exchange>();
        assert!(size <= 128, "Exchange is {size} bytes: box what grew");
    }
}
