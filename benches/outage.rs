//! The service `scripts/outage.sh` loads: a failing route (`GET /fail` answers 500, so every
//! request is a Sentry event and a span) behind the layer, configured by the environment
//! (`SENTRY_DSN`, `OTEL_EXPORTER_OTLP_*`, `OTEL_TRACES_EXPORTER=none`), on one tokio worker,
//! as `OUTAGE_ADDR` says. Not a criterion bench: a server for wrk, built with the bench
//! profile (`cargo bench -p tower-observability-benches --bench outage --no-run`).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_observability::Observability;

async fn fail() -> (http::StatusCode, Json<Value>) {
    (
        http::StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "the payment provider did not answer" })),
    )
}

fn main() {
    let addr = std::env::var("OUTAGE_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let obs = Observability::from_env("outage")
            .expect("valid environment")
            .build()
            .expect("valid configuration");
        let app = Router::new().route("/fail", get(fail)).layer(obs.layer());
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        println!("serving on {}", listener.local_addr().unwrap());
        axum::serve(listener, app)
            .with_graceful_shutdown(obs.shutdown_signal())
            .await
            .unwrap();
    });
}
