//! The in-memory limiter allocates nothing per admitted request: the same requests through
//! the same layer, with and without a limit per client address, make exactly as many
//! allocations (counted by a counting allocator; one test per binary, so nothing else runs).

#[path = "../benches/support/alloc.rs"]
mod alloc;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use tower::{service_fn, ServiceExt};
use tower_observability::rate_limit::{Policy, RateLimit};
use tower_observability::{MetricsBackend, Observability, ObservabilityBuilder};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// Allocations per request over `n` requests from one client, after a warm-up.
async fn allocations_per_request(builder: ObservabilityBuilder, n: i64) -> f64 {
    let obs = builder
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .build()
        .unwrap();
    let service = tower::Layer::layer(
        &obs.layer(),
        service_fn(|_req: http::Request<_>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }),
    );
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let one = || async {
        let mut req = http::Request::get("/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.extensions_mut().insert(peer);
        let res = service.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
    };
    for _ in 0..100 {
        one().await;
    }
    let before = alloc::allocations();
    for _ in 0..n {
        one().await;
    }
    (alloc::allocations() - before) as f64 / n as f64
}

#[tokio::test(flavor = "current_thread")]
async fn an_admitted_request_allocates_nothing_more() {
    let base = || Observability::builder("allocations").tracing(false);
    let without = allocations_per_request(base(), 50_000).await;
    let with = allocations_per_request(
        base().rate_limit(RateLimit::new(Policy::new("per-client", "1000000000/s"))),
        50_000,
    )
    .await;
    // Per request, exactly the same; in total at most a few one-off allocations (the
    // runtime's, a lazily made thread-local), far fewer than one per 10,000 requests.
    let extra = (with - without) * 50_000.0;
    assert!(
        with.floor() == without.floor() && extra.abs() < 5.0,
        "allocations per request: {with} with the limiter, {without} without"
    );
}
