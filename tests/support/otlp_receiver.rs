//! OTLP trace receivers on 127.0.0.1, as a collector runs them: gRPC (the collector's
//! `TraceService`, served by tonic) or HTTP/protobuf (`POST /v1/traces`). A receiver keeps
//! every export call as it arrived (headers or gRPC metadata, encoded request) and decodes
//! only when read, so it answers at once whatever the test's own decoding would cost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One export call as it arrived.
#[derive(Clone, Debug)]
pub struct ExportCall {
    /// The HTTP headers, or the gRPC metadata.
    pub headers: http::HeaderMap,
    /// The `ExportTraceServiceRequest`, encoded.
    pub request: Bytes,
}

/// A receiver on an ephemeral port; clones share what it received.
#[derive(Clone)]
pub struct OtlpReceiver {
    protocol: &'static str,
    endpoint: String,
    calls: Arc<Mutex<Vec<ExportCall>>>,
}

impl OtlpReceiver {
    /// A gRPC receiver.
    pub async fn grpc() -> Self {
        let calls = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Grpc(Arc::clone(&calls))))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        OtlpReceiver {
            protocol: "grpc",
            endpoint: format!("http://{addr}"),
            calls,
        }
    }

    /// An HTTP/protobuf receiver.
    pub async fn http() -> Self {
        Self::http_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// An HTTP/protobuf receiver on `addr`: a collector that comes up where one was down.
    pub async fn http_on(addr: SocketAddr) -> Self {
        let calls: Arc<Mutex<Vec<ExportCall>>> = Arc::default();
        let kept = Arc::clone(&calls);
        let app = Router::new().route(
            "/v1/traces",
            post(move |headers: http::HeaderMap, request: Bytes| {
                kept.lock().unwrap().push(ExportCall { headers, request });
                async {
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        OtlpReceiver {
            protocol: "http/protobuf",
            endpoint: format!("http://{addr}"),
            calls,
        }
    }

    /// The base endpoint, `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The variables that export to this receiver (protocol and endpoint), then `more`.
    pub fn vars<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut vars = vec![
            ("OTEL_EXPORTER_OTLP_PROTOCOL", self.protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.as_str()),
        ];
        vars.extend_from_slice(more);
        vars
    }

    /// Every export call so far, in order.
    pub fn calls(&self) -> Vec<ExportCall> {
        self.calls.lock().unwrap().clone()
    }

    /// The headers (or metadata) of every export call.
    pub fn headers(&self) -> Vec<http::HeaderMap> {
        self.calls().into_iter().map(|c| c.headers).collect()
    }

    /// Every export request, decoded.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.calls()
            .into_iter()
            .map(|c| ExportTraceServiceRequest::decode(c.request).expect("an OTLP request"))
            .collect()
    }

    /// Every span, with the `service.name` of the resource it came with.
    pub fn spans(&self) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for rs in self.requests().into_iter().flat_map(|r| r.resource_spans) {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                spans.push((service.clone(), span));
            }
        }
        spans
    }

    /// How many spans arrived.
    pub fn count(&self) -> usize {
        self.spans().len()
    }

    /// The first span named `name`, with its service.
    pub fn named(&self, name: &str) -> Option<(String, Span)> {
        self.spans().into_iter().find(|(_, s)| s.name == name)
    }

    /// The attributes of every resource that came with spans, as text.
    pub fn resources(&self) -> Vec<HashMap<String, String>> {
        self.requests()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .map(|rs| {
                rs.resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                    .collect()
            })
            .collect()
    }

    /// Waits until `count` spans arrived (10 s at most) and returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<(String, Span)> {
        super::eventually(Duration::from_secs(10), || {
            let spans = self.spans();
            (spans.len() >= count).then_some(spans)
        })
        .await
        .unwrap_or_else(|| panic!("expected {count} spans, got {}", self.count()))
    }
}

struct Grpc(Arc<Mutex<Vec<ExportCall>>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let request = request.into_inner().encode_to_vec().into();
        self.0.lock().unwrap().push(ExportCall { headers, request });
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An attribute value as text: strings as they are, integers in decimal, arrays as their
/// items' text joined by `,`.
fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::ArrayValue(array)) => {
            let items: Vec<_> = array.values.iter().map(|v| text(Some(v))).collect();
            items.join(",")
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The attribute `key` of `span`, as text; `None` when the span has no such attribute.
pub fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?;
    value.value.as_ref()?.value.as_ref()?;
    Some(text(value.value.as_ref()))
}

/// Trace and span ids as W3C writes them: lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
