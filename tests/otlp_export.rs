//! OTLP export against real receivers on 127.0.0.1: a tonic server implementing the
//! collector's TraceService, and an HTTP/protobuf endpoint. Spans arrive with the right
//! names, kinds, attributes and parents; one trace crosses two services; a collector that
//! is down or hangs costs requests nothing and its drops are counted; a JSON log line
//! written in a handler carries the exported span's trace id.

#[path = "../examples/common/greeter.rs"]
mod greeter;
mod support;

use std::collections::HashMap;
use std::io::Write;
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

/// Spans a receiver got, with the `service.name` of the resource they came with.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn add(&self, req: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().unwrap().clone()
    }

    fn named(&self, name: &str) -> Option<(String, Span)> {
        self.spans().into_iter().find(|(_, s)| s.name == name)
    }
}

struct Grpc(Received);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
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
        post(move |body: Bytes| {
            let received = received.clone();
            async move {
                received.add(ExportTraceServiceRequest::decode(body).unwrap());
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
    Some(match value.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
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

#[tokio::test]
async fn grpc_receiver_gets_server_spans_by_the_semantic_conventions() {
    let received = Received::default();
    let endpoint = grpc_receiver(received.clone()).await;
    let obs = from_vars(
        "users",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=identity"),
        ],
    );
    let addr = serve(users().layer(obs.layer())).await;
    let base = format!("http://{addr}");
    let tp = format!("00-{TRACE}-{CALLER}-01");
    assert_eq!(
        call(
            &format!("{base}/users/7?token=secret"),
            &[("traceparent", &tp), ("x-request-id", "req-7")]
        )
        .await,
        200
    );
    assert_eq!(call(&format!("{base}/boom"), &[]).await, 503);
    assert_eq!(call(&format!("{base}/missing"), &[]).await, 404);
    assert_eq!(call(&format!("{base}/nowhere"), &[]).await, 404);
    // An unsampled caller: followed, so not exported.
    let unsampled = format!("00-{}-{CALLER}-00", "1".repeat(32));
    call(&format!("{base}/users/8"), &[("traceparent", &unsampled)]).await;
    let spans = wait_for(&received, 4).await;
    assert!(obs.flush_traces(Duration::from_secs(5)));
    assert_eq!(
        received.spans().len(),
        4,
        "{:?}",
        spans.iter().map(|s| &s.1.name).collect::<Vec<_>>()
    );

    let (service, user) = received.named("GET /users/{id}").expect("the route span");
    assert_eq!(service, "users");
    assert_eq!(user.kind, SpanKind::Server as i32);
    assert_eq!(hex(&user.trace_id), TRACE);
    assert_eq!(hex(&user.parent_span_id), CALLER);
    assert_eq!(user.span_id.len(), 8);
    for (key, want) in [
        ("http.request.method", "GET"),
        ("http.route", "/users/{id}"),
        ("url.path", "/users/7"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "otlp-test/1.0"),
        ("server.address", "127.0.0.1"),
    ] {
        assert_eq!(attr(&user, key).as_deref(), Some(want), "{key}");
    }
    assert_eq!(attr(&user, "server.port"), Some(addr.port().to_string()));
    assert!(attr(&user, "http.request.header.x-request-id")
        .unwrap()
        .contains("req-7"));
    // The query string (a secret here) is not recorded by default.
    assert!(user.attributes.iter().all(|kv| kv.key != "url.query"));
    assert!(!format!("{user:?}").contains("secret"));
    assert_eq!(
        user.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Unset as i32
    );
    assert!(user.end_time_unix_nano >= user.start_time_unix_nano);

    let (_, boom) = received.named("GET /boom").unwrap();
    assert_eq!(boom.status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(attr(&boom, "error.type").as_deref(), Some("503"));
    assert!(boom.parent_span_id.is_empty(), "no caller: a root span");
    let (_, missing) = received.named("GET /missing").unwrap();
    assert_eq!(
        missing.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Unset as i32,
        "4xx is not a server error"
    );
    // No route matched: the span is named by the method alone, without http.route.
    let (_, unmatched) = received.named("GET").unwrap();
    assert_eq!(attr(&unmatched, "http.route"), None);
    assert_eq!(attr(&unmatched, "url.path").as_deref(), Some("/nowhere"));

    let text = obs.render_metrics();
    assert_eq!(
        sample(&text, "tower_observability_spans_exported_total", &[]),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "tower_observability_spans_dropped_total", &[]),
        Some(0.0)
    );
    assert!(obs.shutdown(Duration::from_secs(5)));
}

/// A writer the JSON lines go to, for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The JSON log lines of this test binary. Installed globally: a thread-scoped subscriber
/// races with other tests' threads over `tracing`'s per-callsite interest cache.
fn captured_logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(logging::layer(LogFormat::Json, logs.clone()));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

#[tokio::test]
async fn one_trace_across_two_services_over_http_protobuf_with_logs() {
    let logs = captured_logs();

    let received = Received::default();
    let endpoint = http_receiver(received.clone()).await;
    let vars = |_: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ]
    };
    let backend_obs = from_vars("backend", &vars("backend"));
    let backend = Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move {
                tracing::info!(item = id, "loading item");
                format!("item {id}")
            }),
        )
        .layer(backend_obs.layer());
    let backend_addr = serve(backend).await;

    let frontend_obs = from_vars("frontend", &vars("frontend"));
    let downstream = ServiceBuilder::new()
        .layer(frontend_obs.client_layer())
        .service(client());
    let frontend = Router::new()
        .route(
            "/page",
            get(move || {
                let mut downstream = downstream.clone();
                async move {
                    tracing::info!("rendering page");
                    let req = Request::get(format!("http://{backend_addr}/items/3"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let res = downstream.call(req).await.unwrap();
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    format!("page with {}", String::from_utf8_lossy(&body))
                }
            }),
        )
        .layer(frontend_obs.layer());
    let frontend_addr = serve(frontend).await;

    assert_eq!(
        call(&format!("http://{frontend_addr}/page"), &[]).await,
        200
    );
    wait_for(&received, 3).await;

    let (svc, page) = received.named("GET /page").expect("frontend server span");
    assert_eq!(
        (svc.as_str(), page.kind),
        ("frontend", SpanKind::Server as i32)
    );
    let (svc, out) = received.named("GET").expect("frontend client span");
    assert_eq!(
        (svc.as_str(), out.kind),
        ("frontend", SpanKind::Client as i32)
    );
    let (svc, item) = received
        .named("GET /items/{id}")
        .expect("backend server span");
    assert_eq!(
        (svc.as_str(), item.kind),
        ("backend", SpanKind::Server as i32)
    );
    // One trace: page -> client call -> backend.
    assert!(page.parent_span_id.is_empty());
    assert_eq!(out.trace_id, page.trace_id);
    assert_eq!(item.trace_id, page.trace_id);
    assert_eq!(out.parent_span_id, page.span_id);
    assert_eq!(item.parent_span_id, out.span_id);
    assert_eq!(
        attr(&out, "url.full"),
        Some(format!("http://{backend_addr}/items/3"))
    );
    assert_eq!(
        attr(&out, "http.response.status_code").as_deref(),
        Some("200")
    );

    // The log lines written in the handlers carry the exported spans' ids.
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {text}"))
            .clone()
    };
    let rendering = find("rendering page");
    assert_eq!(rendering["trace_id"], hex(&page.trace_id));
    assert_eq!(rendering["span_id"], hex(&page.span_id));
    assert_eq!(rendering["request_id"], hex(&page.trace_id));
    assert_eq!(rendering["level"], "INFO");
    let loading = find("loading item");
    assert_eq!(loading["trace_id"], hex(&item.trace_id));
    assert_eq!(loading["span_id"], hex(&item.span_id));
    assert_eq!(loading["item"], 3);
    assert!(frontend_obs.shutdown(Duration::from_secs(5)));
    assert!(backend_obs.shutdown(Duration::from_secs(5)));
}

