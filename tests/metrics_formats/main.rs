//! Metrics that lead to their traces, at full resolution, to any pipeline (issue 19),
//! against real parts on 127.0.0.1:
//! - `openmetrics`: the OpenMetrics exposition (the whole of it: the crate's histograms with
//!   exemplars, its counters, the application's own metrics, process metrics) parses with
//!   Python's `prometheus_client` OpenMetrics parser; exemplars point only to exported
//!   spans; the classic format stays what `promtool check metrics` accepts silently.
//! - `exemplars`: a real Prometheus with exemplar storage scrapes a service under traffic,
//!   and every exemplar `/api/v1/query_exemplars` returns is a span the OTLP receiver got.
//! - `native`: the same Prometheus with native histograms scrapes the protobuf format, and
//!   `histogram_quantile(0.99, ...)` on the native series agrees with the classic buckets'
//!   for a known latency mix, within the classic bucket, and is closer to the truth.
//! - `push`: OTLP metrics pushed to receivers (HTTP/protobuf and gRPC) decode with the
//!   official types, and their counts, buckets and sums equal `/metrics`, cumulative and
//!   delta.

#[path = "../support/mod.rs"]
mod support;

mod exemplars;
mod native;
mod openmetrics;
mod push;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use support::otlp_receiver::{self, OtlpReceiver};
use support::*;
use tower_observability::trace::{BatchSettings, OtlpProtocol, OtlpSettings};
use tower_observability::ObservabilityBuilder;

/// The Accept header Prometheus 2.42 sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The trace ids (hex) of every span `received` got.
fn trace_ids(received: &OtlpReceiver) -> HashSet<String> {
    received
        .spans()
        .iter()
        .map(|(_, span)| otlp_receiver::hex(&span.trace_id))
        .collect()
}

/// An OTLP/HTTP span receiver and the URL its spans go to.
async fn span_receiver() -> (OtlpReceiver, String) {
    let received = OtlpReceiver::http().await;
    let url = format!("{}/v1/traces", received.endpoint());
    (received, url)
}

/// `builder` exporting spans to `endpoint` (OTLP/HTTP), in batches that leave within 100 ms.
fn exporting(builder: ObservabilityBuilder, endpoint: &str) -> ObservabilityBuilder {
    builder
        .otlp(OtlpSettings {
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: Some(endpoint.to_owned()),
            timeout: Duration::from_secs(5),
            ..Default::default()
        })
        .batch_settings(BatchSettings {
            scheduled_delay: Duration::from_millis(100),
            ..Default::default()
        })
}

/// A service with a user route, a route sleeping `ms`, and a gRPC method (answered with
/// `grpc-status: 0` in the head, as a trailers-only response).
fn app() -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u32>| async move { format!("user {id}") }),
        )
        .route(
            "/sleep/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slept"
            }),
        )
        .route(
            "/demo.Greeter/SayHello",
            post(|| async {
                (
                    [("content-type", "application/grpc"), ("grpc-status", "0")],
                    "",
                )
            }),
        )
}

/// GET `uri` with `headers`; (status, content type, body).
async fn get_with(uri: &str, headers: &[(&str, &str)]) -> (u16, String, Bytes) {
    let mut req = http::Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client()
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        res.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// A gRPC call to the test app's method.
async fn grpc_call(app: std::net::SocketAddr) -> u16 {
    let req = http::Request::post(format!("http://{app}/demo.Greeter/SayHello"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let res = client().request(req).await.unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    status
}
