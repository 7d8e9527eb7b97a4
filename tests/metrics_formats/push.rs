//! OTLP metrics push to receivers on 127.0.0.1 (gRPC through tonic's generated service,
//! HTTP/protobuf through axum), decoded with the official `opentelemetry-proto` types: the
//! counts, buckets and sums equal what `/metrics` shows for the same traffic, cumulative
//! and delta; shutdown pushes a last time; a collector that is down or hangs costs requests
//! nothing and its failed exports are counted. An export larger than `max_request_bytes` goes
//! as several requests that add up to the scrape, over both protocols; in delta, an export
//! delivered in part is never counted twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::response::IntoResponse;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
use tower_observability::metrics::{MetricsPush, Temporality};
use tower_observability::{MetricsBackend, Observability};

use super::*;

/// Every export a receiver got, decoded.
#[derive(Clone, Default)]
struct Exports(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

impl Exports {
    fn all(&self) -> Vec<ExportMetricsServiceRequest> {
        self.0.lock().unwrap().clone()
    }
}

struct Grpc(Exports);

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0 .0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn grpc_receiver(exports: Exports) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(Grpc(exports)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

async fn http_receiver(exports: Exports) -> String {
    let app = Router::new().route(
        "/v1/metrics",
        post(move |body: Bytes| {
            let exports = exports.clone();
            async move {
                exports
                    .0
                    .lock()
                    .unwrap()
                    .push(ExportMetricsServiceRequest::decode(body).unwrap());
                (
                    [("content-type", "application/x-protobuf")],
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    format!("http://{}", serve(app).await)
}

/// An observability configured by these variables only (and a private registry).
fn from_vars(vars: &[(&str, &str)]) -> Observability {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Observability::from_env_with("pushed", move |k| vars.get(k).cloned())
        .unwrap()
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .build()
        .unwrap()
}

/// One label set of the request duration histogram: count, per-bucket counts, sum.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    count: u64,
    buckets: Vec<u64>,
    sum: f64,
}

/// The request duration points of an export, by route.
fn pushed(export: &ExportMetricsServiceRequest) -> BTreeMap<String, Point> {
    pushed_in(std::slice::from_ref(export))
}

/// The request duration points of the requests of one export, by route: the metric may be
/// cut into several (each with the resource, the name, the unit and the temporality), every
/// route in one of them.
fn pushed_in(requests: &[ExportMetricsServiceRequest]) -> BTreeMap<String, Point> {
    let mut points = BTreeMap::new();
    let mut temporality = None;
    for export in requests {
        let rm = &export.resource_metrics[0];
        let resource: HashMap<&str, String> = rm
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| (kv.key.as_str(), string(kv.value.as_ref())))
            .collect();
        assert_eq!(resource["service.name"], "pushed", "the spans' resource");
        for metric in rm
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "http.server.request.duration")
        {
            assert_eq!(metric.unit, "s");
            let Some(Data::Histogram(h)) = &metric.data else {
                panic!("an explicit-bucket histogram: {metric:?}")
            };
            assert_eq!(
                *temporality.get_or_insert(h.aggregation_temporality),
                h.aggregation_temporality
            );
            for p in &h.data_points {
                let p: &HistogramDataPoint = p;
                let route = p
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "http.route")
                    .map(|kv| string(kv.value.as_ref()))
                    .unwrap();
                let point = Point {
                    count: p.count,
                    buckets: p.bucket_counts.clone(),
                    sum: p.sum.unwrap(),
                };
                assert!(
                    points.insert(route.clone(), point).is_none(),
                    "{route} once per export"
                );
            }
        }
    }
    assert!(!points.is_empty(), "http.server.request.duration pushed");
    points
}

fn string(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The same points, read from `/metrics` (the classic format).
async fn scraped(admin: std::net::SocketAddr, routes: &[&str]) -> BTreeMap<String, Point> {
    let (_, _, body) = get_with(&format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let name = "http_server_request_duration_seconds";
    routes
        .iter()
        .map(|route| {
            let labels = [("http_route", *route)];
            let mut buckets = Vec::new();
            let mut previous = 0.0;
            for le in tower_observability::DEFAULT_DURATION_BUCKETS
                .iter()
                .map(|b| b.to_string())
                .chain(["+Inf".to_owned()])
            {
                let cumulative = sample(
                    &text,
                    &format!("{name}_bucket"),
                    &[labels[0], ("le", le.as_str())],
                )
                .unwrap();
                buckets.push((cumulative - previous) as u64);
                previous = cumulative;
            }
            let point = Point {
                count: sample(&text, &format!("{name}_count"), &labels).unwrap() as u64,
                buckets,
                sum: sample(&text, &format!("{name}_sum"), &labels).unwrap(),
            };
            (route.to_string(), point)
        })
        .collect()
}

async fn traffic(app: std::net::SocketAddr, users: u32, sleeps: u32) {
    for id in 0..users {
        get_with(&format!("http://{app}/users/{id}"), &[]).await;
    }
    for _ in 0..sleeps {
        get_with(&format!("http://{app}/sleep/30"), &[]).await;
    }
}

const ROUTES: [&str; 2] = ["/users/{id}", "/sleep/{ms}"];

/// Sums close enough: the text format prints the sum in decimal.
fn same(a: &BTreeMap<String, Point>, b: &BTreeMap<String, Point>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (route, p) in a {
        let q = &b[route];
        assert_eq!((p.count, &p.buckets), (q.count, &q.buckets), "{route}");
        assert!(
            (p.sum - q.sum).abs() < 1e-9,
            "{route}: {} vs {}",
            p.sum,
            q.sum
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_push_over_grpc_equals_the_scrape_and_shutdown_pushes_a_last_time() {
    let exports = Exports::default();
    let endpoint = grpc_receiver(exports.clone()).await;
    let obs = from_vars(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &endpoint),
        // Exports only when asked, so each one covers known traffic.
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
    ]);
    let app = serve(app().layer(obs.layer())).await;
    let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
    let admin = admin_server.local_addr();

    traffic(app, 7, 3).await;
    assert!(
        obs.flush_metrics(Duration::from_secs(10)),
        "the receiver took it"
    );
    let first = exports.all();
    assert_eq!(first.len(), 1);
    same(&pushed(&first[0]), &scraped(admin, &ROUTES).await);

    // More traffic: cumulative totals, still equal to the scrape; shutdown pushes them.
    traffic(app, 2, 1).await;
    assert!(obs.shutdown(Duration::from_secs(10)));
    let all = exports.all();
    assert_eq!(all.len(), 2, "shutdown pushed a last export");
    let last = pushed(&all[1]);
    assert_eq!(last["/users/{id}"].count, 9);
    same(&last, &scraped(admin, &ROUTES).await);
    // The crate's own counters and the process metrics come along, by their OTel names.
    let names: Vec<&str> = all[1].resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for name in [
        "http.server.active_requests",
        "http.server.response.body.size",
        "tower_observability.metric_exports",
        "process.cpu.time",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_push_over_http_adds_up_to_the_scrape() {
    let exports = Exports::default();
    let endpoint = http_receiver(exports.clone()).await;
    let obs = from_vars(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
    ]);
    let app = serve(app().layer(obs.layer())).await;
    let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
    let admin = admin_server.local_addr();

    traffic(app, 4, 2).await;
    assert!(obs.flush_metrics(Duration::from_secs(10)));
    let before = scraped(admin, &ROUTES).await;
    traffic(app, 3, 1).await;
    assert!(obs.flush_metrics(Duration::from_secs(10)));
    let after = scraped(admin, &ROUTES).await;
    let all = exports.all();
    assert_eq!(all.len(), 2);
    let (first, second) = (pushed(&all[0]), pushed(&all[1]));
    // The first delta is everything so far; the second, what the scrape grew by since.
    same(&first, &before);
    let grown: BTreeMap<String, Point> = after
        .iter()
        .map(|(route, p)| {
            let b = &before[route];
            let point = Point {
                count: p.count - b.count,
                buckets: p
                    .buckets
                    .iter()
                    .zip(&b.buckets)
                    .map(|(x, y)| x - y)
                    .collect(),
                sum: p.sum - b.sum,
            };
            (route.clone(), point)
        })
        .collect();
    same(&second, &grown);
    assert_eq!(second["/users/{id}"].count, 3);
    obs.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_or_hanging_costs_requests_nothing_and_failures_are_counted() {
    let hanging = hanging_endpoint().await;
    for endpoint in [
        format!("http://{}", closed_port()),
        format!("http://{hanging}"),
    ] {
        let obs = from_vars(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "300"),
            // Pushing all the time, while requests are served.
            ("OTEL_METRIC_EXPORT_INTERVAL", "20"),
        ]);
        let app = serve(app().layer(obs.layer())).await;
        let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
        let admin = admin_server.local_addr();
        let start = Instant::now();
        for id in 0..50 {
            let (status, _, _) = get_with(&format!("http://{app}/users/{id}"), &[]).await;
            assert_eq!(status, 200);
        }
        // Bounded by the loopback, not by the collector's 300 ms timeout.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{endpoint}: 50 requests took {:?}",
            start.elapsed()
        );
        assert!(!obs.flush_metrics(Duration::from_secs(5)), "{endpoint}");
        let (_, _, body) = get_with(&format!("http://{admin}/metrics"), &[]).await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        let failed = sample(
            &text,
            "tower_observability_metric_exports_failed_total",
            &[],
        )
        .unwrap();
        assert!(failed >= 1.0, "{endpoint}: failed exports counted");
        assert_eq!(
            sample(&text, "tower_observability_metric_exports_total", &[]),
            Some(0.0)
        );
        let started = Instant::now();
        assert!(!obs.shutdown(Duration::from_secs(2)));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "shutdown bounded"
        );
    }
}

/// Routes `/r0` .. `/r{n-1}`, each its own label set.
fn many_routes(n: usize) -> (Router, Vec<String>) {
    let mut router = Router::new();
    let mut routes = Vec::new();
    for i in 0..n {
        let route = format!("/r{i}");
        router = router.route(&route, get(|| async { "ok" }));
        routes.push(route);
    }
    (router, routes)
}

/// A service pushing to `endpoint` with requests of at most `max` bytes, on demand only.
fn pushing(
    protocol: OtlpProtocol,
    endpoint: &str,
    temporality: Temporality,
    max: usize,
    export_timeout: Duration,
) -> Observability {
    Observability::builder("pushed")
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .otlp_metrics(MetricsPush {
            otlp: OtlpSettings {
                protocol,
                endpoint: Some(endpoint.to_owned()),
                timeout: Duration::from_secs(5),
                ..Default::default()
            },
            interval: Duration::from_secs(3600),
            export_timeout,
            temporality,
            max_request_bytes: max,
        })
        .build()
        .unwrap()
}

/// 40 routes, 4 KiB requests: the duration histogram alone is three times that.
const MANY: usize = 40;
const SMALL_REQUESTS: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_export_goes_as_several_requests_that_add_up_to_the_scrape() {
    for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
        let exports = Exports::default();
        let endpoint = match protocol {
            OtlpProtocol::Grpc => grpc_receiver(exports.clone()).await,
            OtlpProtocol::HttpProtobuf => {
                format!("{}/v1/metrics", http_receiver(exports.clone()).await)
            }
        };
        let obs = pushing(
            protocol,
            &endpoint,
            Temporality::Cumulative,
            SMALL_REQUESTS,
            Duration::from_secs(10),
        );
        let (router, routes) = many_routes(MANY);
        let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
        let app = serve(router.layer(obs.layer())).await;
        let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
        let admin = admin_server.local_addr();

        let mut seen = 0;
        for round in 1..=2u64 {
            for route in &routes {
                get_with(&format!("http://{app}{route}"), &[]).await;
            }
            assert!(obs.flush_metrics(Duration::from_secs(10)), "{protocol:?}");
            let all = exports.all();
            let export = &all[seen..];
            seen = all.len();
            assert!(
                export.len() > 1,
                "{protocol:?}: {} request(s)",
                export.len()
            );
            for request in export {
                assert!(request.encoded_len() <= SMALL_REQUESTS);
            }
            let pushed = pushed_in(export);
            assert_eq!(pushed["/r0"].count, round);
            same(&pushed, &scraped(admin, &routes).await);
            // Exports are counted, not requests.
            let (_, _, body) = get_with(&format!("http://{admin}/metrics"), &[]).await;
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert_eq!(
                sample(&text, "tower_observability_metric_exports_total", &[]),
                Some(round as f64),
                "{protocol:?}"
            );
        }
        assert!(obs.shutdown(Duration::from_secs(10)));
    }
}

/// An HTTP/protobuf receiver taking a request when `take(call number)` says so (503
/// otherwise); returns its `/v1/metrics` URL.
async fn choosy_receiver(
    exports: Exports,
    take: impl Fn(usize) -> bool + Clone + Send + Sync + 'static,
) -> String {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = Router::new().route(
        "/v1/metrics",
        post(move |body: Bytes| {
            let exports = exports.clone();
            let calls = calls.clone();
            let take = take.clone();
            async move {
                let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if !take(call) {
                    // A collector shedding load: 503, and the pause it asks for.
                    return (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "1")],
                        Vec::new(),
                    )
                        .into_response();
                }
                exports
                    .0
                    .lock()
                    .unwrap()
                    .push(ExportMetricsServiceRequest::decode(body).unwrap());
                (
                    http::StatusCode::OK,
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
                    .into_response()
            }
        }),
    );
    format!("http://{}/v1/metrics", serve(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_requests_refused_midway_are_tried_again_and_never_counted_twice() {
    // The second request of the first export is refused once, with `Retry-After: 1`: tried
    // again after the pause asked for, taken; the export is whole.
    let exports = Exports::default();
    let endpoint = choosy_receiver(exports.clone(), |call| call != 1).await;
    let obs = pushing(
        OtlpProtocol::HttpProtobuf,
        &endpoint,
        Temporality::Delta,
        SMALL_REQUESTS,
        Duration::from_secs(10),
    );
    let (router, routes) = many_routes(MANY);
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let app = serve(router.layer(obs.layer())).await;
    let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
    let admin = admin_server.local_addr();
    for route in &routes {
        get_with(&format!("http://{app}{route}"), &[]).await;
    }
    let flushing = Instant::now();
    assert!(obs.flush_metrics(Duration::from_secs(10)));
    assert!(
        flushing.elapsed() >= Duration::from_secs(1),
        "the collector's Retry-After was honoured: {:?}",
        flushing.elapsed()
    );
    let all = exports.all();
    assert!(all.len() > 1);
    same(&pushed_in(&all), &scraped(admin, &routes).await);
    obs.shutdown(Duration::from_secs(5));

    // Every request after the first refused until the export's timeout: the export failed,
    // and what the collector took is not sent again.
    let exports = Exports::default();
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let endpoint = choosy_receiver(exports.clone(), {
        let refusing = refusing.clone();
        move |call| call == 0 || !refusing.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    let obs = pushing(
        OtlpProtocol::HttpProtobuf,
        &endpoint,
        Temporality::Delta,
        SMALL_REQUESTS,
        Duration::from_millis(800),
    );
    let app = serve(many_routes(MANY).0.layer(obs.layer())).await;
    let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
    let admin = admin_server.local_addr();
    for route in &routes {
        get_with(&format!("http://{app}{route}"), &[]).await;
    }
    assert!(
        !obs.flush_metrics(Duration::from_secs(10)),
        "delivered in part"
    );
    let first = exports.all();
    assert_eq!(first.len(), 1, "the first request only");
    let (_, _, body) = get_with(&format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(
        sample(
            &text,
            "tower_observability_metric_exports_failed_total",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "tower_observability_metric_exports_total", &[]),
        Some(0.0)
    );

    refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    for route in &routes {
        get_with(&format!("http://{app}{route}"), &[]).await;
    }
    assert!(obs.flush_metrics(Duration::from_secs(10)));
    let all = exports.all();
    let scrape = scraped(admin, &routes).await;
    // The routes the first request carried came once, then grew by one; the others' first
    // request was lost (counted), never sent twice.
    assert!(
        first[0].resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .any(|m| m.name == "http.server.request.duration"),
        "the first request carries some routes (else this test checks nothing)"
    );
    let taken = pushed(&first[0]);
    let second = pushed_in(&all[1..]);
    for route in &routes {
        let delivered = taken.get(*route).map_or(0, |p| p.count) + second[*route].count;
        let expected = if taken.contains_key(*route) { 2 } else { 1 };
        assert_eq!(delivered, expected, "{route}");
        assert!(delivered <= scrape[*route].count);
    }
    assert!(taken.len() < routes.len(), "some were lost");
    obs.shutdown(Duration::from_secs(5));
}
