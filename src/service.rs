//! The one service: every signal of a request in a single pass.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::{RequestBody, ResponseBody};
use crate::exchange::{Begun, Exchange};
use crate::future::ResponseFuture;
use crate::panic::catch;
use crate::shared::Shared;

/// The service made by [`ObservabilityLayer`](crate::ObservabilityLayer).
///
/// It hands the inner service a [`RequestBody`] (the original body, counted) and returns a
/// [`ResponseBody`] that records the exchange when its last byte leaves.
///
/// The inner service must be `Clone` (axum routers, tonic services, hyper's `service_fn`
/// and tower's `BoxCloneService` are; wrap others in `tower::buffer::Buffer`): when a
/// signal decides a request asynchronously (a rate limit shared through Redis), the
/// service made ready for it waits with it in the response future and a clone takes its
/// place. Requests decided at once never clone it.
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
        let Begun {
            exchange,
            answer,
            deferred,
        } = Exchange::begin(&self.shared, &req);
        if let Some(res) = answer {
            // A signal answered (a CORS preflight, a rate limit): the application never sees it.
            return ResponseFuture::answered(res, exchange);
        }
        let req = req.map(|body| RequestBody::new(body, exchange.request_counter()));
        let catch_panics = self.shared.catch_panics;
        if let Some(deferred) = deferred {
            // The ready service waits with the request for the decision; a clone serves on.
            let clone = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::deferred(deferred, ready, req, exchange, catch_panics);
        }
        let called = {
            let _entered = exchange.enter();
            catch(|| self.inner.call(req))
        };
        match called {
            Ok(future) => ResponseFuture::called(future, exchange, catch_panics),
            // Recorded and resumed (or answered) on the first poll, like any handler panic.
            Err(panic) => ResponseFuture::panicked(panic, exchange, catch_panics),
        }
    }
}
