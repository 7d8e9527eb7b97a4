//! The Sentry event of a failed request names the trace it belongs to: its `trace` context
//! holds the trace and span ids of the server span exported with OTLP, so Sentry links to
//! the trace, for a 5xx, a panic and an inner service's error alike; and the span, the
//! metrics and the event agree on what happened. A real OTLP HTTP/protobuf receiver and a
//! Sentry envelope endpoint, both on 127.0.0.1, configured by the standard variables.

mod support;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::Value;
use support::caller::{CALLER, TRACE, TRACEPARENT};
use support::env::from_vars;
use support::otlp_receiver::{attr, hex, OtlpReceiver};
use support::requests::request;
use support::sentry_endpoint::SentryEndpoint;
use support::sentry_events::{events, for_transaction};
use support::*;
use tower_observability::ObservabilityBuilder;

/// A layer configured by the standard variables to export to a fresh OTLP HTTP/protobuf
/// receiver and report to a fresh Sentry endpoint.
async fn linked(name: &str) -> (ObservabilityBuilder, OtlpReceiver, SentryEndpoint) {
    let otlp = OtlpReceiver::http().await;
    let sentry = SentryEndpoint::start().await;
    let dsn = sentry.dsn();
    let vars = otlp.vars(&[("OTEL_BSP_SCHEDULE_DELAY", "50"), ("SENTRY_DSN", &dsn)]);
    (from_vars(name, &vars), otlp, sentry)
}

/// The event and the exported span of `transaction`, once the event's trace context is
/// checked to name that span.
fn event_and_span<'a>(
    events: &'a [Value],
    otlp: &OtlpReceiver,
    transaction: &str,
) -> (&'a Value, Span) {
    let event = for_transaction(events, transaction);
    let (_, span) = otlp
        .named(transaction)
        .unwrap_or_else(|| panic!("no span for {transaction}"));
    let trace = &event["contexts"]["trace"];
    assert_eq!(trace["trace_id"], hex(&span.trace_id), "{transaction}");
    assert_eq!(trace["span_id"], hex(&span.span_id), "{transaction}");
    (event, span)
}

/// Waits for exactly `n` events and for `n` exported spans; returns the events.
async fn reported(sentry: &SentryEndpoint, otlp: &OtlpReceiver, n: usize) -> Vec<Value> {
    let events = events(sentry, n).await;
    assert_eq!(events.len(), n, "{events:#?}");
    otlp.wait_for(n).await;
    events
}

#[tokio::test]
async fn the_events_trace_id_is_the_exported_spans() {
    let (builder, otlp, sentry) = linked("linked").await;
    let obs = builder.build().unwrap();
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
    let traced = [("traceparent", TRACEPARENT)];
    let fail = request(&client, "GET", &format!("http://{addr}/fail"), &traced).await;
    assert_eq!(fail.status, 502);
    let (status, _) = send(&client, "GET", &format!("http://{addr}/fresh"), b"").await;
    assert_eq!(status, 500);

    let events = reported(&sentry, &otlp, 2).await;
    for (name, inherited) in [("GET /fail", true), ("GET /fresh", false)] {
        let (event, _) = event_and_span(&events, &otlp, name);
        let trace = &event["contexts"]["trace"];
        assert_eq!(trace["op"], "http.server");
        if inherited {
            assert_eq!(trace["trace_id"], TRACE, "the caller's trace continues");
        }
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
    let (builder, otlp, sentry) = linked("failing").await;
    let obs = builder
        .route_fn(|head| (head.uri.path() == "/ledger").then(|| "/ledger".into()))
        .build()
        .unwrap();

    // A panicking handler, continuing the caller's trace.
    let app = Router::new()
        .route("/stock", get(|| async { handler_that_panics() }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let traced = [("traceparent", TRACEPARENT)];
    let stock = request(&client(), "GET", &format!("http://{addr}/stock"), &traced).await;
    assert_eq!(stock.status, 500);

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

    let events = reported(&sentry, &otlp, 2).await;
    for (name, error_type, inherited) in [
        ("GET /stock", "panic", true),
        ("POST /ledger", "service_error", false),
    ] {
        let (event, span) = event_and_span(&events, &otlp, name);
        let trace = &event["contexts"]["trace"];
        if inherited {
            assert_eq!(trace["trace_id"], TRACE, "the caller's trace continues");
            assert_eq!(hex(&span.parent_span_id), CALLER);
        }
        // The span, the metric and the event say the same.
        assert_eq!(
            attr(&span, "error.type").as_deref(),
            Some(error_type),
            "{name}"
        );
        assert_eq!(
            span.status.as_ref().map(|s| s.code),
            Some(SpanStatus::Error as i32),
            "{name}"
        );
        assert_eq!(
            attr(&span, "http.response.status_code").as_deref(),
            Some("500")
        );
        assert_eq!(event["tags"]["error.type"], error_type, "{name}");
        assert_eq!(event["tags"]["status"], "500", "{name}");
    }
    let panic_event = for_transaction(&events, "GET /stock");
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
    let (builder, otlp, sentry) = linked("head").await;
    let obs = builder.build().unwrap();
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
    let uri = format!("http://{addr}/stock");
    let res = request(&client, "GET", &uri, &[("x-request-id", "order-7")]).await;
    assert_eq!(res.status, 500);
    assert_eq!(res.headers["x-request-id"], "order-7");

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
    let span = eventually(Duration::from_secs(10), || otlp.named("HEAD /fail"))
        .await
        .expect("the HEAD request's span")
        .1;
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
