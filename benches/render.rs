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

/// What Prometheus 2.x sends by default, and with native histograms on.
const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
const PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,text/plain;version=0.0.4;q=0.5";

/// 21 scrapes of `obs` asking for `accept`: median and max in ms, and the body's size.
fn scrape_times(
    rt: &tokio::runtime::Runtime,
    obs: &tower_observability::Observability,
    accept: &str,
) -> (f64, f64, usize) {
    let admin = obs.admin_service();
    let mut bytes = 0;
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            let req = http::Request::get("/metrics")
                .header("accept", accept)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = rt.block_on(admin.clone().oneshot(req)).unwrap();
            let elapsed = t.elapsed().as_secs_f64() * 1e3;
            bytes = http_body::Body::size_hint(res.body()).exact().unwrap_or(0) as usize;
            black_box(res);
            elapsed
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() - 1], bytes)
}

/// OTLP push of the population to a receiver on 127.0.0.1 (HTTP/protobuf): time per export
/// (encoding and sending, until the receiver answered) and bytes per export.
#[cfg(feature = "otlp")]
fn otlp_push(rt: &tokio::runtime::Runtime) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tower_observability::metrics::{MetricsPush, Temporality};
    use tower_observability::trace::OtlpSettings;

    // Bytes and requests of the export in progress (an export is split into requests).
    let received = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (sink, calls) = (received.clone(), requests.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/v1/metrics",
            axum::routing::post(move |body: Bytes| {
                sink.fetch_add(body.len(), Ordering::Relaxed);
                calls.fetch_add(1, Ordering::Relaxed);
                async { "" }
            }),
        )
        // The export of the population is tens of megabytes: take it whole.
        .layer(axum::extract::DefaultBodyLimit::disable());
    rt.spawn(async move { axum::serve(listener, app).await });
    for temporality in [Temporality::Cumulative, Temporality::Delta] {
        let obs = scale::builder()
            .otlp_metrics(MetricsPush {
                otlp: OtlpSettings {
                    endpoint: Some(format!("http://{addr}/v1/metrics")),
                    ..Default::default()
                },
                interval: Duration::from_secs(3600),
                temporality,
                ..Default::default()
            })
            .build()
            .unwrap();
        rt.block_on(scale::populate(&obs));
        // The push runs on its own thread; the receiver on this runtime, driven meanwhile.
        let mut times: Vec<f64> = (0..11)
            .map(|_| {
                received.store(0, Ordering::Relaxed);
                requests.store(0, Ordering::Relaxed);
                let t = Instant::now();
                let flushed = std::thread::scope(|s| {
                    let push = s.spawn(|| obs.flush_metrics(Duration::from_secs(60)));
                    rt.block_on(async {
                        while !push.is_finished() {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    });
                    push.join().unwrap()
                });
                assert!(flushed, "the receiver took the export");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "OTLP push ({temporality:?}) of the population: median {:.1} ms, max {:.1} ms per export, {} KiB in {} requests per export",
            times[times.len() / 2],
            times[times.len() - 1],
            received.load(Ordering::Relaxed) / 1024,
            requests.load(Ordering::Relaxed)
        );
        obs.shutdown(Duration::from_secs(10));
    }
}

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

    // The other formats, as a scraper asking for them gets them; protobuf with the
    // native buckets of a second population, recorded with native histograms on.
    let native = scale::builder()
        .native_histograms(tower_observability::NativeHistograms::default())
        .build()
        .unwrap();
    rt.block_on(scale::populate(&native));
    for (format, obs, accept) in [
        ("text", &empty, "text/plain"),
        ("OpenMetrics", &empty, OPENMETRICS),
        ("protobuf", &empty, PROTOBUF),
        ("protobuf + native", &native, PROTOBUF),
    ] {
        let (median, max, bytes) = scrape_times(&rt, obs, accept);
        println!(
            "GET /metrics as {format}: median {median:.1} ms, max {max:.1} ms, {} KiB",
            bytes / 1024
        );
    }
    #[cfg(feature = "otlp")]
    otlp_push(&rt);

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
    for (name, obs, accept) in [
        (
            "admin_metrics_openmetrics/15000_label_sets",
            &empty,
            OPENMETRICS,
        ),
        (
            "admin_metrics_protobuf_native/15000_label_sets",
            &native,
            PROTOBUF,
        ),
    ] {
        let admin = obs.admin_service();
        c.bench_function(name, |b| {
            b.iter(|| {
                let req = http::Request::get("/metrics")
                    .header("accept", accept)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                black_box(rt.block_on(admin.clone().oneshot(req)).unwrap())
            })
        });
    }
    c.bench_function("render_metrics/15000_label_sets", |b| {
        b.iter(|| black_box(empty.render_metrics()))
    });
    c.final_summary();
}
