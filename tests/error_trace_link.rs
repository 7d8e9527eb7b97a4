//! The Sentry event of a failed request names the trace it belongs to: its `trace` context
//! holds the trace and span ids of the server span exported with OTLP, so Sentry links to
//! the trace, for a 5xx, a panic and an inner service's error alike; and the span, the
//! metrics and the event agree on what happened. A real OTLP HTTP/protobuf receiver and a
//! Sentry envelope endpoint, both on 127.0.0.1, configured by the standard variables.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::sentry_endpoint::SentryEndpoint;
use support::*;
use tower_observability::{MetricsBackend, Observability};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An HTTP/protobuf OTLP receiver; returns its base endpoint.
async fn otlp_receiver(spans: Arc<Mutex<Vec<Span>>>) -> String {
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let spans = spans.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                let mut spans = spans.lock().unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        spans.extend(ss.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    format!("http://{}", serve(app).await)
}

#[tokio::test]
async fn the_events_trace_id_is_the_exported_spans() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let otlp = otlp_receiver(spans.clone()).await;
    let sentry = SentryEndpoint::start().await;
    let vars: HashMap<&str, String> = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
        ("SENTRY_DSN", sentry.dsn()),
    ]
    .into_iter()
    .collect();
    let obs = Observability::from_env_with("linked", |k| vars.get(k).cloned())
        .unwrap()
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/fail", get(|| async { StatusCode::BAD_GATEWAY }))
        .route(
            "/fresh",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;
    let client = client();
    // One request continuing the caller's trace, one starting a new one.
    let req = http::Request::get(format!("http://{addr}/fail"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 502);
    let (status, _) = send(&client, "GET", &format!("http://{addr}/fresh"), b"").await;
    assert_eq!(status, 500);

    let events = eventually(Duration::from_secs(10), || {
        let events = sentry.events();
        (events.len() == 2).then_some(events)
    })
    .await
    .expect("two events");
    let exported = eventually(Duration::from_secs(10), || {
        let spans = spans.lock().unwrap().clone();
        (spans.len() >= 2).then_some(spans)
    })
    .await
    .expect("two exported server spans");

    for (name, inherited) in [("GET /fail", true), ("GET /fresh", false)] {
        let event = events
            .iter()
            .find(|e| e["transaction"] == name)
            .unwrap_or_else(|| panic!("no event for {name}"));
        let span = exported
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span for {name}"));
        let trace = &event["contexts"]["trace"];
        assert_eq!(trace["trace_id"], hex(&span.trace_id), "{name}");
        assert_eq!(trace["span_id"], hex(&span.span_id), "{name}");
        assert_eq!(trace["op"], "http.server");
        if inherited {
            assert_eq!(trace["trace_id"], TRACE, "the caller's trace continues");
        }
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?;
    match value.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn handler_that_panics() -> &'static str {
    panic!("stock went negative")
}

#[derive(Debug)]
struct LedgerDown;

impl std::fmt::Display for LedgerDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ledger unreachable")
    }
}

