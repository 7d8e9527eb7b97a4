//! The demo: an axum service with the one layer, routes that show what it records (latency,
//! errors, a panic, a streamed body, a nested router, no route, a rate-limited route), and
//! its admin port.
//!
//! `cargo run --example quickstart` prints the addresses and the `curl` lines to try.
//! `QUICKSTART_ADDR` and `QUICKSTART_ADMIN_ADDR` move it (defaults `127.0.0.1:3000` and
//! `127.0.0.1:9464`); everything `Observability::from_env` reads applies. Traces and error
//! reports: `--features otlp,sentry` with `OTEL_EXPORTER_OTLP_ENDPOINT` and `SENTRY_DSN`
//! set (the README shows it with a local receiver, `scripts/telemetry-sink.py`).

#[path = "common/listen.rs"]
mod listen;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use tower_observability::rate_limit::{Policy, RateLimit};
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

async fn search() -> Json<Value> {
    Json(json!({ "results": [] }))
}

/// `/search` admits 5 requests a second per client (a burst of 5), answering the rest
/// with 429; `OBSERVABILITY_RATE_LIMIT` replaces it.
fn rate_limit() -> Option<RateLimit> {
    std::env::var_os("OBSERVABILITY_RATE_LIMIT")
        .is_none()
        .then(|| RateLimit::new(Policy::new("search", "5/s;burst=5").only_routes(["/search"])))
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
        .route("/search", get(search))
        .nest("/api/v1", api)
        .layer(obs.layer())
}

/// Where the traces and the error reports go, as this build and environment say.
fn signals() -> [(&'static str, String); 2] {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let traces = if !cfg!(feature = "otlp") {
        match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(_) => {
                "off: OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build lacks --features otlp"
            }
            None => "off: run with --features otlp and OTEL_EXPORTER_OTLP_ENDPOINT set",
        }
        .to_owned()
    } else {
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .unwrap_or_else(|| "http://localhost:4318 (the default)".into());
        format!("exported with OTLP to {endpoint}")
    };
    let errors = match (cfg!(feature = "sentry"), var("SENTRY_DSN")) {
        (false, None) => "off: run with --features sentry and SENTRY_DSN set".to_owned(),
        (false, Some(_)) => {
            "off: SENTRY_DSN is set, but this build lacks --features sentry".to_owned()
        }
        (true, None) => "off: SENTRY_DSN is not set".to_owned(),
        (true, Some(_)) => "reported to the Sentry of SENTRY_DSN (5xx, panics)".to_owned(),
    };
    [("traces", traces), ("errors", errors)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The crate's warnings on stderr: a collector or Sentry that cannot be reached, a
    // variable for a feature this build lacks.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut builder =
        Observability::from_env("quickstart")?.service_version(env!("CARGO_PKG_VERSION"));
    if let Some(limit) = rate_limit() {
        builder = builder.rate_limit(limit);
    }
    let obs = builder.build()?;
    let admin = listen::serve_admin(&obs, "QUICKSTART_ADMIN_ADDR", "127.0.0.1:9464");
    let listener = listen::listen("QUICKSTART_ADDR", "127.0.0.1:3000").await;
    let app_addr = listener.local_addr()?;
    let admin_addr = admin.local_addr();

    // The tests read this first line: keep its shape.
    println!("quickstart: service on http://{app_addr}, admin on http://{admin_addr}");
    println!("  (listen elsewhere: QUICKSTART_ADDR=host:port QUICKSTART_ADMIN_ADDR=host:port)");
    println!("signals:");
    println!("  metrics  curl 'http://{admin_addr}/metrics'");
    for (signal, state) in signals() {
        println!("  {signal:<7}  {state}");
    }
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
        let url = format!("'http://{app_addr}{path}'");
        println!("  curl -i {url:<40}  # {what}");
    }
    println!(
        "  curl -i -X POST --data hello 'http://{app_addr}/echo'  # request and response sizes"
    );
    println!(
        "  for i in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null -w '%{{http_code}} ' \
         'http://{app_addr}/search'; done; echo  # 5/s on /search: the last are 429"
    );
    println!("then:");
    println!("  curl 'http://{admin_addr}/metrics'");
    println!("  curl 'http://{admin_addr}/healthz' 'http://{admin_addr}/readyz'");
    println!("Ctrl-C (or SIGTERM) stops it: /readyz turns 503, requests in flight finish.");

    // With the peer address, which the rate limit keys on.
    let app = app(&obs).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(obs.shutdown_signal())
        .await?;
    Ok(()) // `obs` dropped here: the spans and error reports still queued leave first
}
