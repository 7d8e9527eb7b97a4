//! The signals of the one pass, and the moments of an exchange each is told of.
//!
//! The pass (`service`, `future`, `body`, `exchange`) knows five moments of a request:
//! it **arrived** (route resolved; a signal may answer it itself), its response **head**
//! leaves, its **trailers** leave, it **failed** (the service's error, the body's error, a
//! panic), and it **ended** (the body's last byte, a failure, or a drop). Each signal
//! implements [`Signal`] for those moments and keeps its own per-request state; the pass
//! calls every signal in the order [`signals!`] registers them and knows nothing of what
//! they do. A signal whose cargo feature is off is a zero-sized no-op, so the pass itself
//! carries no `#[cfg(feature)]`.
//!
//! Adding a signal is its own module (a type implementing [`Signal`]) and one line in the
//! registration at the bottom of this file.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};

use crate::classify::{GrpcCode, Outcome};
use crate::config::Setup;
use crate::error::BuildError;
use crate::method::MethodLabel;
use crate::panic::Caught;
use crate::route::Route;

/// What every signal is told when a request arrives.
pub(crate) struct Arrival<'a> {
    /// Whether the request signals (metrics, tracing, error reporting) observe it: false
    /// for excluded paths, which still get the response policy.
    pub(crate) observed: bool,
    pub(crate) method: MethodLabel,
    /// The resolved route (`unmatched` for paths that are not observed).
    pub(crate) route: &'a Arc<Route>,
    /// The route was new beyond the distinct-route cap and folded into `overflow`.
    pub(crate) overflowed: bool,
    /// A signal's own answer to the request (a CORS preflight): the application is then
    /// not called, and the answer goes through every signal's `respond` like any response.
    pub(crate) answer: Option<Answer>,
    /// When the request arrived (the pass's one clock read, shared).
    pub(crate) started: Instant,
    /// A decision a signal cannot make at once (a rate limit shared through Redis): the
    /// pass awaits it before calling the application, which it answers when `Some`.
    pub(crate) deferred: Option<Deferred>,
    /// A rate limit found the request over a quota: recorded on the server span.
    pub(crate) over_quota: Option<OverQuotaFinding>,
}

/// A rate limit found a request over its quota: the policy, and whether the request was
/// refused (enforce) or only counted (shadow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverQuota {
    pub(crate) policy: Arc<str>,
    pub(crate) shadow: bool,
}

/// See [`Arrival::over_quota`]: known at once (in memory), or once a deferred decision
/// (Redis) is made.
#[derive(Debug)]
pub(crate) enum OverQuotaFinding {
    Now(OverQuota),
    Later(Arc<OnceLock<OverQuota>>),
}

impl OverQuotaFinding {
    /// What was found, if anything (a deferred decision may have admitted the request).
    pub(crate) fn get(&self) -> Option<&OverQuota> {
        match self {
            OverQuotaFinding::Now(found) => Some(found),
            OverQuotaFinding::Later(cell) => cell.get(),
        }
    }
}

/// See [`Arrival::deferred`]. Only requests that have one pay for it (a box, and the inner
/// service cloned so the ready one waits with the request).
pub(crate) type Deferred = Pin<Box<dyn Future<Output = Option<Answer>> + Send>>;

/// A signal's own response to a request. Boxed: few requests have one, and every request
/// moves the place it would be kept in.
pub(crate) type Answer = Box<Response<Bytes>>;

/// The response head, as it leaves.
// What only error reporting reads is unread without its feature.
#[cfg_attr(not(feature = "sentry"), allow(dead_code))]
pub(crate) struct Head<'a> {
    pub(crate) headers: &'a mut HeaderMap,
    /// `grpc-status` of a gRPC call's head (trailers-only responses carry it there).
    pub(crate) grpc_status: Option<GrpcCode>,
}

/// Why an exchange failed, for the signals that report the error itself.
#[cfg_attr(not(feature = "sentry"), allow(dead_code))]
pub(crate) enum Failed<'a> {
    /// The inner service returned an error instead of a response.
    Service {
        type_name: &'static str,
        error: &'a dyn std::fmt::Display,
    },
    /// The response body failed mid-stream.
    Body(&'a (dyn std::error::Error + 'static)),
    /// The handler, or its body, panicked.
    Panic(&'a Caught),
}

/// The ids of a request's server span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanIds {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// Sampled and taken by the exporter's queue (not dropped): a backend will have it.
    pub(crate) exported: bool,
}

/// What an exchange came to, told to every signal when it ends.
pub(crate) struct Ending<'a> {
    pub(crate) outcome: Outcome,
    pub(crate) method: MethodLabel,
    pub(crate) route: &'a Arc<Route>,
    pub(crate) grpc: bool,
    pub(crate) started: Instant,
    pub(crate) nanos: u64,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
    /// The server span's ids: set by tracing, which ends before the signals that point to
    /// the trace (error reports, exemplars).
    pub(crate) span: Option<SpanIds>,
}

