//! Outbound propagation: a tower layer for HTTP clients that opens a client span under the
//! request being served and injects `traceparent` and `tracestate` into the call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::current;
use super::export::{FinishedSpan, Kind, RequestText};
use super::span::TraceConfig;
use super::{RequestId, SpanContext};
use crate::classify::{is_grpc, ErrorType, Failure, GrpcCode};

/// Layer for outbound HTTP clients; made by
/// [`Observability::client_layer`](crate::Observability::client_layer).
///
/// Every call gets a client span (kind client, named by the method, with `url.full`
/// without the query, `server.address`, `http.response.status_code`, status Error on 4xx
/// and 5xx) under the request being served on this thread, or the root of a new trace, and
/// carries it in `traceparent` (and the caller's `tracestate`), with the served request's
/// id in `x-request-id` unless the call sets one. The span ends when the response head
/// arrives. With tracing off ([`tracing(false)`](crate::ObservabilityBuilder::tracing)) the
/// layer passes calls through untouched.
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
/// Clients that are not tower services (reqwest, ...) open the same client span with
/// [`outbound`](Self::outbound), inject it, and end it with the response.
#[derive(Clone)]
pub struct TraceClientLayer {
    config: Arc<TraceConfig>,
}

impl TraceClientLayer {
    pub(crate) fn new(config: Arc<TraceConfig>) -> Self {
        TraceClientLayer { config }
    }

    /// Opens the client span of one outbound call made by a client that is not a tower
    /// service, such as reqwest: under the request being served on this thread (or the
    /// root of a new trace). [`inject`](OutboundSpan::inject) it into the call's headers,
    /// then end it with [`finish`](OutboundSpan::finish) (the response's status) or
    /// [`fail`](OutboundSpan::fail) (no response); dropped unended, it is recorded as
    /// cancelled. It is exported like the layer's own client spans, so the downstream
    /// server span's parent exists in the trace.
    ///
    /// ```
    /// # use tower_observability::{MetricsBackend, Observability};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let obs = Observability::builder("frontend")
    /// #     .metrics_backend(MetricsBackend::IsolatedPrometheus).build()?;
    /// let outbound = obs.client_layer();
    /// let url: http::Uri = "http://inventory.internal/items/7".parse()?;
    ///
    /// let span = outbound.outbound(&http::Method::GET, &url);
    /// let mut headers = http::HeaderMap::new();
    /// span.inject(&mut headers); // traceparent, tracestate, x-request-id
    /// // With reqwest:
    /// // match client.get(url.to_string()).headers(headers).send().await {
    /// //     Ok(res) => span.finish(res.status()),
    /// //     Err(_) => span.fail(),
    /// // }
    /// assert!(headers.contains_key("traceparent"));
    /// let status = http::StatusCode::OK; // what the call answered
    /// span.finish(status);
    /// # Ok(())
    /// # }
    /// ```
    pub fn outbound(&self, method: &Method, uri: &Uri) -> OutboundSpan {
        let opened = open(&self.config, method, uri, Version::HTTP_11, false);
        OutboundSpan {
            config: self.config.clone(),
            opened,
        }
    }
}

/// One call's client span and what it injects; see [`TraceClientLayer::outbound`].
/// Recorded when ended, or (as cancelled) when dropped unended.
pub struct OutboundSpan {
    config: Arc<TraceConfig>,
    /// `None` with tracing off.
    opened: Option<Opened>,
}

impl OutboundSpan {
    /// The span's context: what the call carries (`None` with tracing off).
    pub fn context(&self) -> Option<&SpanContext> {
        self.opened.as_ref().map(|o| &o.context)
    }

    /// Writes `traceparent` and `tracestate`, and the served request's id unless the
    /// headers already hold one; nothing with tracing off.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(opened) = &self.opened {
            opened.inject(&self.config, headers);
        }
    }

    /// The response head arrived with `status`: the span ends (status Error on 4xx and
    /// 5xx, as for the client layer).
    pub fn finish(mut self, status: StatusCode) {
        let status = status.as_u16();
        let error = (status >= 400).then_some(ErrorType::Status(status));
        self.end(status, error);
    }

    /// The call failed without a response: the span ends with status Error.
    pub fn fail(mut self) {
        self.end(0, Some(ErrorType::Failure(Failure::ServiceError)));
    }

    fn end(&mut self, status: u16, error: Option<ErrorType>) {
        if let Some(pending) = self.opened.take().and_then(|o| o.pending) {
            submit(&self.config, pending, status, None, error);
        }
    }
}