/// Per-request latencies of `n` sequential requests, sorted.
async fn latencies(uri: &str, n: usize) -> Vec<Duration> {
    let client = client();
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let (status, _) = send(&client, "GET", uri, b"").await;
        assert_eq!(status, 200);
        all.push(start.elapsed());
    }
    all.sort();
    all
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// A collector that accepts connections and never answers.
async fn hanging_collector() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_or_hanging_costs_requests_nothing() {
    const REQUESTS: usize = 400;
    let down = closed_port().await;
    let hanging = hanging_collector().await;
    let queue = [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "128"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "32"),
        ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "3000"),
    ];
    let with = |protocol: &str, addr: SocketAddr| {
        let mut vars = queue.to_vec();
        let endpoint = format!("http://{addr}");
        let endpoint: &'static str = Box::leak(endpoint.into_boxed_str());
        let protocol: &'static str = Box::leak(protocol.to_owned().into_boxed_str());
        vars.push(("OTEL_EXPORTER_OTLP_PROTOCOL", protocol));
        vars.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
        vars
    };
    let setups: Vec<(&str, Observability)> = vec![
        (
            "none",
            from_vars("none", &[("OTEL_TRACES_EXPORTER", "none")]),
        ),
        ("grpc down", from_vars("down", &with("grpc", down))),
        ("http down", from_vars("down", &with("http/protobuf", down))),
        ("grpc hanging", from_vars("hang", &with("grpc", hanging))),
        (
            "http hanging",
            from_vars("hang", &with("http/protobuf", hanging)),
        ),
    ];
    let mut medians = Vec::new();
    for (name, obs) in &setups {
        let addr = serve(users().layer(obs.layer())).await;
        let uri = format!("http://{addr}/users/1");
        latencies(&uri, 50).await; // warm-up: connections, route and series registered
        let sorted = latencies(&uri, REQUESTS).await;
        let (p50, p99) = (pct(&sorted, 0.5), pct(&sorted, 0.99));
        eprintln!("{name:>13}: p50 {p50:?}  p99 {p99:?}");
        medians.push((name, p50, p99));
        if *name != "none" {
            // Everything sent is accounted for: exported, dropped, or still held: up to 128
            // queued, and up to 128 the exporter thread took and is stuck sending.
            let text = obs.render_metrics();
            let dropped = sample(&text, "tower_observability_spans_dropped_total", &[]).unwrap();
            let exported = sample(&text, "tower_observability_spans_exported_total", &[]).unwrap();
            assert_eq!(exported, 0.0, "{name}");
            if name.contains("hanging") {
                let sent = (REQUESTS + 50) as f64; // each request, and the warm-up
                assert!(
                    dropped >= sent - 2.0 * 128.0,
                    "{name}: {dropped} of {sent} dropped"
                );
            }
        }
    }
    // Memory is bounded by the queue, not by the traffic: the queue of the hanging
    // collector is long full, so 4x more requests add (about) nothing.
    let (_, hung) = &setups[3];
    let addr = serve(users().layer(hung.layer())).await;
    let uri = format!("http://{addr}/users/1");
    let rss_before = rss_bytes();
    latencies(&uri, 4 * REQUESTS).await;
    let growth = rss_bytes().saturating_sub(rss_before);
    eprintln!(
        "hanging collector, {} more requests: rss +{} KiB",
        4 * REQUESTS,
        growth / 1024
    );
    assert!(growth < 32 << 20, "rss grew {growth} bytes");
    let (_, base50, base99) = medians[0];
    for (name, p50, p99) in &medians[1..] {
        // Generous: within noise of no exporter means not seconds, not export timeouts.
        assert!(
            *p50 < base50 * 4 + Duration::from_millis(5),
            "{name}: p50 {p50:?} vs {base50:?}"
        );
        assert!(
            *p99 < base99 * 4 + Duration::from_millis(50),
            "{name}: p99 {p99:?} vs {base99:?}"
        );
    }
    // The collector that is down: every span is eventually dropped and counted.
    let (_, grpc_down) = &setups[1];
    let all = (REQUESTS + 50) as f64;
    let counted = eventually(Duration::from_secs(20), || {
        let text = grpc_down.render_metrics();
        let dropped = sample(&text, "tower_observability_spans_dropped_total", &[]).unwrap();
        (dropped >= all).then_some(dropped)
    })
    .await;
    assert_eq!(
        counted,
        Some(all),
        "the down collector's spans are all counted as dropped"
    );
    // Shutdown against a hanging collector returns within its timeout.
    let start = Instant::now();
    let (_, hung) = &setups[3];
    hung.shutdown(Duration::from_secs(1));
    assert!(start.elapsed() < Duration::from_secs(3));
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

