//! The README's quickstart, as written there (a test checks they are the same): an axum
//! service with the one layer, and its admin port serving `/metrics`. `ADDR` and
//! `ADMIN_ADDR` move it (defaults `0.0.0.0:3000` and `0.0.0.0:9464`).
//!
//! `cargo run --example minimal`, then `curl 'http://127.0.0.1:3000/users/7'` and
//! `curl 'http://127.0.0.1:9464/metrics'`.

use axum::{routing::get, Router};
use tower_observability::Observability;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let obs = Observability::from_env("checkout")?.build()?; // a bad setting is an error here
    let app = Router::new()
        .route("/users/{id}", get(|| async { "hello" }))
        .layer(obs.layer()); // metrics, traces, error reports, security headers, CORS

    // /metrics, /healthz and /readyz on a port of their own, for as long as the program runs
    let admin = obs
        .serve_admin(env_or("ADMIN_ADDR", "0.0.0.0:9464"))
        .map_err(|e| format!("{e}; set ADMIN_ADDR"))?;
    let addr = env_or("ADDR", "0.0.0.0:3000");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}; set ADDR"))?;
    println!(
        "serving on http://{}, metrics on http://{}/metrics",
        listener.local_addr()?,
        admin.local_addr()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(obs.shutdown_signal()) // SIGTERM, SIGINT: drain, flush
        .await?;
    Ok(()) // `obs` dropped here: what is still queued is sent first
}

/// The value of the environment variable `var`, else `default`.
fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}
