//! Per-request cost of the layer against a bare axum JSON service, measured in the same run.
//!
//! `cargo bench --bench overhead` times every scenario with criterion; compare medians as
//! ratios to `bare`. For instruction counts (stable on a noisy machine) run
//! `scripts/instructions.sh`, which runs this binary under callgrind with
//! `OVERHEAD_SCENARIO=<name> OVERHEAD_REQUESTS=<n>` at two request counts and subtracts,
//! so start-up cost cancels out. Scenarios of optional features (`metrics+sentry`) exist
//! when the bench is built with them (`--all-features`, as the script does).

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
use tower_observability::{
    Cors, MetricsBackend, Observability, ObservabilityBuilder, SecurityHeaders,
};

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
    let ours = |b: ObservabilityBuilder| -> &'static Observability {
        let obs = b
            .metrics_backend(MetricsBackend::IsolatedPrometheus)
            .build()
            .expect("bench configuration is valid");
        // Keep the layer's state alive for the whole process.
        Box::leak(Box::new(obs))
    };
    // Tracing is on by default: off here, so these scenarios keep measuring what they name.
    let metrics = ours(
        Observability::builder("bench")
            .security_headers(SecurityHeaders::none())
            .tracing(false),
    );
    let headers_cors = ours(
        Observability::builder("bench")
            .cors(policy())
            .tracing(false),
    );
    // The two halves of the policy alone, to see what each costs.
    let headers = ours(Observability::builder("bench").tracing(false));
    let cors = ours(
        Observability::builder("bench")
            .security_headers(SecurityHeaders::none())
            .cors(policy())
            .tracing(false),
    );
    let tracing = ours(tracing_builder());
    let _ = TRACING.set(tracing);
    #[allow(unused_mut)]
    let mut scenarios = vec![
        ("bare", app()),
        ("metrics", app().layer(metrics.layer())),
        ("metrics+headers+cors", app().layer(headers_cors.layer())),
        ("metrics+tracing", app().layer(tracing.layer())),
        ("metrics+headers", app().layer(headers.layer())),
        ("metrics+cors", app().layer(cors.layer())),
        ("peer-metrics", peers::metrics(app())),
        ("peer-headers+cors", peers::headers_cors(app())),
    ];
    #[cfg(feature = "sentry")]
    {
        // A DSN set, no errors: the happy path pays for the per-request hub only. Nothing
        // is sent, so the port needs no listener.
        let sentry = ours(
            Observability::builder("bench")
                .security_headers(SecurityHeaders::none())
                .tracing(false)
                .sentry_dsn("http://public@127.0.0.1:9/1"),
        );
        scenarios.push(("metrics+sentry", app().layer(sentry.layer())));
    }
    scenarios
}

/// The metrics+tracing layer, flushed at the end of an instruction count.
static TRACING: std::sync::OnceLock<&'static Observability> = std::sync::OnceLock::new();

/// Metrics and tracing: every request sampled, its span captured and queued for an
/// exporter that drops it (built with `--features otlp`; without it nothing is queued).
fn tracing_builder() -> ObservabilityBuilder {
    let builder = Observability::builder("bench")
        .security_headers(SecurityHeaders::none())
        .sampler(tower_observability::trace::Sampler::AlwaysOn);
    // A queue no run fills: under callgrind the exporter thread is scheduled rarely, and
    // spans dropped for a full queue would make the count look cheaper than it is.
    #[cfg(feature = "otlp")]
    let builder = builder.span_exporter(DropExporter).batch_settings(
        tower_observability::trace::BatchSettings {
            max_queue_size: 1 << 20,
            ..Default::default()
        },
    );
    builder
}

/// An exporter that drops every batch: the cost measured is the layer's, not a network's.
#[cfg(feature = "otlp")]
#[derive(Debug)]
struct DropExporter;

#[cfg(feature = "otlp")]
impl opentelemetry_sdk::trace::SpanExporter for DropExporter {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// The CORS policy every CORS scenario applies: one allowlisted origin, credentials.
fn policy() -> Cors {
    Cors::allow_origins([ORIGIN])
        .allow_credentials(true)
        .allow_methods([http::Method::GET, http::Method::POST])
        .allow_headers([http::header::CONTENT_TYPE])
}

const ORIGIN: &str = "https://app.example.com";

/// What service authors assemble from crates.io today for the same features.
mod peers {
    use axum::Router;
    use http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    use tower_http::set_header::SetResponseHeaderLayer;

    /// axum-prometheus, the most used metrics layer for axum.
    pub(super) fn metrics(app: Router) -> Router {
        let (layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
        app.layer(layer)
    }

    /// tower-http's CorsLayer with the same allowlist, and six header layers with the
    /// values of our `api()` preset.
    pub(super) fn headers_cors(app: Router) -> Router {
        let set = |name: &'static str, value: &'static str| {
            SetResponseHeaderLayer::if_not_present(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )
        };
        app.layer(set(
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ))
        .layer(set("x-content-type-options", "nosniff"))
        .layer(set("x-frame-options", "DENY"))
        .layer(set(
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .layer(set("referrer-policy", "no-referrer"))
        .layer(set("cache-control", "no-store"))
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list([HeaderValue::from_static(super::ORIGIN)]))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE]),
        )
    }
}

/// One request through the router, body read to the end (the layer records at the end).
async fn one_request(router: &Router) {
    let req = Request::get("/users/42")
        .header("user-agent", "bench")
        .header("origin", ORIGIN)
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
    // Some peer layers spawn tasks when built.
    let _guard = rt.enter();
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (_, router) = scenarios()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no scenario {name:?}"));
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        println!("serving {name} on {}", listener.local_addr().unwrap());
        axum::serve(listener, router).await.unwrap();
    });
}

fn main() {
    if std::env::var_os("OVERHEAD_LIST").is_some() {
        let rt = runtime();
        let _guard = rt.enter();
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
        let rt = runtime();
        let _guard = rt.enter();
        let (_, router) = scenarios()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no scenario {name:?}"));
        rt.block_on(async {
            // One warm-up request registers the label set, as in a running service.
            one_request(&router).await;
            for _ in 0..requests {
                one_request(&router).await;
            }
        });
        // Every span the run queued is converted and exported before counting stops, so
        // the exporter thread's work is in the count, in proportion to the requests.
        if let Some(obs) = TRACING.get() {
            assert!(obs.flush_traces(std::time::Duration::from_secs(600)));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
