//! Per-request cost of the layer against a bare axum JSON service, measured in the same run.
//!
//! `cargo bench -p tower-observability-benches --bench overhead` times every scenario with
//! criterion; compare medians as ratios to `bare`. For instruction counts (stable on a noisy
//! machine) run `scripts/instructions.sh`, which runs this binary under callgrind with
//! `OVERHEAD_SCENARIO=<name> OVERHEAD_REQUESTS=<n>` at two request counts and subtracts,
//! so start-up cost cancels out. Scenarios of optional features (`metrics+sentry`) exist
//! when the bench is built with them (the benches package's default, and `--all-features`,
//! as the script does).

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
use tower_observability::rate_limit::{Policy, RateLimit};
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

/// Builds our layer with an isolated registry, kept alive for the whole process.
fn ours(builder: ObservabilityBuilder) -> &'static Observability {
    let obs = builder
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .build()
        .expect("bench configuration is valid");
    Box::leak(Box::new(obs))
}

/// Ours, with our layer on the app.
fn layered(obs: &'static Observability) -> Scenario {
    app().layer(obs.layer()).into()
}

/// Ours on `builder`, requests carrying their peer address.
fn with_peer(builder: ObservabilityBuilder) -> Scenario {
    let mut scenario = layered(ours(builder));
    scenario.peer = true;
    scenario
}

/// Ours, with tracing off: the scenarios that keep measuring only what they name.
fn untraced() -> ObservabilityBuilder {
    Observability::builder("bench").tracing(false)
}

