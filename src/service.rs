//! The one service: every signal of a request in a single pass.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::{RequestBody, ResponseBody};
use crate::exchange::Exchange;
use crate::future::ResponseFuture;
use crate::observability::Shared;
use crate::panic::catch;
use crate::rate_limit::Admission;
use crate::response_policy::{ResponsePolicy, Verdict};

/// The service made by [`ObservabilityLayer`](crate::ObservabilityLayer).
///
/// It hands the inner service a [`RequestBody`] (the original body, counted) and returns a
/// [`ResponseBody`] that records the exchange when its last byte leaves.
///
/// The inner service must be `Clone` (axum routers, tonic services, hyper's `service_fn`
/// and tower's `BoxCloneService` are; wrap others in `tower::buffer::Buffer`): when a rate
/// limit is decided asynchronously (shared through Redis), the service made ready for the
/// request waits with it in the response future, and a clone takes its place. Requests
/// decided in memory, or with no rate limit, never clone it.
#[derive(Clone)]
pub struct ObservabilityService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ObservabilityService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        ObservabilityService { inner, shared }
    }
}

impl<S> std::fmt::Debug for ObservabilityService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservabilityService")
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ObservabilityService<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    S::Error: std::fmt::Display,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, Request<RequestBody<ReqBody>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let exchange = Exchange::begin(&self.shared, &req);
        let policy = match self.shared.policy.as_ref() {
            None => None,
            Some(policy) => match ResponsePolicy::decide(policy, &req) {
                Verdict::Pass(policy) => Some(policy),
                // A CORS preflight: answered here, the application never sees it.
                Verdict::Answer(res) => return ResponseFuture::answered(res, exchange),
            },
        };
        let catch_panics = self.shared.catch_panics;
        let mut pending = None;
        let mut limit = None;
        if let Some(limiter) = self.shared.rate_limit.as_ref() {
            let route = exchange.as_ref().map(Exchange::route_name);
            let arrived = exchange.as_ref().map(Exchange::started);
            match limiter.admit(&req, route, arrived, &self.shared.routes) {
                Admission::Pass => {}
                Admission::Admitted(headers) => limit = Some(Box::new(headers)),
                Admission::Answer(mut res) => {
                    // A refusal leaves with the security headers and the CORS grant.
                    if let Some(policy) = policy.as_ref() {
                        policy.apply(res.headers_mut());
                    }
                    return ResponseFuture::answered(res, exchange);
                }
                Admission::Pending(admission) => pending = Some(admission),
            }
        }
        let counter = exchange.as_ref().and_then(Exchange::request_counter);
        let req = req.map(|body| RequestBody::new(body, counter));
        if let Some(admission) = pending {
            // The ready service waits for the decision; a clone serves the next request.
            let clone = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::admitting(admission, ready, req, exchange, catch_panics)
                .with_policy(policy);
        }
        let called = {
            let _entered = exchange.as_ref().map(Exchange::enter);
            catch(|| self.inner.call(req))
        };
        match called {
            Ok(future) => ResponseFuture::called(future, exchange, catch_panics),
            // Recorded and resumed (or answered) on the first poll, like any handler panic.
            Err(panic) => ResponseFuture::panicked(panic, exchange, catch_panics),
        }
        .with_policy(policy)
        .with_limit(limit)
    }
}
