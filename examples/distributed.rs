//! Distributed tracing: a frontend calls a backend through the client layer; both export
//! their spans with OTLP, and one request shows up as one trace across both services.
//!
//! Run an OTLP receiver (the monitoring stack's collector and Jaeger, or
//! `python3 scripts/telemetry-sink.py`, which prints the spans it gets), then:
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example distributed --features otlp,logging
//! curl -i 'http://127.0.0.1:3000/checkout/42'
//! ```
//!
//! HTTP/protobuf on 4318 is the default protocol; `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` with
//! port 4317 switches to gRPC; every `OTEL_*` and `OBSERVABILITY_*` variable applies. Log
//! lines are JSON with `trace_id`, `span_id` and `request_id` (`OBSERVABILITY_LOG_FORMAT=text`
//! for text; `RUST_LOG` filters). Addresses: `FRONTEND_ADDR` (default 127.0.0.1:3000),
//! `BACKEND_ADDR` (default 127.0.0.1:3002, off Grafana's 3001 in the monitoring stack).

#[path = "common/listen.rs"]
mod listen;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tower::{Service, ServiceBuilder};
use tower_observability::logging::{self, LogFormat};
use tower_observability::{Observability, RequestContext};

/// The backend: prices an order.
async fn price(Path(id): Path<u64>) -> Json<Value> {
    tracing::info!(order = id, "pricing order");
    Json(json!({ "order": id, "total": 42.5 }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init(LogFormat::from_env())?;
    let back = listen::listen("BACKEND_ADDR", "127.0.0.1:3002").await;
    let front = listen::listen("FRONTEND_ADDR", "127.0.0.1:3000").await;
    let (back_addr, front_addr) = (back.local_addr()?, front.local_addr()?);

    // Two services in one process for the example; each has its own name and exporter.
    let backend_obs = Observability::from_env("backend")?.build()?;
    let backend = Router::new()
        .route("/price/{id}", get(price))
        .layer(backend_obs.layer());

    let frontend_obs = Observability::from_env("frontend")?.build()?;
    // Any tower HTTP client: the layer opens a client span and injects `traceparent`.
    let http = ServiceBuilder::new()
        .layer(frontend_obs.client_layer())
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let frontend = Router::new()
        .route(
            "/checkout/{id}",
            get(move |Path(id): Path<u64>, ctx: RequestContext| {
                let mut http = http.clone();
                async move {
                    tracing::info!(order = id, "checking out");
                    let req = http::Request::get(format!("http://{back_addr}/price/{id}"))
                        .body(Full::new(Bytes::new()))
                        .expect("a valid request");
                    let res = http.call(req).await.map_err(|e| {
                        tracing::error!(error = %e, "backend unreachable");
                        StatusCode::BAD_GATEWAY
                    })?;
                    let body = res
                        .into_body()
                        .collect()
                        .await
                        .map_err(|_| StatusCode::BAD_GATEWAY)?;
                    let price: Value = serde_json::from_slice(&body.to_bytes())
                        .map_err(|_| StatusCode::BAD_GATEWAY)?;
                    Ok::<_, StatusCode>(Json(json!({
                        "price": price,
                        "trace_id": ctx.span.trace_id.to_string(),
                    })))
                }
            }),
        )
        .layer(frontend_obs.layer());

    println!("distributed: frontend on http://{front_addr}, backend on http://{back_addr}");
    println!("  (listen elsewhere: FRONTEND_ADDR=host:port BACKEND_ADDR=host:port)");
    println!("try:");
    println!("  curl -i 'http://{front_addr}/checkout/42'  # one trace, frontend and backend");
    println!("Ctrl-C stops it.");
    // Both stop on the same first SIGTERM or SIGINT.
    tokio::try_join!(
        axum::serve(back, backend).with_graceful_shutdown(backend_obs.shutdown_signal()),
        axum::serve(front, frontend).with_graceful_shutdown(frontend_obs.shutdown_signal()),
    )?;
    Ok(()) // both dropped here: what each still has queued is sent first
}
