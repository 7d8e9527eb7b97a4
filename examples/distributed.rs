//! Distributed tracing: a frontend calls a backend through the client layer; both export
//! their spans with OTLP, and one request shows up as one trace across both services.
//!
//! Run a collector (or Jaeger) listening for OTLP, then:
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run --example distributed --features otlp,logging
//! curl -i localhost:3000/checkout/42
//! ```
//!
//! `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` (with port 4317) switches to gRPC; every `OTEL_*` and
//! `OBSERVABILITY_*` variable applies. Log lines are JSON with `trace_id`, `span_id` and
//! `request_id` (`OBSERVABILITY_LOG_FORMAT=text` for text; `RUST_LOG` filters). Addresses:
//! `FRONTEND_ADDR` (default 127.0.0.1:3000), `BACKEND_ADDR` (127.0.0.1:3001).

use std::net::SocketAddr;
use std::time::Duration;

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

fn addr(var: &str, default: &str) -> SocketAddr {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .parse()
        .unwrap_or_else(|e| panic!("{var}: {e}"))
}

/// The backend: prices an order.
async fn price(Path(id): Path<u64>) -> Json<Value> {
    tracing::info!(order = id, "pricing order");
    Json(json!({ "order": id, "total": 42.5 }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init(LogFormat::from_env())?;
    let (front_addr, back_addr) = (
        addr("FRONTEND_ADDR", "127.0.0.1:3000"),
        addr("BACKEND_ADDR", "127.0.0.1:3001"),
    );

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

    let back = tokio::net::TcpListener::bind(back_addr).await?;
    let front = tokio::net::TcpListener::bind(front_addr).await?;
    tracing::info!("try: curl -i http://{front_addr}/checkout/42");
    let servers =
        async { tokio::try_join!(axum::serve(back, backend), axum::serve(front, frontend)) };
    tokio::select! {
        result = servers => { result?; }
        _ = tokio::signal::ctrl_c() => {}
    }
    // Send what is still queued before exiting.
    frontend_obs.shutdown(Duration::from_secs(5));
    backend_obs.shutdown(Duration::from_secs(5));
    Ok(())
}