/// A scenario's name and how to build it.
type Entry = (&'static str, fn() -> Scenario);

/// Every scenario, by name, and how to build it: only the one measured is built, so an
/// instruction count never includes another scenario's set-up. `bare` first: the others
/// are read as ratios to it.
fn catalogue() -> Vec<Entry> {
    #[allow(unused_mut)]
    let mut list: Vec<Entry> = vec![
        ("bare", || app().into()),
        ("metrics", || {
            layered(ours(untraced().security_headers(SecurityHeaders::none())))
        }),
        ("metrics+headers+cors", || {
            layered(ours(untraced().cors(policy())))
        }),
        // The peer stack's policy exactly: its six headers (`api()` sends ten) and CORS.
        ("metrics+six-headers+cors", || {
            layered(ours(
                untraced().security_headers(six_headers()).cors(policy()),
            ))
        }),
        // The two halves of the policy alone, to see what each costs.
        ("metrics+headers", || layered(ours(untraced()))),
        ("metrics+cors", || {
            layered(ours(
                untraced()
                    .security_headers(SecurityHeaders::none())
                    .cors(policy()),
            ))
        }),
        // Native histograms on the duration histograms, beside the classic buckets.
        ("metrics+native", || {
            layered(ours(
                untraced()
                    .security_headers(SecurityHeaders::none())
                    .native_histograms(tower_observability::NativeHistograms::default()),
            ))
        }),
        ("metrics+tracing", || {
            let builder = Observability::builder("bench").security_headers(SecurityHeaders::none());
            traced(builder, Export::Dropped)
        }),
        // What any layer costs through `Router::layer` that changes the body types, as
        // ours must to see the bytes: axum boxes the re-typed bodies and the route futures.
        ("floor/retyped-bodies", || {
            use tower::ServiceBuilder;
            app()
                .layer(
                    ServiceBuilder::new()
                        .map_request(|req: Request<Body>| req.map(|b| b.map_err(|e| e)))
                        .map_response(|res: http::Response<Body>| res.map(|b| b.map_err(|e| e))),
                )
                .into()
        }),
        // Rate limiting per client address, in memory, over `metrics/peer`: the same layer
        // and the same requests (carrying their peer address), without the limiter. The
        // quota is never reached: this is what every admitted request pays.
        ("metrics/peer", || {
            with_peer(untraced().security_headers(SecurityHeaders::none()))
        }),
        ("metrics+rate-limit", || {
            with_peer(
                untraced()
                    .security_headers(SecurityHeaders::none())
                    .rate_limit(RateLimit::new(Policy::new("per-client", "1000000000/s"))),
            )
        }),
        // tower-governor on the same app, per peer IP, the quota never reached either.
        ("peer-governor", || {
            let mut scenario: Scenario = peers::governor(app()).into();
            scenario.peer = true;
            scenario
        }),
        ("peer-metrics", || peers::metrics(app()).into()),
        ("peer-headers+cors", || peers::headers_cors(app()).into()),
        ("peer-all", peer_all::all),
    ];
    // The same limit shared through Redis, when the caller started a redis-server and named
    // it in `OVERHEAD_REDIS_URL`: one round trip per request.
    #[cfg(feature = "redis")]
    if std::env::var_os("OVERHEAD_REDIS_URL").is_some() {
        list.push(("metrics+rate-limit/redis", || {
            let url = std::env::var("OVERHEAD_REDIS_URL").expect("OVERHEAD_REDIS_URL");
            with_peer(
                untraced()
                    .security_headers(SecurityHeaders::none())
                    .rate_limit(
                        RateLimit::new(Policy::new("per-client", "1000000000/s")).redis(url),
                    ),
            )
        }));
    }
    #[cfg(feature = "sentry")]
    list.push(("metrics+sentry", || {
        // A DSN set, no errors: the happy path pays for the per-request hub only. Nothing
        // is sent, so the port needs no listener.
        layered(ours(
            untraced()
                .security_headers(SecurityHeaders::none())
                .sentry(tower_observability::Sentry::dsn(DSN_DOWN)),
        ))
    }));
    #[cfg(feature = "otlp")]
    list.push(("metrics+tracing/sdk", || {
        let builder = Observability::builder("bench").security_headers(SecurityHeaders::none());
        traced(builder, Export::SdkDropped)
    }));
    #[cfg(all(feature = "sentry", feature = "otlp"))]
    {
        // Every feature on, the same policy as the peer stack.
        list.push(("all", || traced(every_feature(), Export::Dropped)));
        list.push(("all/sdk", || traced(every_feature(), Export::SdkDropped)));
        // A collector that is up: `OVERHEAD_OTLP_UP`, a receiver in another process, so its
        // work is not counted; the scripts start one (`scripts/otlp-sink.py`); without it
        // the scenario is left out. It must cost what `all` costs, within noise.
        if let Ok(endpoint) = std::env::var("OVERHEAD_OTLP_UP") {
            let _ = UP.set(endpoint);
            list.push(("all/otlp-up", || traced(every_feature(), Export::Up)));
        }
    }
    list
}

/// Every feature on, the same policy as the peer stack (tracing added by [`traced`]).
#[cfg(all(feature = "sentry", feature = "otlp"))]
fn every_feature() -> ObservabilityBuilder {
    Observability::builder("bench")
        .cors(policy())
        .sentry(tower_observability::Sentry::dsn(DSN_DOWN))
}

/// The collector that is up, when the scripts started one.
#[cfg(feature = "otlp")]
static UP: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A Sentry DSN whose port nothing listens on.
#[cfg(feature = "sentry")]
const DSN_DOWN: &str = "http://public@127.0.0.1:9/1";

/// One benchmarked service: its router and, for the peer stack, the tracing subscriber it
/// needs (set for its requests only, so it never sees ours).
struct Scenario {
    router: Router,
    dispatch: Option<tracing::Dispatch>,
    /// Whether requests carry the peer address, as `into_make_service_with_connect_info`
    /// gives them (what a limit per client address reads).
    peer: bool,
}

impl From<Router> for Scenario {
    fn from(router: Router) -> Self {
        Scenario {
            router,
            dispatch: None,
            peer: false,
        }
    }
}

impl Scenario {
    /// Runs `f` with this scenario's subscriber, if it has one.
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, f),
            None => f(),
        }
    }
}

fn find(name: &str) -> Scenario {
    let (_, make) = catalogue()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no scenario {name:?}"));
    make()
}