impl Drop for OutboundSpan {
    fn drop(&mut self) {
        self.end(0, Some(ErrorType::Failure(Failure::Cancelled)));
    }
}

impl std::fmt::Debug for OutboundSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSpan")
            .field("context", &self.context())
            .finish_non_exhaustive()
    }
}

/// A client span just opened.
struct Opened {
    context: SpanContext,
    /// The served request's id, to travel with the call.
    request_id: Option<RequestId>,
    /// The record to export, when sampled and there is an exporter.
    pending: Option<Box<UnfinishedSpan>>,
}

impl Opened {
    fn inject(&self, config: &TraceConfig, headers: &mut HeaderMap) {
        // The request id travels with the call, so every service's logs share it.
        if let (Some(name), Some(id)) = (&config.request_id, &self.request_id) {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), id.header_value());
            }
        }
        self.context.inject(headers);
    }
}

/// Opens a client span under the request served on this thread, or a new trace; `None`
/// with tracing off.
fn open(
    config: &TraceConfig,
    method: &Method,
    uri: &Uri,
    version: Version,
    grpc_call: bool,
) -> Option<Opened> {
    if !config.enabled {
        return None;
    }
    let (parent, request_id) = match current::current_request() {
        Some(served) => (Some(served.span), served.request_id),
        None => (None, None),
    };
    let context = match &parent {
        Some(parent) => SpanContext {
            span_id: super::SpanId::random(),
            ..parent.clone()
        },
        None => config.child_of(None),
    };
    let pending = (context.flags.is_sampled()
        && config.sink.as_ref().is_some_and(|sink| sink.admit()))
    .then(|| {
        Box::new(UnfinishedSpan {
            started: Instant::now(),
            span: FinishedSpan {
                kind: Kind::Client,
                parent: parent.map(|p| (p.span_id, false)),
                context: context.clone(),
                link: None,
                method: method.clone(),
                route: None,
                text: RequestText::capture(uri, None, None, None, config.record_query),
                version,
                peer: None,
                grpc_call,
                start: SystemTime::now(),
                end: SystemTime::UNIX_EPOCH,
                status: 0,
                grpc_status: None,
                error: None,
                over_quota: None,
            },
        })
    });
    Some(Opened {
        context,
        request_id,
        pending,
    })
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
            config: self.config.clone(),
        }
    }
}

/// The client service made by [`TraceClientLayer`].
#[derive(Clone)]
pub struct TraceClient<S> {
    inner: S,
    config: Arc<TraceConfig>,
}

impl<S> std::fmt::Debug for TraceClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceClient").finish_non_exhaustive()
    }
}

/// A client span waiting for its response.
struct UnfinishedSpan {
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
        let opened = open(
            &self.config,
            req.method(),
            req.uri(),
            req.version(),
            is_grpc(req.headers()),
        );
        let pending = opened.and_then(|opened| {
            opened.inject(&self.config, req.headers_mut());
            opened.pending
        });
        TraceClientFuture {
            inner: self.inner.call(req),
            pending,
            config: self.config.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`TraceClient`]: the client span ends when the response head
    /// arrives (or the call fails, or the future is dropped).
    pub struct TraceClientFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Box<UnfinishedSpan>>,
        config: Arc<TraceConfig>,
    }

    impl<F> PinnedDrop for TraceClientFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                submit(this.config, pending, 0, None, Some(ErrorType::Failure(Failure::Cancelled)));
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
            submit(this.config, pending, status, grpc, error);
        }
        Poll::Ready(result)
    }
}

fn submit(
    config: &TraceConfig,
    pending: Box<UnfinishedSpan>,
    status: u16,
    grpc_status: Option<GrpcCode>,
    error: Option<ErrorType>,
) {
    let Some(sink) = &config.sink else {
        return;
    };
    let UnfinishedSpan { mut span, started } = *pending;
    span.end = span.start + started.elapsed();
    span.status = status;
    span.grpc_status = grpc_status;
    span.error = error;
    // A client span lends its ids to nothing: whether it was queued is counted already.
    let _ = sink.submit(span);
}
