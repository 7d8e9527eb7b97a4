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

#[tokio::test]
async fn grpc_receiver_gets_server_spans_by_the_semantic_conventions() {
    let _shared = not_measuring().await;
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
    let _shared = not_measuring().await;
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
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 100;
    const QUEUE: usize = 128;
    let _alone = measuring().await;
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
    let mut uris = Vec::new();
    for (_, obs) in &setups {
        let addr = serve(users().layer(obs.layer())).await;
        let uri = format!("http://{addr}/users/1");
        latencies(&uri, 50).await; // warm-up: connections, route and series registered
        uris.push(uri);
    }
    // Interleaved rounds: a slow moment of this shared machine hits every setup alike.
    let mut samples = vec![Vec::new(); setups.len()];
    for _ in 0..ROUNDS {
        for (uri, all) in uris.iter().zip(&mut samples) {
            all.extend(latencies(uri, PER_ROUND).await);
        }
    }
    let sent = (50 + ROUNDS * PER_ROUND) as f64;
    let mut tails = Vec::new();
    for ((name, obs), sorted) in setups.iter().zip(&mut samples) {
        sorted.sort();
        let (p50, p99) = (pct(sorted, 0.5), pct(sorted, 0.99));
        eprintln!("{name:>13}: p50 {p50:?}  p99 {p99:?}");
        tails.push((name, p50, p99));
        if *name != "none" {
            // Everything sent is accounted for: exported (nothing), dropped, or still
            // held: up to a queue waiting, and up to a queue the exporter took and is
            // stuck sending.
            assert_eq!(counter(obs, EXPORTED), 0.0, "{name}");
            let dropped = counter(obs, DROPPED);
            assert!(dropped <= sent, "{name}: {dropped} of {sent} dropped");
            if name.contains("hanging") {
                assert!(
                    dropped >= sent - 2.0 * QUEUE as f64,
                    "{name}: {dropped} of {sent} dropped"
                );
            }
        }
    }
    let (_, base50, base99) = tails[0];
    for (name, p50, p99) in &tails[1..] {
        // Within noise of no exporter: the same order, not export timeouts (2 s) or
        // connection attempts (a closed port answers in microseconds, a hanging one never).
        let bound = |base: Duration, slack: Duration| (base * 3).max(base + slack);
        assert!(
            *p50 <= bound(base50, Duration::from_millis(2)),
            "{name}: p50 {p50:?} vs {base50:?} without an exporter"
        );
        assert!(
            *p99 <= bound(base99, Duration::from_millis(10)),
            "{name}: p99 {p99:?} vs {base99:?} without an exporter"
        );
    }

    // Memory is bounded by the queue, not by the traffic: a burst of client spans at the
    // hanging collector, straight into the queue. Unbounded, 200,000 spans
    // would hold ~76 MiB (400 bytes each); bounded, every span beyond what is held is dropped and counted.
    const BURST: usize = 200_000;
    let (_, hung) = &setups[4];
    let before = counter(hung, DROPPED);
    let rss_before = rss_bytes();
    let rate = burst(hung, BURST, 1e9).await;
    let growth = rss_bytes().saturating_sub(rss_before);
    let dropped = counter(hung, DROPPED) - before;
    eprintln!(
        "hanging collector, {BURST} spans at {rate:.0}/s: {dropped} dropped, rss +{} KiB",
        growth / 1024
    );
    assert!(growth < 16 << 20, "rss grew {growth} bytes");
    // At most a queue waits and a queue is stuck in the exporter; what the exporter held
    // before the burst may time out during it, so may be counted too.
    let (burst_spans, held) = (BURST as f64, 2.0 * QUEUE as f64);
    assert!(
        dropped >= burst_spans - held && dropped <= burst_spans + held,
        "{dropped} dropped of {BURST}"
    );

    // The collector that is down: every span is eventually dropped and counted.
    let (_, grpc_down) = &setups[1];
    let counted = eventually(Duration::from_secs(20), || {
        let dropped = counter(grpc_down, DROPPED);
        (dropped >= sent).then_some(dropped)
    })
    .await;
    assert_eq!(
        counted,
        Some(sent),
        "the down collector's spans are all counted as dropped"
    );
    // Shutdown against a hanging collector returns within its timeout.
    let start = Instant::now();
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
    let _shared = not_measuring().await;
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
    let _shared = not_measuring().await;
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
    for span in &clients {
        assert_eq!(span.name, "demo.Greeter/SayHello");
    }
    for span in &servers {
        // The RPC conventions' name, not the HTTP one.
        assert_eq!(span.name, "demo.Greeter/SayHello");
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

/// `n` client spans, submitted at about `per_second` (in slices of 100) through the client
/// layer over a service that answers at once: the span path without a network in the way.
/// Returns the rate reached.
async fn burst(obs: &Observability, n: usize, per_second: f64) -> f64 {
    let mut outbound = ServiceBuilder::new()
        .layer(obs.client_layer())
        .service(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
    let start = Instant::now();
    for i in 0..n {
        if i % 100 == 0 {
            let at = start + Duration::from_secs_f64(i as f64 / per_second);
            tokio::time::sleep_until(at.into()).await;
        }
        let req = Request::get("http://inventory.internal/items/7")
            .body(())
            .unwrap();
        outbound.call(req).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn counter(obs: &Observability, name: &str) -> f64 {
    sample(&obs.render_metrics(), name, &[]).unwrap_or_else(|| panic!("{name} not exported"))
}

const EXPORTED: &str = "tower_observability_spans_exported_total";
const DROPPED: &str = "tower_observability_spans_dropped_total";

/// An HTTP/protobuf receiver that keeps the raw bodies, decoded later: a collector that
/// answers at once, whatever the test's own decoding would cost.
async fn raw_receiver(bodies: Arc<Mutex<Vec<Bytes>>>) -> String {
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let bodies = bodies.clone();
            async move {
                bodies.lock().unwrap().push(body);
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    format!("http://{}", serve(app).await)
}

/// One burst into a fresh layer exporting to a fresh receiver: (rate reached, spans
/// dropped, whether all were exported within a second of the burst's end, the bodies).
async fn one_burst(spans: usize, rate: f64) -> (f64, f64, bool, Vec<Bytes>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let endpoint = raw_receiver(bodies.clone()).await;
    let obs = from_vars(
        "burst",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "512"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
        ],
    );
    let reached = burst(&obs, spans, rate).await;
    // No flush: full batches leave by themselves, long before the 5 s delay; only the last,
    // partial one waits for it (or for the flush below).
    let all_out = eventually(Duration::from_secs(1), || {
        let accounted = counter(&obs, EXPORTED) + counter(&obs, DROPPED);
        (accounted > (spans - 64) as f64).then_some(())
    })
    .await
    .is_some();
    assert!(obs.flush_traces(Duration::from_secs(5)));
    let dropped = counter(&obs, DROPPED);
    let exported = counter(&obs, EXPORTED);
    eprintln!("{spans} spans at {reached:.0}/s: dropped {dropped}, exported {exported}");
    assert!(obs.shutdown(Duration::from_secs(5)));
    let bodies = bodies.lock().unwrap().clone();
    (
        reached,
        dropped,
        all_out && exported == spans as f64,
        bodies,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_far_above_one_queue_per_tick_is_exported_whole() {
    // Only the wake of a full batch gets these spans out in time: the delay is the default
    // 5 s, and an exporter that looked every 50 ms could take at most one queue (512) per
    // look, ~10,200 spans/s, even from an instant collector: it lost half of every try.
    // The collector answers at once (a debug build exports 35,000 to 70,000 spans/s in
    // batches of 64). A queue of 512 at 16,000/s rides out ~30 ms of the exporter thread not running;
    // a loaded machine can stall it longer, so the burst gets three tries.
    const SPANS: usize = 16_000;
    const RATE: f64 = 16_000.0;
    let _alone = measuring().await;
    let mut tries = Vec::new();
    for _ in 0..3 {
        let (rate, dropped, whole, bodies) = one_burst(SPANS, RATE).await;
        assert!(
            rate > 1.5 * 512.0 / 0.05,
            "the burst must outpace one queue per 50 ms to mean anything: {rate:.0}/s"
        );
        if whole && dropped == 0.0 {
            // Every span arrived, once.
            let mut ids = std::collections::HashSet::new();
            for body in bodies {
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                for span in req
                    .resource_spans
                    .into_iter()
                    .flat_map(|rs| rs.scope_spans)
                    .flat_map(|ss| ss.spans)
                {
                    assert!(ids.insert(span.span_id), "a span arrived twice");
                }
            }
            assert_eq!(ids.len(), SPANS);
            return;
        }
        tries.push(dropped);
    }
    panic!("a healthy collector lost spans in every try: dropped {tries:?} of {SPANS}");
}

/// Tests that measure time or memory run alone; the others share the machine.
static MEASURING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn measuring() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MEASURING.write().await
}

async fn not_measuring() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MEASURING.read().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_headers_from_the_environment_reach_the_collector() {
    let _shared = not_measuring().await;
    let grpc = Received::default();
    let grpc_endpoint = grpc_receiver(grpc.clone()).await;
    let http = Received::default();
    let http_endpoint = http_receiver(http.clone()).await;
    let secret = "api-key=s%3Dcr%2Ct, x-tenant = acme%20eu";
    let setups = [
        // gRPC metadata; the per-signal variable wins over the generic one.
        from_vars(
            "headers-grpc",
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc_endpoint),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-generic=1"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", secret),
            ],
        ),
        // HTTP headers, from the generic variable.
        from_vars(
            "headers-http",
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &http_endpoint),
                ("OTEL_EXPORTER_OTLP_HEADERS", secret),
            ],
        ),
    ];
    for obs in &setups {
        let addr = serve(users().layer(obs.layer())).await;
        assert_eq!(call(&format!("http://{addr}/users/1"), &[]).await, 200);
        assert!(obs.flush_traces(Duration::from_secs(5)));
    }
    for (name, received) in [("grpc", &grpc), ("http", &http)] {
        let calls = received.headers();
        assert!(!calls.is_empty(), "{name}: no export arrived");
        for headers in calls {
            assert_eq!(headers["api-key"], "s=cr,t", "{name}");
            assert_eq!(headers["x-tenant"], "acme eu", "{name}");
            assert!(headers.get("x-generic").is_none(), "{name}");
        }
    }
    // A header that cannot be sent is an error naming the variable, not a silent loss.
    let err = Observability::from_env_with("bad", |k| {
        (k == "OTEL_EXPORTER_OTLP_HEADERS").then(|| "api key=x".to_owned())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{err}");
}

// Flushing blocks this thread: the receivers run on the runtime's other workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_flush_and_shutdown_deliver_under_a_long_schedule_delay() {
    let _shared = not_measuring().await;
    let received = Received::default();
    let endpoint = grpc_receiver(received.clone()).await;
    // Ten minutes between timed exports, and batches larger than this test sends: nothing
    // leaves unless flush or shutdown sends it.
    let obs = from_vars(
        "patient",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    let addr = serve(users().layer(obs.layer())).await;
    for id in 1..=3 {
        assert_eq!(call(&format!("http://{addr}/users/{id}"), &[]).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.count(), 0, "nothing is sent before the delay");
    let start = Instant::now();
    assert!(obs.flush_traces(Duration::from_secs(5)));
    assert_eq!(received.count(), 3, "flush returns once the spans are out");
    assert!(start.elapsed() < Duration::from_secs(2));

    for id in 4..=5 {
        assert_eq!(call(&format!("http://{addr}/users/{id}"), &[]).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received.count(), 3);
    assert!(obs.shutdown(Duration::from_secs(5)));
    assert_eq!(received.count(), 5, "shutdown sends what is queued");
    let paths: std::collections::BTreeSet<_> = received
        .spans()
        .iter()
        .filter_map(|(_, span)| attr(span, "url.path"))
        .collect();
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert_eq!(counter(&obs, EXPORTED), 5.0);
    assert_eq!(counter(&obs, DROPPED), 0.0);
    // After shutdown the exporter is gone: flushing says so instead of hanging.
    assert!(!obs.flush_traces(Duration::from_millis(200)));
}

// Flushing blocks this thread: the receivers run on the runtime's other workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_names_the_service_and_spans_carry_the_client_address() {
    let _shared = not_measuring().await;
    let received = Received::default();
    let endpoint = http_receiver(received.clone()).await;
    let obs = from_vars(
        "fallback-name",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "checkout-api"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=overridden,service.version=2.4.1,\
                 deployment.environment.name=prod%20eu,team=payments",
            ),
        ],
    );
    // axum's ConnectInfo gives the layer the peer's address.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = users().layer(obs.layer());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    // A raw connection, so the test knows the client's port.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = socket.local_addr().unwrap();
    socket
        .write_all(b"GET /users/5 HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(obs.flush_traces(Duration::from_secs(5)));

    let (service, span) = received.named("GET /users/{id}").expect("the span");
    assert_eq!(service, "checkout-api", "OTEL_SERVICE_NAME wins");
    assert_eq!(attr(&span, "client.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(&span, "client.port"), Some(local.port().to_string()));
    assert_eq!(attr(&span, "server.address").as_deref(), Some("shop"));
    let resource = received.resources().remove(0);
    for (key, want) in [
        ("service.name", "checkout-api"),
        ("service.version", "2.4.1"),
        ("deployment.environment.name", "prod eu"),
        ("team", "payments"),
        ("telemetry.sdk.language", "rust"),
    ] {
        assert_eq!(resource.get(key).map(String::as_str), Some(want), "{key}");
    }
    assert!(obs.shutdown(Duration::from_secs(5)));

    // Set in code, the builder's identity is the resource's.
    let received = Received::default();
    let endpoint = http_receiver(received.clone()).await;
    let obs = isolated("inventory")
        .service_version("9.1.0")
        .environment("staging")
        .otlp(tower_observability::trace::OtlpSettings {
            endpoint: Some(format!("{endpoint}/v1/traces")),
            ..Default::default()
        })
        .build()
        .unwrap();
    let addr = serve(users().layer(obs.layer())).await;
    assert_eq!(call(&format!("http://{addr}/users/1"), &[]).await, 200);
    assert!(obs.flush_traces(Duration::from_secs(5)));
    let resource = received.resources().remove(0);
    for (key, want) in [
        ("service.name", "inventory"),
        ("service.version", "9.1.0"),
        ("deployment.environment.name", "staging"),
    ] {
        assert_eq!(resource.get(key).map(String::as_str), Some(want), "{key}");
    }
    // Without ConnectInfo there is no client address to record.
    let (_, span) = received.named("GET /users/{id}").unwrap();
    assert_eq!(attr(&span, "client.address"), None);
}

/// A processor of the application's own whose flush takes its time.
#[derive(Debug)]
struct SlowFlush(Duration);

impl opentelemetry_sdk::trace::SpanProcessor for SlowFlush {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}
    fn on_end(&self, _span: opentelemetry_sdk::trace::SpanData) {}
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        std::thread::sleep(self.0);
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

#[test]
fn flushing_a_users_processor_keeps_to_the_timeout() {
    let _shared = MEASURING.blocking_read();
    let slow = isolated("slow")
        .span_processor(SlowFlush(Duration::from_secs(3)))
        .build()
        .unwrap();
    let start = Instant::now();
    assert!(!slow.flush_traces(Duration::from_millis(200)));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(1),
        "flush took {took:?}"
    );
    let quick = isolated("quick")
        .span_processor(SlowFlush(Duration::from_millis(10)))
        .build()
        .unwrap();
    assert!(quick.flush_traces(Duration::from_secs(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_span_for_a_non_tower_client_is_exported_as_the_downstream_parent() {
    let _shared = not_measuring().await;
    let received = Received::default();
    let endpoint = http_receiver(received.clone()).await;
    let vars = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ];
    let backend_obs = from_vars("stock", &vars);
    let backend = Router::new()
        .route("/stock/{id}", get(|| async { "12" }))
        .route(
            "/gone/{id}",
            get(|| async { (http::StatusCode::NOT_FOUND, "no") }),
        )
        .layer(backend_obs.layer());
    let backend_addr = serve(backend).await;

    // The frontend calls with a client that is not a tower service (a plain hyper client
    // standing in for reqwest): the adapter opens the span, the call carries it.
    let frontend_obs = from_vars("shop", &vars);
    let outbound = frontend_obs.client_layer();
    let frontend = Router::new()
        .route(
            "/product",
            get(move || {
                let outbound = outbound.clone();
                async move {
                    let mut statuses = Vec::new();
                    for path in ["stock/1", "gone/2"] {
                        let url: http::Uri =
                            format!("http://{backend_addr}/{path}").parse().unwrap();
                        let span = outbound.outbound(&http::Method::GET, &url);
                        let mut req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
                        span.inject(req.headers_mut());
                        match client().request(req).await {
                            Ok(res) => {
                                statuses.push(res.status().as_u16());
                                span.finish(res.status());
                            }
                            Err(_) => span.fail(),
                        }
                    }
                    // A span dropped unended was a call given up on.
                    let url: http::Uri = "http://127.0.0.1:9/never".parse().unwrap();
                    drop(outbound.outbound(&http::Method::POST, &url));
                    format!("{statuses:?}")
                }
            }),
        )
        .layer(frontend_obs.layer());
    let frontend_addr = serve(frontend).await;
    assert_eq!(
        call(&format!("http://{frontend_addr}/product"), &[]).await,
        200
    );
    assert!(backend_obs.flush_traces(Duration::from_secs(5)));
    assert!(frontend_obs.flush_traces(Duration::from_secs(5)));

    let spans = received.spans();
    let (_, page) = received
        .named("GET /product")
        .expect("frontend server span");
    let clients: Vec<&Span> = spans
        .iter()
        .filter(|(svc, s)| svc == "shop" && s.kind == SpanKind::Client as i32)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(clients.len(), 3, "{spans:#?}");
    for (server_name, status, error) in [
        ("GET /stock/{id}", "200", None),
        ("GET /gone/{id}", "404", Some("404")),
    ] {
        let (svc, server) = received.named(server_name).expect("backend server span");
        assert_eq!(svc, "stock");
        // The downstream span's parent is an exported client span of the same trace...
        let parent = clients
            .iter()
            .find(|c| c.span_id == server.parent_span_id)
            .unwrap_or_else(|| panic!("{server_name}: its parent was not exported"));
        assert_eq!(parent.trace_id, page.trace_id);
        assert_eq!(server.trace_id, page.trace_id);
        // ... itself the child of the frontend's server span.
        assert_eq!(parent.parent_span_id, page.span_id);
        assert_eq!(parent.name, "GET");
        assert_eq!(
            attr(parent, "http.response.status_code").as_deref(),
            Some(status)
        );
        assert_eq!(attr(parent, "error.type").as_deref(), error);
        assert!(attr(parent, "url.full")
            .unwrap()
            .starts_with(&format!("http://{backend_addr}/")));
    }
    let abandoned = clients
        .iter()
        .find(|c| c.name == "POST")
        .expect("the dropped span");
    assert_eq!(attr(abandoned, "error.type").as_deref(), Some("cancelled"));
    assert!(frontend_obs.shutdown(Duration::from_secs(5)));
    assert!(backend_obs.shutdown(Duration::from_secs(5)));
}