#[tokio::test]
async fn a_users_exporter_or_processor_gets_the_spans_and_untrusted_callers_become_links() {
    let kept = Keep::default();
    let obs = isolated("edge")
        .span_exporter(kept.clone())
        .batch_settings(tower_observability::trace::BatchSettings {
            scheduled_delay: Duration::from_millis(20),
            ..Default::default()
        })
        .trust_inbound_context(false)
        .build()
        .unwrap();
    let addr = serve(users().layer(obs.layer())).await;
    let tp = format!("00-{TRACE}-{CALLER}-01");
    call(&format!("http://{addr}/users/1"), &[("traceparent", &tp)]).await;
    assert!(obs.flush_traces(Duration::from_secs(5)));
    let spans = kept.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "GET /users/{id}");
    // Not trusted: a new root, linked to the caller's span.
    assert_ne!(span.span_context.trace_id().to_string(), TRACE);
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert_eq!(span.links.len(), 1);
    assert_eq!(span.links[0].span_context.trace_id().to_string(), TRACE);
    assert_eq!(span.links[0].span_context.span_id().to_string(), CALLER);
    // The same exporter cannot serve two layers.
    let builder = isolated("twice").span_exporter(Keep::default());
    assert!(builder.clone().build().is_ok());
    assert!(builder
        .build()
        .unwrap_err()
        .to_string()
        .contains("span_exporter"));

    // A processor of the application's own pipeline, handed each span as it ends.
    let through = Keep::default();
    let obs = isolated("pipeline")
        .span_processor(opentelemetry_sdk::trace::SimpleSpanProcessor::new(
            through.clone(),
        ))
        .build()
        .unwrap();
    let addr = serve(users().layer(obs.layer())).await;
    call(&format!("http://{addr}/users/2"), &[("traceparent", &tp)]).await;
    let got = eventually(Duration::from_secs(5), || {
        let spans = through.0.lock().unwrap().clone();
        (!spans.is_empty()).then_some(spans)
    })
    .await
    .unwrap();
    assert_eq!(got[0].span_context.trace_id().to_string(), TRACE);
    assert_eq!(got[0].parent_span_id.to_string(), CALLER);
    assert!(got[0].parent_span_is_remote);
}

