//! A flood of random paths and invented methods must not add series or memory.
//! (Its own test binary, so resident memory is this test's alone.)

mod support;

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use support::*;

/// A small deterministic generator: the test needs variety, not cryptography.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn token(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| (b'A' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

/// `paths` GETs of random paths (each a 404), then `methods` requests to `/` with invented
/// methods (each a 405).
async fn flood(addr: SocketAddr, rng: &mut XorShift, paths: usize, methods: usize) {
    let client = client();
    for _ in 0..paths {
        let path = format!("/{}/{}", rng.token(8), rng.next());
        let (status, _) = send(&client, "GET", &format!("http://{addr}{path}"), b"").await;
        assert_eq!(status, 404, "{path}");
    }
    for _ in 0..methods {
        let len = 3 + (rng.next() % 8) as usize;
        let method = rng.token(len);
        let (status, _) = send(&client, &method, &format!("http://{addr}/"), b"").await;
        assert_eq!(status, 405, "{method}");
    }
}

#[tokio::test]
async fn random_paths_and_methods_add_no_series_and_no_memory() {
    let obs = isolated("flood").build().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "root" }))
        .route("/users/{id}", get(|| async { "user" }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);

    // Warm-up: every label set the flood can reach, and the allocator's steady state.
    flood(addr, &mut rng, 2_000, 100).await;
    let series_before = series_count(&obs.render_metrics());
    let rss_before = rss_bytes();

    flood(addr, &mut rng, 10_000, 1_000).await;
    let after = obs.render_metrics();
    let series_after = series_count(&after);
    let rss_after = rss_bytes();

    assert_eq!(
        series_before, series_after,
        "series grew with random paths or methods"
    );
    assert_eq!(
        sample(
            &after,
            "http_server_request_duration_seconds_count",
            &[("http_route", "unmatched")]
        ),
        Some(12_000.0)
    );
    assert_eq!(
        sample(
            &after,
            "http_server_request_duration_seconds_count",
            &[("http_request_method", "_OTHER")]
        ),
        Some(1_100.0)
    );
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!(
        "series: {series_before} -> {series_after}; rss: {} KiB -> {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        grown < 4 * 1024 * 1024,
        "resident memory grew by {} KiB over 11,000 requests",
        grown / 1024
    );
}
