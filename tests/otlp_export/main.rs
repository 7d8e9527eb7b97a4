//! OTLP export against real receivers on 127.0.0.1: a tonic server implementing the
//! collector's TraceService, and an HTTP/protobuf endpoint. Spans arrive with the right
//! names, kinds, attributes and parents; one trace crosses two services; a collector that
//! is down or hangs costs requests nothing and its drops are counted; a JSON log line
//! written in a handler carries the exported span's trace id.

#[path = "../../examples/common/greeter.rs"]
mod greeter;
#[path = "../support/mod.rs"]
mod support;

mod propagation;
mod resilience;
mod semantics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::*;
use tower::{Service, ServiceBuilder};
use tower_observability::logging::{self, LogFormat};
use tower_observability::{MetricsBackend, Observability};
use tracing_subscriber::layer::SubscriberExt;

/// What a receiver got: spans with the `service.name` of the resource they came with,
/// every resource's attributes, and the headers (or gRPC metadata) of every export call.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    resources: Arc<Mutex<Vec<HashMap<String, String>>>>,
    headers: Arc<Mutex<Vec<http::HeaderMap>>>,
}

fn any_value(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

impl Received {
    fn add(&self, req: ExportTraceServiceRequest, headers: http::HeaderMap) {
        self.headers.lock().unwrap().push(headers);
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let resource: HashMap<String, String> = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
                .collect();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            self.resources.lock().unwrap().push(resource);
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.spans.lock().unwrap().len()
    }

    fn named(&self, name: &str) -> Option<(String, Span)> {
        self.spans().into_iter().find(|(_, s)| s.name == name)
    }

    fn resources(&self) -> Vec<HashMap<String, String>> {
        self.resources.lock().unwrap().clone()
    }

    fn headers(&self) -> Vec<http::HeaderMap> {
        self.headers.lock().unwrap().clone()
    }
}

struct Grpc(Received);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        self.0.add(request.into_inner(), headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A gRPC OTLP receiver; returns its `http://` endpoint.
async fn grpc_receiver(received: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Grpc(received)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

/// An HTTP/protobuf OTLP receiver (`POST /v1/traces`); returns its base endpoint.
async fn http_receiver(received: Received) -> String {
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: http::HeaderMap, body: Bytes| {
            let received = received.clone();
            async move {
                received.add(ExportTraceServiceRequest::decode(body).unwrap(), headers);
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    format!("http://{}", serve(app).await)
}

/// An observability configured from these variables only, with a private registry.
fn from_vars(name: &str, vars: &[(&str, &str)]) -> Observability {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Observability::from_env_with(name, move |k| vars.get(k).cloned())
        .unwrap()
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .build()
        .unwrap()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?;
    value.value.as_ref()?.value.as_ref()?;
    Some(any_value(value.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn call(uri: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = Request::get(uri).header("user-agent", "otlp-test/1.0");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client()
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    status
}

async fn wait_for(received: &Received, count: usize) -> Vec<(String, Span)> {
    eventually(Duration::from_secs(10), || {
        let spans = received.spans();
        (spans.len() >= count).then_some(spans)
    })
    .await
    .unwrap_or_else(|| panic!("expected {count} spans, got {:?}", received.spans().len()))
}

fn users() -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u32>| async move { format!("user {id}") }),
        )
        .route(
            "/boom",
            get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/missing",
            get(|| async { (http::StatusCode::NOT_FOUND, "no") }),
        )
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

const EXPORTED: &str = "tower_observability_spans_exported_total";
const DROPPED: &str = "tower_observability_spans_dropped_total";

/// Tests that measure time or memory run alone; the others share the machine.
static MEASURING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn measuring() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MEASURING.write().await
}

async fn not_measuring() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MEASURING.read().await
}

/// An exporter of the application's own: keeps what it is given.
#[derive(Debug, Clone, Default)]
struct Keep(Arc<Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for Keep {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}
