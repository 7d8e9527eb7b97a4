//! Outbound propagation: a tower layer for HTTP clients that opens a client span under the
//! request being served and injects `traceparent` and `tracestate` into the call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::current;
use super::export::{FinishedSpan, Kind};
use super::SpanContext;
use crate::classify::{is_grpc, ErrorType, Failure, GrpcCode};
use crate::observability::Shared;

/// Layer for outbound HTTP clients; made by
/// [`Observability::client_layer`](crate::Observability::client_layer).
///
/// Every call gets a client span (kind client, named by the method, with `url.full`
/// without the query, `server.address`, `http.response.status_code`, status Error on 4xx
/// and 5xx) under the request being served on this thread, or the root of a new trace, and
/// carries it in `traceparent` (and the caller's `tracestate`), with the served request's
/// id in `x-request-id` unless the call sets one. The span ends when the response head
/// arrives.
///
/// ```
/// use tower::ServiceBuilder;
/// # use tower_observability::{MetricsBackend, Observability};
/// # let obs = Observability::builder("frontend")
/// #     .metrics_backend(MetricsBackend::IsolatedPrometheus).build()?;
/// # let hyper_client = tower::service_fn(|_req: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let client = ServiceBuilder::new()
///     .layer(obs.client_layer())
///     .service(hyper_client); // e.g. hyper_util's legacy Client, or a tonic Channel
/// # let _ = client;
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
///
/// reqwest is not a tower service: inject the context before sending (the client span
/// itself is then not recorded):
///
/// ```ignore
/// let mut headers = http::HeaderMap::new();
/// obs.client_layer().outbound_context().inject(&mut headers);
/// let res = reqwest_client.get(url).headers(headers).send().await?;
/// ```
#[derive(Clone)]
pub struct TraceClientLayer {
    shared: Arc<Shared>,
}

impl TraceClientLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        TraceClientLayer { shared }
    }

    /// The context an outbound call made now should carry: a new client span under the
    /// request being served on this thread (or a new trace). For clients that are not
    /// tower services: call [`SpanContext::inject`] on the result.
    pub fn outbound_context(&self) -> SpanContext {
        let config = &self.shared.tracing;
        match current::current() {
            Some(parent) => SpanContext {
                span_id: super::SpanId::random(),
                ..parent
            },
            None => config.child_of(None),
        }
    }
}

impl std::fmt::Debug for TraceClientLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceClientLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for TraceClientLayer {
    type Service = TraceClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceClient {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The client service made by [`TraceClientLayer`].
#[derive(Clone)]
pub struct TraceClient<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for TraceClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceClient").finish_non_exhaustive()
    }
}

/// A client span waiting for its response.
struct Pending {
    span: FinishedSpan,
    started: Instant,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TraceClient<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TraceClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &self.shared.tracing;
        let served = current::current_request();
        // The request id travels with the call, so every service's logs share it.
        if let (Some(name), Some(id)) = (
            &config.request_id,
            served.as_ref().and_then(|r| r.request_id.as_ref()),
        ) {
            if !req.headers().contains_key(name) {
                req.headers_mut().insert(name.clone(), id.header_value());
            }
        }
        let parent = served.map(|r| r.span);
        let context = match &parent {
            Some(parent) => SpanContext {
                span_id: super::SpanId::random(),
                ..parent.clone()
            },
            None => config.child_of(None),
        };
        context.inject(req.headers_mut());
        let pending = (context.flags.is_sampled() && config.sink.is_some()).then(|| {
            Box::new(Pending {
                started: Instant::now(),
                span: FinishedSpan {
                    kind: Kind::Client,
                    parent: parent.map(|p| (p.span_id, false)),
                    context,
                    link: None,
                    method: req.method().clone(),
                    route: None,
                    uri: req.uri().clone(),
                    version: req.version(),
                    user_agent: None,
                    host: None,
                    peer: None,
                    request_id: None,
                    grpc_call: is_grpc(req.headers()),
                    start: SystemTime::now(),
                    end: SystemTime::UNIX_EPOCH,
                    status: 0,
                    grpc_status: None,
                    error: None,
                    record_query: config.record_query,
                },
            })
        });
        TraceClientFuture {
            inner: self.inner.call(req),
            pending,
            shared: self.shared.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`TraceClient`]: the client span ends when the response head
    /// arrives (or the call fails, or the future is dropped).
    pub struct TraceClientFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Box<Pending>>,
        shared: Arc<Shared>,
    }

    impl<F> PinnedDrop for TraceClientFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                submit(this.shared, pending, 0, None, Some(ErrorType::Failure(Failure::Cancelled)));
            }
        }
    }
}

impl<F> std::fmt::Debug for TraceClientFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceClientFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for TraceClientFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(pending) = this.pending.take() {
            let (status, grpc, error) = match &result {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let grpc = pending
                        .span
                        .grpc_call
                        .then(|| GrpcCode::from_headers(res.headers()))
                        .flatten();
                    let error = match grpc {
                        Some(code) if code.is_server_fault() => Some(ErrorType::Grpc(code)),
                        // Semantic conventions: 4xx is an error for the client.
                        _ if status >= 400 => Some(ErrorType::Status(status)),
                        _ => None,
                    };
                    (status, grpc, error)
                }
                Err(_) => (0, None, Some(ErrorType::Failure(Failure::ServiceError))),
            };
            submit(this.shared, pending, status, grpc, error);
        }
        Poll::Ready(result)
    }
}

fn submit(
    shared: &Shared,
    pending: Box<Pending>,
    status: u16,
    grpc_status: Option<GrpcCode>,
    error: Option<ErrorType>,
) {
    let Some(sink) = &shared.tracing.sink else {
        return;
    };
    let Pending { mut span, started } = *pending;
    span.end = span.start + started.elapsed();
    span.status = status;
    span.grpc_status = grpc_status;
    span.error = error;
    sink.submit(span);
}
