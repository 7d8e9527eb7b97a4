//! OTLP export against real receivers on 127.0.0.1: a tonic server implementing the
//! collector's TraceService, and an HTTP/protobuf endpoint. Spans arrive with the right
//! names, kinds, attributes and parents; one trace crosses two services; a collector that
//! is down or hangs costs requests nothing and its drops are counted; a JSON log line
//! written in a handler carries the exported span's trace id.

#[path = "../../examples/common/greeter.rs"]
mod greeter;
// The Greeter served behind a layer, as the gRPC tests serve it.
#[allow(dead_code)]
#[path = "../support/grpc.rs"]
mod grpc_support;
#[path = "../support/mod.rs"]
mod support;

mod propagation;
mod resilience;
mod semantics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::caller::{CALLER, TRACE, TRACEPARENT};
use support::env::from_vars;
use support::exposition::total;
use support::otlp_receiver::{attr, hex, OtlpReceiver};
use support::requests::request;
use support::*;
use tower::{Layer, Service, ServiceBuilder};
use tower_observability::logging::{self, LogFormat};
use tower_observability::Observability;
use tracing_subscriber::layer::SubscriberExt;

/// GET `uri` as the test's user agent, with these headers: the status.
async fn call(uri: &str, headers: &[(&str, &str)]) -> u16 {
    let mut all = vec![("user-agent", "otlp-test/1.0")];
    all.extend_from_slice(headers);
    request(&client(), "GET", uri, &all).await.status
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
