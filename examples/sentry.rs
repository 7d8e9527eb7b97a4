//! Error reporting: every server error (a 5xx, a panic, a failed inner service) becomes a
//! Sentry event carrying the route, the request (scrubbed of secrets) and the trace id, with
//! the breadcrumbs the handler left.
//!
//! Point `SENTRY_DSN` at a Sentry that speaks plain HTTP (a Relay beside the service, a
//! self-hosted Sentry, or `python3 scripts/telemetry-sink.py`, which prints what it gets):
//!
//! ```text
//! SENTRY_DSN=http://public@127.0.0.1:9000/1 cargo run --example sentry --features sentry
//! curl -i 'http://127.0.0.1:3000/orders/7/refund?token=abc'
//! ```
//!
//! `SENTRY_EXAMPLE_ADDR` moves it (default 127.0.0.1:3000); `SENTRY_ENVIRONMENT`,
//! `SENTRY_RELEASE` and `SENTRY_SAMPLE_RATE` apply.

#[path = "common/listen.rs"]
mod listen;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tower_observability::sentry_core::{add_breadcrumb, Breadcrumb};
use tower_observability::Observability;

/// A handler that fails after leaving a breadcrumb: the event carries it, and only this
/// request's event (each request has its own hub).
async fn refund(Path(id): Path<u64>) -> (StatusCode, &'static str) {
    add_breadcrumb(Breadcrumb {
        category: Some("payments".into()),
        message: Some(format!("refund of order {id} asked of the bank")),
        ..Default::default()
    });
    (StatusCode::BAD_GATEWAY, "the bank did not answer\n")
}

async fn panics() -> &'static str {
    panic!("the sentry example's /panic route panics on purpose")
}

async fn order(Path(id): Path<u64>) -> String {
    format!("order {id}\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("SENTRY_DSN").is_none() {
        eprintln!(
            "sentry: SENTRY_DSN is not set, so nothing is reported; e.g. run \
             `python3 scripts/telemetry-sink.py` and SENTRY_DSN=http://public@127.0.0.1:9000/1"
        );
    }
    let obs = Observability::from_env("payments")?.build()?;
    let app = Router::new()
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/refund", post(refund).get(refund))
        .route("/panic", get(panics))
        .layer(obs.layer());
    let listener = listen::listen("SENTRY_EXAMPLE_ADDR", "127.0.0.1:3000").await;
    let addr = listener.local_addr()?;

    println!("sentry: service on http://{addr}");
    println!("  (listen elsewhere: SENTRY_EXAMPLE_ADDR=host:port)");
    println!("try:");
    println!("  curl -i 'http://{addr}/orders/7'                       # a 200: no event");
    println!(
        "  curl -i 'http://{addr}/orders/7/refund?token=abc' -H 'Authorization: Bearer s3cret'"
    );
    println!("      # a 502: an event with a breadcrumb; the token and the Authorization header stay here");
    println!("  curl -i 'http://{addr}/panic'                          # a panic: an event with its backtrace, a 500");
    println!("Ctrl-C stops it.");

    axum::serve(listener, app)
        .with_graceful_shutdown(obs.shutdown_signal())
        .await?;
    Ok(()) // `obs` dropped here: the events still queued leave first
}