/// Layers whose queued spans an instruction count flushes before it stops, and whether
/// the flush must succeed (it cannot with the collector down).
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
type Flushed = (&'static Observability, bool);
static FLUSHED: std::sync::Mutex<Vec<Flushed>> = std::sync::Mutex::new(Vec::new());

#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
fn flushed(obs: &'static Observability, must_succeed: bool) -> &'static Observability {
    FLUSHED.lock().unwrap().push((obs, must_succeed));
    obs
}

/// For instruction counts, a queue no run fills: under callgrind the exporter thread is
/// scheduled rarely, and spans dropped for a full queue would make the count look cheaper
/// than it is. Under load (`OVERHEAD_SERVE`), the crate's defaults, as in production: a
/// full queue drops and counts, and a collector that is down never piles spans up.
#[cfg(feature = "otlp")]
fn big_queue() -> tower_observability::trace::BatchSettings {
    if std::env::var_os("OVERHEAD_SERVE").is_some() {
        return Default::default();
    }
    tower_observability::trace::BatchSettings {
        max_queue_size: 1 << 20,
        ..Default::default()
    }
}

/// Where a traced scenario's spans go.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
enum Export {
    /// The crate's OTLP exporter, to a collector that is down (a closed port): every span
    /// is encoded and its batch dropped, which is what "an exporter that drops" is here.
    Dropped,
    /// A user's SDK `SpanExporter` that drops every batch (each span becomes `SpanData`),
    /// as the peer stack's exporter does.
    SdkDropped,
    /// The crate's OTLP exporter, to the collector that is up ([`UP`]).
    Up,
}

/// Our layer with tracing on `builder`: every request sampled, its span captured and
/// queued for the exporter `export` says (built without `otlp`, nothing is queued). An
/// instruction count flushes the queue before it stops, so the exporter thread's work is
/// counted in full.
fn traced(builder: ObservabilityBuilder, export: Export) -> Scenario {
    let builder = builder.sampler(tower_observability::trace::Sampler::AlwaysOn);
    #[cfg(feature = "otlp")]
    {
        use tower_observability::trace::{OtlpProtocol, OtlpSettings};
        let otlp = |endpoint: &str| OtlpSettings {
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: Some(endpoint.to_owned()),
            timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        };
        let builder = builder.batch_settings(big_queue());
        let (builder, must_flush) = match export {
            Export::Dropped => (builder.otlp(otlp("http://127.0.0.1:9/v1/traces")), false),
            Export::SdkDropped => (builder.span_exporter(DropExporter), true),
            Export::Up => (builder.otlp(otlp(UP.get().expect("collector up"))), true),
        };
        layered(flushed(ours(builder), must_flush))
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = export;
        layered(ours(builder))
    }
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

/// The six headers the peer stack sets with `SetResponseHeaderLayer`s, `api()` values.
fn six_headers() -> SecurityHeaders {
    PEER_HEADERS
        .iter()
        .fold(SecurityHeaders::none(), |h, (name, value)| {
            h.header(*name, *value)
        })
}

/// The peer stack's security headers: six of the ten `api()` sends.
const PEER_HEADERS: [(&str, &str); 6] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// The CORS policy every CORS scenario applies: one allowlisted origin, credentials.
fn policy() -> Cors {
    Cors::allow_origins([ORIGIN])
        .allow_credentials(true)
        .allow_methods([http::Method::GET, http::Method::POST])
        .allow_headers([http::header::CONTENT_TYPE])
}

const ORIGIN: &str = "https://app.example.com";

/// The client every request with a peer address comes from.
const PEER: std::net::SocketAddr = std::net::SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)),
    40000,
);

/// What service authors assemble from crates.io today for the same features.
mod peers {
    use std::sync::OnceLock;

    use axum::Router;
    use http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    use tower_http::set_header::SetResponseHeaderLayer;

    /// tower-governor, the most used rate limiter for axum: per peer IP, in memory, with
    /// a quota the bench never reaches.
    pub(super) fn governor(app: Router) -> Router {
        use tower_governor::governor::GovernorConfigBuilder;
        use tower_governor::GovernorLayer;
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .finish()
            .expect("a valid governor configuration");
        app.layer(GovernorLayer::new(std::sync::Arc::new(config)))
    }

    /// axum-prometheus, the most used metrics layer for axum.
    /// It installs a global recorder, which can happen once per process: every scenario
    /// using it shares the one layer.
    pub(super) fn metrics(app: Router) -> Router {
        static LAYER: OnceLock<axum_prometheus::PrometheusMetricLayer<'static>> = OnceLock::new();
        let layer = LAYER.get_or_init(|| axum_prometheus::PrometheusMetricLayer::pair().0);
        app.layer(layer.clone())
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
        let app = super::PEER_HEADERS
            .iter()
            .fold(app, |app, (name, value)| app.layer(set(name, value)));
        app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list([HeaderValue::from_static(super::ORIGIN)]))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE]),
        )
    }
}

