//! `/metrics` at scale: 1,000 routes x 5 status codes x 3 methods, every label set reached
//! by a real request through the layer; then the time one scrape takes to render, and the
//! heap each series holds (counted exactly by a counting allocator).
//!
//! `cargo bench -p tower-observability-benches --bench render`

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/scale.rs"]
mod scale;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http_body_util::Full;
use tower::ServiceExt;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let empty = scale::observability();
    // One render first, so what every exposition carries (process metrics, target_info)
    // and the recorder's own buffers are in the baseline.
    black_box(empty.render_metrics());
    let before = alloc::live_bytes();
    let sent = rt.block_on(scale::populate(&empty));
    let text = empty.render_metrics();
    let series = scale::population_series(&text);
    let text_len = text.len();
    drop(text);
    let after = alloc::live_bytes();
    assert!(series > 0, "no populated series in the exposition");
    let per_label_set = (after - before) as f64 / scale::LABEL_SETS as f64;
    let per_series = (after - before) as f64 / series as f64;

    // A few wall-clock scrapes outside criterion, for the headline figure.
    let admin = empty.admin_service();
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            let req = http::Request::get("/metrics")
                .body(Full::new(Bytes::new()))
                .unwrap();
            black_box(rt.block_on(admin.clone().oneshot(req)).unwrap());
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "population: {sent} requests, {} label sets, {series} series lines, exposition {} KiB",
        scale::LABEL_SETS,
        text_len / 1024
    );
    println!(
        "heap held by the population: {:.1} MiB = {per_label_set:.0} bytes per label set \
         (3 histograms), {per_series:.0} bytes per exposition series line",
        (after - before) as f64 / (1024.0 * 1024.0)
    );
    println!(
        "GET /metrics: median {:.1} ms, max {:.1} ms over {} renders",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );

    let mut c = Criterion::default().sample_size(20).configure_from_args();
    // `/metrics` as the admin endpoint serves it (its buffer reused between scrapes), and
    // `render_metrics()`, which returns a new String each time.
    let admin = empty.admin_service();
    let scrape = || {
        let req = http::Request::get("/metrics")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = rt.block_on(admin.clone().oneshot(req)).unwrap();
        assert_eq!(res.status(), 200);
        black_box(res);
    };
    c.bench_function("admin_metrics/15000_label_sets", |b| b.iter(scrape));
    c.bench_function("render_metrics/15000_label_sets", |b| {
        b.iter(|| black_box(empty.render_metrics()))
    });
    c.final_summary();
}
