//! Quickstart: an axum service with the one layer, and its admin port serving `/metrics`.
//!
//! Run with `cargo run --example quickstart`, then try the URLs it prints. Addresses can be
//! changed with `QUICKSTART_ADDR` and `QUICKSTART_ADMIN_ADDR`; everything `from_env` reads
//! (`OTEL_SERVICE_NAME`, `OBSERVABILITY_*`, ...) applies.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use tower_observability::Observability;

#[derive(serde::Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

async fn index() -> Json<Value> {
    Json(json!({ "service": "quickstart", "status": "ok" }))
}

async fn user(Path(id): Path<u64>) -> Result<Json<Value>, StatusCode> {
    if id == 0 {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(Json(json!({ "id": id, "name": format!("user-{id}") })))
}

/// Sleeps `ms` milliseconds (default 300, at most 5000) before answering.
async fn slow(Query(p): Query<SlowParams>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(p.ms.unwrap_or(300).min(5000))).await;
    "slow but fine\n"
}

async fn fail() -> (StatusCode, &'static str) {
    (StatusCode::INTERNAL_SERVER_ERROR, "something broke\n")
}

async fn panics() -> &'static str {
    panic!("the quickstart's /panic route panics on purpose")
}

/// Ten chunks, 50 ms apart: the recorded duration covers the whole stream (~500 ms).
async fn stream() -> Body {
    let chunks = futures_util::stream::unfold(0u32, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((
            Ok::<_, std::io::Error>(Bytes::from(format!("chunk {i}\n"))),
            i + 1,
        ))
    });
    Body::from_stream(chunks)
}

async fn echo(body: Bytes) -> Bytes {
    body
}

async fn item(Path(id): Path<String>) -> String {
    format!("item {id}\n")
}

fn app(obs: &Observability) -> Router {
    let api = Router::new().route("/items/{id}", get(item));
    Router::new()
        .route("/", get(index))
        .route("/users/{id}", get(user))
        .route("/slow", get(slow))
        .route("/fail", get(fail))
        .route("/panic", get(panics))
        .route("/stream", get(stream))
        .route("/echo", post(echo))
        .nest("/api/v1", api)
        .layer(obs.layer())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("QUICKSTART_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let admin_addr =
        std::env::var("QUICKSTART_ADMIN_ADDR").unwrap_or_else(|_| "127.0.0.1:9464".into());

    let obs = Observability::from_env("quickstart")?
        .service_version(env!("CARGO_PKG_VERSION"))
        .build()?;
    let admin = obs.serve_admin(&admin_addr)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app_addr = listener.local_addr()?;
    let admin_addr = admin.local_addr();

    println!("quickstart: service on http://{app_addr}, admin on http://{admin_addr}");
    println!("try:");
    for (what, path) in [
        ("JSON", "/"),
        ("a route with a parameter", "/users/42"),
        ("a 404 from the handler", "/users/0"),
        ("a nested router", "/api/v1/items/7"),
        ("300 ms of latency", "/slow"),
        ("2 s of latency", "/slow?ms=2000"),
        ("a 500", "/fail"),
        ("a panic, answered with a 500", "/panic"),
        ("a body streamed over ~500 ms", "/stream"),
        ("no route: recorded as unmatched", "/no/such/path"),
    ] {
        println!("  curl -i http://{app_addr}{path:<16}  # {what}");
    }
    println!("  curl -i -X POST --data hello http://{app_addr}/echo  # request and response sizes");
    println!("then:");
    println!("  curl http://{admin_addr}/metrics");
    println!("  curl http://{admin_addr}/healthz  http://{admin_addr}/readyz");

    let readiness = obs.readiness();
    axum::serve(listener, app(&obs))
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Tell load balancers to drain before the listener closes.
            readiness.set_ready(false);
            println!("shutting down");
        })
        .await?;
    admin.shutdown();
    Ok(())
}
