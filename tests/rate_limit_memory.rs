//! A flood from 1,000,000 distinct client addresses through the layer: the limiter's memory
//! stays under its stated cap (`max_keys` x `BYTES_PER_KEY`), counted exactly by a
//! counting allocator.

#[path = "../benches/support/alloc.rs"]
mod alloc;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use tower::{service_fn, ServiceExt};
use tower_observability::rate_limit::{Policy, RateLimit, BYTES_PER_KEY};
use tower_observability::{MetricsBackend, Observability, SecurityHeaders};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const MAX_KEYS: usize = 250_000;

#[tokio::test(flavor = "current_thread")]
async fn a_million_distinct_addresses_stay_under_the_key_cap() {
    let obs = Observability::builder("flood")
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .tracing(false)
        .security_headers(SecurityHeaders::none())
        // An hour per request: no key expires during the flood, every one stays live.
        .rate_limit(RateLimit::new(Policy::new("per-client", "1/h")).max_keys(MAX_KEYS))
        .build()
        .unwrap();
    let service = tower::Layer::layer(
        &obs.layer(),
        service_fn(|_req: http::Request<_>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }),
    );
    let request = |i: u32| {
        let mut req = http::Request::get("/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        // 1,000,000 addresses from 10.0.0.0 on: every one a new client.
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        req.extensions_mut().insert(SocketAddr::from((ip, 40000)));
        req
    };
    // The first request registers the label sets; count from there.
    service.clone().oneshot(request(2_000_000)).await.unwrap();
    let before = alloc::live_bytes();
    let mut admitted = 0u32;
    for i in 0..1_000_000 {
        let res = service.clone().oneshot(request(i)).await.unwrap();
        admitted += u32::from(res.status() == 200);
    }
    let grown = alloc::live_bytes() - before;
    eprintln!("1,000,000 distinct addresses, cap {MAX_KEYS} keys: the heap grew by {grown} bytes");
    assert_eq!(admitted, 1_000_000, "every new client has its burst");
    // The cap, rounded up to a power of two per shard (64 shards).
    let per_shard = MAX_KEYS.div_ceil(64).next_power_of_two();
    let cap = (per_shard * 64 * BYTES_PER_KEY) as i64;
    assert!(
        grown <= cap,
        "the limiter grew the heap by {grown} bytes for 1,000,000 keys; the cap is {cap}"
    );
    // And it did fill up to it: the flood is four times the cap.
    assert!(grown > cap / 2, "grew only {grown} of {cap}");
}
