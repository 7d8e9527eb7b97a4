//! A flood of distinct unmatched paths: 1,000,000 requests over 100,000 paths through an
//! axum router with the layer. Every path folds into `http_route="unmatched"`, so after
//! warm-up neither the heap nor resident memory may grow. A scrape every 100,000 requests
//! drains the histograms, as Prometheus does in production.
//!
//! `cargo bench -p tower-observability-benches --bench flood` prints heap and resident memory per checkpoint and exits
//! non-zero if the heap grew after warm-up. `FLOOD_REQUESTS` and `FLOOD_PATHS` scale it.

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/memory.rs"]
mod memory;

use std::hint::black_box;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_observability::{MetricsBackend, Observability, SecurityHeaders};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list`: nothing for a harness to enumerate.
        return;
    }
    let requests = env("FLOOD_REQUESTS", 1_000_000);
    let paths = env("FLOOD_PATHS", 100_000).max(1);
    let checkpoint = (requests / 10).max(1);

    let obs = Observability::builder("flood")
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .security_headers(SecurityHeaders::none())
        .tracing(false)
        .build()
        .expect("valid configuration");
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .layer(obs.layer());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Paths are distinct strings made per request, as a scanner's would be.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    println!(
        "{:>10} {:>12} {:>12} {:>8}",
        "requests", "heap KiB", "RSS KiB", "series"
    );
    let mut warm: Option<(i64, u64)> = None;
    let mut last = (0i64, 0u64);
    rt.block_on(async {
        for i in 0..requests {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let path = format!("/scan/{:x}/{}", x % paths as u64, i % 7);
            let req = Request::get(path).body(Body::empty()).unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 404);
            black_box(res.into_body().collect().await.unwrap());
            if (i + 1) % checkpoint == 0 {
                let text = obs.render_metrics();
                let series = text.lines().filter(|l| !l.starts_with('#')).count();
                drop(text);
                let (heap, rss) = (alloc::live_bytes(), memory::rss_bytes());
                println!(
                    "{:>10} {:>12} {:>12} {:>8}",
                    i + 1,
                    heap / 1024,
                    rss / 1024,
                    series
                );
                // The first checkpoint is warm-up: label sets registered, buffers grown.
                warm.get_or_insert((heap, rss));
                last = (heap, rss);
            }
        }
    });
    let (warm_heap, warm_rss) = warm.expect("at least one checkpoint");
    let heap_growth = last.0 - warm_heap;
    let rss_growth = last.1 as i64 - warm_rss as i64;
    println!(
        "after warm-up: heap {:+} KiB, RSS {:+} KiB over {} requests",
        heap_growth / 1024,
        rss_growth / 1024,
        requests - checkpoint
    );
    // Bounded, not exactly zero: histogram samples recorded since the last drain and
    // allocator slack come and go between checkpoints.
    assert!(
        heap_growth < 256 * 1024,
        "heap grew by {heap_growth} bytes after warm-up"
    );
}
