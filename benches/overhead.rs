//! Per-request cost of the layer against a bare axum JSON service, measured in the same run.
//!
//! `cargo bench --bench overhead` times every scenario with criterion; compare medians as
//! ratios to `bare`. For instruction counts (stable on a noisy machine) run
//! `scripts/instructions.sh`, which runs this binary under callgrind with
//! `OVERHEAD_SCENARIO=<name> OVERHEAD_REQUESTS=<n>` at two request counts and subtracts,
//! so start-up cost cancels out.

use std::hint::black_box;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use criterion::{criterion_group, Criterion};
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_observability::{MetricsBackend, Observability};

async fn user(Path(id): Path<u64>) -> Json<Value> {
    Json(json!({ "id": id, "name": "Ada Lovelace", "roles": ["admin", "author"] }))
}

/// The application every scenario shares: a small axum JSON service.
fn app() -> Router {
    Router::new().route("/users/{id}", get(user))
}

/// Every scenario: a name and the router it serves. `bare` first: the others are read
/// as ratios to it.
fn scenarios() -> Vec<(&'static str, Router)> {
    let metrics = Observability::builder("bench")
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .build()
        .expect("bench configuration is valid");
    // Keep the layer's state alive for the whole process.
    let metrics = Box::leak(Box::new(metrics));
    vec![("bare", app()), ("metrics", app().layer(metrics.layer()))]
}

/// One request through the router, body read to the end (the layer records at the end).
async fn one_request(router: &Router) {
    let req = Request::get("/users/42")
        .header("user-agent", "bench")
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap();
    black_box(body);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn overhead(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("per_request");
    for (name, router) in scenarios() {
        group.bench_function(name, |b| b.iter(|| rt.block_on(one_request(&router))));
    }
    group.finish();
}

criterion_group!(benches, overhead);

/// Load mode: serve one scenario over HTTP/1.1 on `addr` with a one-worker runtime, for
/// `scripts/load.sh` to drive with wrk from another core.
fn serve(name: &str, addr: &str) {
    let (_, router) = scenarios()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no scenario {name:?}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        println!("serving {name} on {}", listener.local_addr().unwrap());
        axum::serve(listener, router).await.unwrap();
    });
}

fn main() {
    if std::env::var_os("OVERHEAD_LIST").is_some() {
        scenarios().iter().for_each(|(name, _)| println!("{name}"));
        return;
    }
    if let (Ok(name), Ok(addr)) = (
        std::env::var("OVERHEAD_SERVE"),
        std::env::var("OVERHEAD_ADDR"),
    ) {
        return serve(&name, &addr);
    }
    // Instruction-count mode: run one scenario a fixed number of times and exit.
    if let Ok(name) = std::env::var("OVERHEAD_SCENARIO") {
        let requests: u64 = std::env::var("OVERHEAD_REQUESTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000);
        let (_, router) = scenarios()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no scenario {name:?}"));
        let rt = runtime();
        rt.block_on(async {
            // One warm-up request registers the label set, as in a running service.
            one_request(&router).await;
            for _ in 0..requests {
                one_request(&router).await;
            }
        });
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
