//! Security headers and CORS: a JSON API that one browser origin may call with credentials;
//! every response carries the hardened headers, preflights are answered by the layer and
//! refusals are counted.
//!
//! `cargo run --example cors`, then the `curl` lines it prints. `CORS_ADDR` and
//! `CORS_ADMIN_ADDR` move it (defaults 127.0.0.1:3000 and 127.0.0.1:9464).

#[path = "common/listen.rs"]
mod listen;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_observability::{Cors, Observability, SecurityHeaders};

async fn profile() -> Json<Value> {
    Json(json!({ "user": "ada" }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let obs = Observability::from_env("profile-api")?
        // The default preset, written out: the OWASP values for a JSON API.
        .security_headers(SecurityHeaders::api())
        .cors(
            Cors::allow_origins(["https://app.example.com"])
                .allow_methods(["GET", "PUT"])
                .allow_headers(["content-type"])
                .allow_credentials(true),
        )
        .build()?; // an invalid policy (credentials with `*`, a path in an origin) fails here
    let app = Router::new()
        .route("/profile", get(profile).put(profile))
        .layer(obs.layer());
    let admin = listen::serve_admin(&obs, "CORS_ADMIN_ADDR", "127.0.0.1:9464");
    let listener = listen::listen("CORS_ADDR", "127.0.0.1:3000").await;
    let (addr, admin_addr) = (listener.local_addr()?, admin.local_addr());

    println!("cors: service on http://{addr}, admin on http://{admin_addr}");
    println!("  (listen elsewhere: CORS_ADDR=host:port CORS_ADMIN_ADDR=host:port)");
    println!("try:");
    println!("  curl -i 'http://{addr}/profile'   # the security headers on every response");
    println!(
        "  curl -i -X OPTIONS 'http://{addr}/profile' -H 'Origin: https://app.example.com' \
         -H 'Access-Control-Request-Method: PUT'   # a preflight, granted"
    );
    println!(
        "  curl -i -X OPTIONS 'http://{addr}/profile' -H 'Origin: https://evil.example' \
         -H 'Access-Control-Request-Method: PUT'   # refused: no grant headers"
    );
    println!(
        "  curl -s 'http://{admin_addr}/metrics' | grep cors_refused   # the refusal, counted"
    );
    println!("Ctrl-C stops it.");

    axum::serve(listener, app)
        .with_graceful_shutdown(obs.shutdown_signal())
        .await?;
    Ok(())
}