#[tokio::test]
async fn panics_and_inner_errors_carry_the_exported_spans_trace_and_all_signals_agree() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let otlp = otlp_receiver(spans.clone()).await;
    let sentry = SentryEndpoint::start().await;
    let vars: HashMap<&str, String> = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
        ("SENTRY_DSN", sentry.dsn()),
    ]
    .into_iter()
    .collect();
    let obs = Observability::from_env_with("failing", |k| vars.get(k).cloned())
        .unwrap()
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .route_fn(|head| (head.uri.path() == "/ledger").then(|| "/ledger".into()))
        .build()
        .unwrap();

    // A panicking handler, continuing the caller's trace.
    let app = Router::new()
        .route("/stock", get(|| async { handler_that_panics() }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let req = http::Request::get(format!("http://{addr}/stock"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client().request(req).await.unwrap().status(), 500);

    // An inner service's error, in a new trace.
    let service = tower::service_fn(|_req: http::Request<_>| async {
        Err::<http::Response<axum::body::Body>, _>(LedgerDown)
    });
    let layered = tower::Layer::layer(&obs.layer(), service);
    let req = http::Request::post("http://ledger.internal/ledger")
        .body(axum::body::Body::empty())
        .unwrap();
    let err = tower::ServiceExt::oneshot(layered, req).await.unwrap_err();
    assert_eq!(err.to_string(), "ledger unreachable");

    let events = eventually(Duration::from_secs(10), || {
        let events = sentry.events();
        (events.len() == 2).then_some(events)
    })
    .await
    .expect("two events");
    let exported = eventually(Duration::from_secs(10), || {
        let spans = spans.lock().unwrap().clone();
        (spans.len() >= 2).then_some(spans)
    })
    .await
    .expect("two exported server spans");

    for (name, error_type, inherited) in [
        ("GET /stock", "panic", true),
        ("POST /ledger", "service_error", false),
    ] {
        let event = events
            .iter()
            .find(|e| e["transaction"] == name)
            .unwrap_or_else(|| panic!("no event for {name}: {events:#?}"));
        let span = exported
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span for {name}"));
        let trace = &event["contexts"]["trace"];
        assert_eq!(trace["trace_id"], hex(&span.trace_id), "{name}");
        assert_eq!(trace["span_id"], hex(&span.span_id), "{name}");
        if inherited {
            assert_eq!(trace["trace_id"], TRACE, "the caller's trace continues");
            assert_eq!(hex(&span.parent_span_id), CALLER);
        }
        // The span, the metric and the event say the same.
        assert_eq!(
            attr(span, "error.type").as_deref(),
            Some(error_type),
            "{name}"
        );
        assert_eq!(
            span.status.as_ref().map(|s| s.code),
            Some(SpanStatus::Error as i32),
            "{name}"
        );
        assert_eq!(
            attr(span, "http.response.status_code").as_deref(),
            Some("500")
        );
        assert_eq!(event["tags"]["error.type"], error_type, "{name}");
        assert_eq!(event["tags"]["status"], "500", "{name}");
    }
    let panic_event = events
        .iter()
        .find(|e| e["transaction"] == "GET /stock")
        .unwrap();
    assert_eq!(panic_event["exception"]["values"][0]["type"], "panic");

    let text = obs.render_metrics();
    for (route, error_type) in [("/stock", "panic"), ("/ledger", "service_error")] {
        assert_eq!(
            sample(
                &text,
                "http_server_request_duration_seconds_count",
                &[
                    ("http_route", route),
                    ("error_type", error_type),
                    ("http_response_status_code", "500"),
                ],
            ),
            Some(1.0),
            "{route}: {text}"
        );
    }
    assert_eq!(
        sample(&text, "tower_observability_panics_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "http_server_active_requests", &[]),
        Some(0.0),
        "the gauge is back to 0 after the panic and the error"
    );
}

#[tokio::test]
async fn a_head_request_that_fails_is_a_5xx_in_metrics_span_and_sentry() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let otlp = otlp_receiver(spans.clone()).await;
    let sentry = SentryEndpoint::start().await;
    let vars: HashMap<&str, String> = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
        ("SENTRY_DSN", sentry.dsn()),
    ]
    .into_iter()
    .collect();
    let obs = Observability::from_env_with("head", |k| vars.get(k).cloned())
        .unwrap()
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance") }),
        )
        .route("/stock", get(|| async { handler_that_panics() }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let client = client();
    let (status, _) = send(&client, "HEAD", &format!("http://{addr}/fail"), b"").await;
    assert_eq!(status, 503);

    // The 500 a panic is answered with carries the request id like any response.
    let req = http::Request::get(format!("http://{addr}/stock"))
        .header("x-request-id", "order-7")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-request-id"], "order-7");

    let event = eventually(Duration::from_secs(10), || {
        let events = sentry.events();
        events
            .into_iter()
            .find(|e| e["transaction"] == "HEAD /fail")
    })
    .await
    .expect("an event for the HEAD request's 503");
    assert_eq!(event["tags"]["status"], "503");
    assert_eq!(event["tags"]["error.type"], "503");
    let span = eventually(Duration::from_secs(10), || {
        let spans = spans.lock().unwrap();
        spans.iter().find(|s| s.name == "HEAD /fail").cloned()
    })
    .await
    .expect("the HEAD request's span");
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(attr(&span, "error.type").as_deref(), Some("503"));
    assert_eq!(
        span.status.as_ref().map(|s| s.code),
        Some(SpanStatus::Error as i32)
    );
    let text = obs.render_metrics();
    let labels = [
        ("http_request_method", "HEAD"),
        ("http_route", "/fail"),
        ("http_response_status_code", "503"),
        ("error_type", "503"),
    ];
    assert_eq!(
        exact_sample(&text, "http_server_request_duration_seconds_count", &labels),
        Some(1.0),
        "{text}"
    );
}