/// One signal of the pass: built once from the configuration, then told of every moment
/// of every exchange. Hooks other than [`arrive`](Self::arrive) and [`end`](Self::end)
/// default to nothing.
pub(crate) trait Signal: Send + Sync + Sized + 'static {
    /// The signal's state for one exchange (`()` when it keeps none).
    type Exchange: Send + 'static;
    /// What [`enter`](Self::enter) makes current while the application runs (`()` for
    /// none).
    type Entered<'a>;

    /// Builds the signal from the validated configuration.
    fn build(setup: &mut Setup<'_>) -> Result<Self, BuildError>;

    /// The request arrived. A signal may answer it itself (a CORS preflight) by setting
    /// [`Arrival::answer`].
    fn arrive<B>(&self, req: &Request<B>, arrival: &mut Arrival<'_>) -> Self::Exchange;

    /// Makes the request's context current on this thread, around every call into the
    /// application and every poll of its future and body.
    fn enter<'a>(&'a self, exchange: &'a Self::Exchange) -> Self::Entered<'a>;

    /// The response head leaves.
    fn respond(&self, _exchange: &mut Self::Exchange, _head: &mut Head<'_>) {}

    /// The trailers leave; `grpc_status` is what they say, when they say it.
    fn trailers(
        &self,
        _exchange: &mut Self::Exchange,
        _trailers: &HeaderMap,
        _grpc_status: Option<GrpcCode>,
    ) {
    }

    /// The exchange failed with `failed`; [`end`](Self::end) follows.
    fn fail(&self, _exchange: &mut Self::Exchange, _failed: &Failed<'_>) {}

    /// The exchange is over: exactly once, whichever way it ended.
    fn end(&self, exchange: &mut Self::Exchange, ending: &mut Ending<'_>);
}

/// Registers the signals: one struct holding each, one holding each one's per-exchange
/// state, and the moments calling each in the order written.
macro_rules! signals {
    ($($(#[$doc:meta])* $field:ident: $signal:ty,)+) => {
        /// Every signal of the pass, built once.
        pub(crate) struct Signals {
            $($(#[$doc])* pub(crate) $field: $signal,)+
        }

        /// Every signal's state for one exchange.
        pub(crate) struct SignalStates {
            $($field: <$signal as Signal>::Exchange,)+
        }

        /// Every signal's context, current while the application runs (held for its
        /// `Drop`).
        #[allow(dead_code)]
        pub(crate) struct EnteredContext<'a> {
            $($field: <$signal as Signal>::Entered<'a>,)+
        }

        impl Signals {
            pub(crate) fn build(setup: &mut Setup<'_>) -> Result<Self, BuildError> {
                Ok(Signals { $($field: <$signal as Signal>::build(setup)?,)+ })
            }

            #[inline]
            pub(crate) fn arrive<B>(
                &self,
                req: &Request<B>,
                arrival: &mut Arrival<'_>,
            ) -> SignalStates {
                SignalStates { $($field: self.$field.arrive(req, arrival),)+ }
            }

            #[inline]
            pub(crate) fn enter<'a>(&'a self, states: &'a SignalStates) -> EnteredContext<'a> {
                EnteredContext { $($field: self.$field.enter(&states.$field),)+ }
            }

            #[inline]
            pub(crate) fn respond(&self, states: &mut SignalStates, head: &mut Head<'_>) {
                $(self.$field.respond(&mut states.$field, head);)+
            }

            #[inline]
            pub(crate) fn trailers(
                &self,
                states: &mut SignalStates,
                trailers: &HeaderMap,
                grpc_status: Option<GrpcCode>,
            ) {
                $(self.$field.trailers(&mut states.$field, trailers, grpc_status);)+
            }

            #[inline]
            pub(crate) fn fail(&self, states: &mut SignalStates, failed: &Failed<'_>) {
                $(self.$field.fail(&mut states.$field, failed);)+
            }

            #[inline]
            pub(crate) fn end(&self, states: &mut SignalStates, ending: &mut Ending<'_>) {
                $(self.$field.end(&mut states.$field, ending);)+
            }
        }
    };
}

signals! {
    /// Security headers and CORS: first, so the others see the headers it sets.
    policy: crate::response_policy::PolicySignal,
    /// Rate limits: after the policy (a preflight it answered is not limited), before the
    /// signals that record the refusal like any response.
    rate_limit: crate::rate_limit::RateLimitSignal,
    /// The server span and request id: before the signals that point to the trace.
    tracing: crate::trace::Tracing,
    /// The RED metrics.
    metrics: crate::metrics::RequestMetrics,
    /// Error reports (Sentry with the `sentry` feature).
    errors: crate::error_reporting::ErrorReporting,
}