#[tokio::test]
async fn grpc_calls_become_server_and_client_spans_with_rpc_attributes() {
    use greeter::{Greeter, GreeterClient, HelloRequest};
    let kept = Keep::default();
    let obs = isolated("greeter")
        .span_exporter(kept.clone())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(obs.layer())
            .add_service(Greeter)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The client layer works on a tonic channel too.
    let mut client = GreeterClient::new(
        ServiceBuilder::new()
            .layer(obs.client_layer())
            .service(channel),
    );
    let hello = |fail_with| HelloRequest {
        name: "test".into(),
        fail_with,
    };
    client.say_hello(hello(0)).await.unwrap();
    assert_eq!(
        client.say_hello(hello(14)).await.unwrap_err().code() as i32,
        14
    );
    assert!(obs.flush_traces(Duration::from_secs(5)));
    let spans = kept.0.lock().unwrap().clone();
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .collect();
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Client)
        .collect();
    assert_eq!((servers.len(), clients.len()), (2, 2), "{spans:#?}");
    for span in &servers {
        assert_eq!(span.name, "POST /demo.Greeter/SayHello");
        assert_eq!(attr(span, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(attr(span, "rpc.service").as_deref(), Some("demo.Greeter"));
        assert_eq!(attr(span, "rpc.method").as_deref(), Some("SayHello"));
        assert_eq!(attr(span, "network.protocol.version").as_deref(), Some("2"));
        // Each server span is the child of the client span that called it.
        let caller = clients
            .iter()
            .find(|c| c.span_context.span_id() == span.parent_span_id)
            .expect("a client span as parent");
        assert_eq!(caller.span_context.trace_id(), span.span_context.trace_id());
    }
    let failed = servers
        .iter()
        .find(|s| attr(s, "rpc.grpc.status_code").as_deref() == Some("14"))
        .expect("the UNAVAILABLE call");
    assert!(matches!(
        failed.status,
        opentelemetry::trace::Status::Error { .. }
    ));
    assert_eq!(attr(failed, "error.type").as_deref(), Some("UNAVAILABLE"));
    let ok = servers
        .iter()
        .find(|s| attr(s, "rpc.grpc.status_code").as_deref() == Some("0"))
        .expect("the OK call");
    assert_eq!(ok.status, opentelemetry::trace::Status::Unset);
}