/// The whole peer stack: tower-http's TraceLayer with W3C extraction feeding
/// tracing-opentelemetry (every request sampled, an exporter that drops), axum-prometheus,
/// tower-http's CorsLayer and six header layers, and sentry-tower's two layers with a
/// transport that drops.
mod peer_all {
    use std::sync::Arc;

    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use tower_http::trace::TraceLayer;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Debug)]
    struct DropExporter;

    impl SpanExporter for DropExporter {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            std::hint::black_box(batch);
            Ok(())
        }
    }

    struct Headers<'a>(&'a http::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    struct DropTransport;

    impl sentry_core::Transport for DropTransport {
        fn send_envelope(&self, envelope: sentry_core::Envelope) {
            std::hint::black_box(envelope);
        }
    }

    pub(super) fn all() -> super::Scenario {
        let app = super::app();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(DropExporter)
            .build();
        let tracer = provider.tracer("peer");
        std::mem::forget(provider);
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer)),
        );
        let mut options = sentry_core::ClientOptions::default();
        options.dsn = "http://public@127.0.0.1:9/1".parse().ok();
        options.transport = Some(Arc::new(|_: &sentry_core::ClientOptions| {
            Arc::new(DropTransport) as Arc<dyn sentry_core::Transport>
        }));
        let client = sentry_core::Client::from(options);
        sentry_core::Hub::main().bind_client(Some(Arc::new(client)));
        let trace = TraceLayer::new_for_http().make_span_with(|req: &http::Request<_>| {
            let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
            let span = tracing::info_span!(
                "request",
                otel.kind = "server",
                http.request.method = %req.method(),
                url.path = req.uri().path(),
                http.response.status_code = tracing::field::Empty,
            );
            let _ = span.set_parent(parent);
            span
        });
        let app = super::peers::headers_cors(super::peers::metrics(app))
            .layer(trace)
            .layer(sentry_tower::SentryHttpLayer::new().enable_transaction())
            .layer(sentry_tower::NewSentryLayer::<
                http::Request<axum::body::Body>,
            >::new_from_top());
        super::Scenario {
            router: app,
            dispatch: Some(dispatch),
            peer: false,
        }
    }
}

/// One request through the router, body read to the end (the layer records at the end).
async fn one_request(scenario: &Scenario) {
    let mut req = Request::get("/users/42")
        .header("user-agent", "bench")
        .header("origin", ORIGIN)
        .body(Body::empty())
        .unwrap();
    if scenario.peer {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(PEER));
    }
    let res = scenario.router.clone().oneshot(req).await.unwrap();
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
    for (name, make) in catalogue() {
        let scenario = make();
        group.bench_function(name, |b| {
            b.iter(|| scenario.with(|| rt.block_on(one_request(&scenario))))
        });
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
    let scenario = find(name);
    if let Some(dispatch) = &scenario.dispatch {
        // Worker threads are not this thread: the peer's subscriber is the global one here.
        let _ = tracing::dispatcher::set_global_default(dispatch.clone());
    }
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        println!("serving {name} on {}", listener.local_addr().unwrap());
        if scenario.peer {
            let make = scenario
                .router
                .into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, make).await.unwrap();
        } else {
            axum::serve(listener, scenario.router).await.unwrap();
        }
    });
}

fn main() {
    if std::env::var_os("OVERHEAD_LIST").is_some() {
        let rt = runtime();
        let _guard = rt.enter();
        catalogue().iter().for_each(|(name, _)| println!("{name}"));
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
        let scenario = find(&name);
        scenario.with(|| {
            rt.block_on(async {
                // One warm-up request registers the label set, as in a running service.
                one_request(&scenario).await;
                for _ in 0..requests {
                    one_request(&scenario).await;
                }
            })
        });
        // Every span the run queued is converted and exported before counting stops, so
        // the exporter thread's work is in the count, in proportion to the requests.
        for (obs, must_succeed) in FLUSHED.lock().unwrap().iter() {
            let flushed = obs.flush_traces(std::time::Duration::from_secs(600));
            assert!(flushed || !must_succeed, "spans were left unexported");
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
