//! The population of issue 7's render target, shared by `benches/render.rs` (which times
//! `/metrics` over it) and `tests/render_scale.rs` (which checks the exposition is right):
//! 1,000 routes x 5 status codes x 3 methods, every label set reached by a real request
//! through the layer.
#![allow(dead_code)]

use std::borrow::Cow;
use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_observability::{MetricsBackend, Observability, RequestBody};

/// Distinct routes: exactly the default route cap, so none folds into `overflow`.
pub const ROUTES: usize = 1_000;
/// One success, one other 2xx, two client errors and one server error (which adds
/// `error_type`, as 5xx series do in production).
pub const STATUSES: [u16; 5] = [200, 201, 404, 429, 500];
/// Methods of the population.
pub const METHODS: [Method; 3] = [Method::GET, Method::POST, Method::DELETE];
/// Distinct (route, method, status) label sets.
pub const LABEL_SETS: usize = ROUTES * STATUSES.len() * METHODS.len();
/// Histogram families recorded per label set: duration, request size, response size.
pub const FAMILIES: [&str; 3] = [
    "http_server_request_duration_seconds",
    "http_server_request_body_size_bytes",
    "http_server_response_body_size_bytes",
];

/// The route template of `/r{n}/{status}`: `/r{n}`, as a router's route function would.
fn route_of(path: &str) -> Option<Cow<'static, str>> {
    let rest = path.strip_prefix("/r")?;
    let (n, _) = rest.split_once('/')?;
    Some(Cow::Owned(format!("/r{n}")))
}

/// An `Observability` with a private registry and the crate's defaults otherwise; routes
/// come from the route function (no axum router involved).
pub fn observability() -> Observability {
    builder().build().expect("valid configuration")
}

/// The builder of [`observability`], for variants (native histograms, OTLP push).
pub fn builder() -> tower_observability::ObservabilityBuilder {
    Observability::builder("render-scale")
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .route_fn(|head| route_of(head.uri.path()))
}

/// Sends one request of every label set through the layer, reading every response body to
/// its end (the layer records when the body ends). Returns the number of requests sent.
pub async fn populate(obs: &Observability) -> usize {
    // The layer over a handler answering the status named by the path's last segment.
    let svc = ServiceBuilder::new()
        .layer(obs.layer())
        .service(tower::service_fn(
            |req: Request<RequestBody<Full<Bytes>>>| async move {
                let status = req
                    .uri()
                    .path()
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse::<u16>().ok())
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::OK);
                let mut res = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                *res.status_mut() = status;
                Ok::<_, Infallible>(res)
            },
        ));
    let mut sent = 0;
    for route in 0..ROUTES {
        for status in STATUSES {
            for method in &METHODS {
                let req = Request::builder()
                    .method(method.clone())
                    .uri(format!("/r{route}/{status}"))
                    .body(Full::new(Bytes::new()))
                    .expect("valid request");
                let res = svc.clone().oneshot(req).await.expect("infallible");
                assert_eq!(res.status().as_u16(), status);
                res.into_body().collect().await.expect("full body");
                sent += 1;
            }
        }
    }
    sent
}

/// Sample lines (series) of the populated families in an exposition.
pub fn population_series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#') && FAMILIES.iter().any(|f| l.starts_with(f)))
        .count()
}
