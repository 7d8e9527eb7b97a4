//! A small gRPC service written against tonic's server API without code generation (so no
//! `protoc` is needed): `demo.Greeter/SayHello` (unary) and `demo.Greeter/Count` (server
//! streaming). Each request can ask for an error, to show how the layer classifies codes,
//! and `SayHello` for a delay (metadata `x-delay-ms`), to show how calls are timed.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

/// `message HelloRequest { string name = 1; int32 fail_with = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    /// A gRPC code to fail with (0: succeed).
    #[prost(int32, tag = "2")]
    pub fail_with: i32,
}

/// `message HelloReply { string message = 1; string trace_id = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// The trace the server handled the call in (empty when tracing is off).
    #[prost(string, tag = "2")]
    pub trace_id: String,
}

/// Request metadata asking `SayHello` to take this many milliseconds (at most 10 s).
pub const DELAY_MS: &str = "x-delay-ms";

/// `message CountRequest { uint32 n = 1; uint32 delay_ms = 2; int32 fail_with = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountRequest {
    #[prost(uint32, tag = "1")]
    pub n: u32,
    #[prost(uint32, tag = "2")]
    pub delay_ms: u32,
    /// A gRPC code to end the stream with, after the messages (0: OK).
    #[prost(int32, tag = "3")]
    pub fail_with: i32,
}

/// `message CountReply { uint32 i = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountReply {
    #[prost(uint32, tag = "1")]
    pub i: u32,
}

pub const SAY_HELLO: &str = "/demo.Greeter/SayHello";
pub const COUNT: &str = "/demo.Greeter/Count";

/// The service, as tonic's generated code would make it.
#[derive(Clone, Default)]
pub struct Greeter;

impl NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

type CountStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<CountReply, Status>> + Send + 'static>>;

async fn say_hello(req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
    let delay = req
        .metadata()
        .get(DELAY_MS)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    // The layer makes the served call's context current while the handler runs.
    let trace_id = tower_observability::trace::current()
        .map(|ctx| ctx.trace_id.to_string())
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(delay.min(10_000))).await;
    let req = req.into_inner();
    if req.fail_with != 0 {
        // An error before any message: tonic sends a trailers-only response.
        return Err(Status::new(Code::from(req.fail_with), "asked to fail"));
    }
    Ok(Response::new(HelloReply {
        message: format!("hello {}", req.name),
        trace_id,
    }))
}

async fn count(req: Request<CountRequest>) -> Result<Response<CountStream>, Status> {
    let CountRequest {
        n,
        delay_ms,
        fail_with,
    } = req.into_inner();
    let n = n.min(10_000);
    let delay = Duration::from_millis(u64::from(delay_ms.min(10_000)));
    let stream = futures_util::stream::unfold(0u32, move |i| async move {
        if i < n {
            tokio::time::sleep(delay).await;
            Some((Ok(CountReply { i }), i + 1))
        } else if i == n && fail_with != 0 {
            // An error after messages: the status travels in the trailers.
            Some((
                Err(Status::new(Code::from(fail_with), "stream failed")),
                i + 1,
            ))
        } else {
            None
        }
    });
    Ok(Response::new(Box::pin(stream) as CountStream))
}

impl<B> tower::Service<http::Request<B>> for Greeter
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            Ok(match req.uri().path() {
                SAY_HELLO => {
                    let codec = ProstCodec::<HelloReply, HelloRequest>::default();
                    tonic::server::Grpc::new(codec)
                        .unary(tower::service_fn(say_hello), req)
                        .await
                }
                COUNT => {
                    let codec = ProstCodec::<CountReply, CountRequest>::default();
                    tonic::server::Grpc::new(codec)
                        .server_streaming(tower::service_fn(count), req)
                        .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// A client for [`Greeter`] over any tonic channel.
pub struct GreeterClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> GreeterClient<T>
where
    T: tonic::client::GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(inner: T) -> Self {
        GreeterClient {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    /// Takes a `HelloRequest`, or a `tonic::Request` of one to set metadata.
    pub async fn say_hello(
        &mut self,
        req: impl tonic::IntoRequest<HelloRequest>,
    ) -> Result<HelloReply, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.into().to_string()))?;
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        let res = self
            .inner
            .unary(
                tonic::IntoRequest::into_request(req),
                PathAndQuery::from_static(SAY_HELLO),
                codec,
            )
            .await?;
        Ok(res.into_inner())
    }

    pub async fn count(
        &mut self,
        req: CountRequest,
    ) -> Result<tonic::Streaming<CountReply>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.into().to_string()))?;
        let codec = ProstCodec::<CountRequest, CountReply>::default();
        let res = self
            .inner
            .server_streaming(Request::new(req), PathAndQuery::from_static(COUNT), codec)
            .await?;
        Ok(res.into_inner())
    }
}
