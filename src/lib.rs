//! One Tower layer for the signals a production HTTP or gRPC service needs.
//!
//! Add [`Observability::layer`] to an axum, tonic or any `tower::Service<http::Request<B>>`
//! service and get RED metrics named after the OpenTelemetry HTTP semantic conventions,
//! served for Prometheus on an admin port with liveness and readiness endpoints.
//!
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use tower::ServiceExt; // `oneshot`: one request, in-process
//! use tower_observability::Observability;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let obs = Observability::builder("checkout").build()?;
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "hello" }))
//!     .layer(obs.layer());
//!
//! let res = app.oneshot(http::Request::get("/users/7").body(Body::empty())?).await?;
//! assert_eq!(res.status(), 200);
//! let body = axum::body::to_bytes(res.into_body(), 1024).await?; // recorded at its last byte
//! assert_eq!(body, "hello");
//! // What the admin port's `/metrics` serves: the route, never the raw path.
//! let metrics = obs.render_metrics();
//! assert!(metrics.contains(
//!     r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200"} 1"#
//! ));
//! # Ok(()) }
//! ```
//!
//! In a service, the admin endpoints get a port of their own (the README's quickstart,
//! `examples/minimal.rs`, is this with the addresses read from the environment):
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tower_observability::Observability;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let obs = Observability::from_env("checkout")?.build()?; // a bad setting is an error here
//!     let app = Router::new()
//!         .route("/users/{id}", get(|| async { "hello" }))
//!         .layer(obs.layer());
//!     // /metrics, /healthz and /readyz, served until the program ends (or `shutdown()`)
//!     obs.serve_admin("0.0.0.0:9464")?;
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//!     axum::serve(listener, app)
//!         .with_graceful_shutdown(obs.shutdown_signal()) // SIGTERM, SIGINT: drain, flush
//!         .await?;
//!     Ok(()) // `obs` dropped here: what is still queued is sent first
//! }
//! ```
//!
//! The repository's README is the guide (Cargo.toml lines, traces, Sentry, the dashboards and
//! alerts); `docs/` holds the reference pages it links to.
//!
//! # One route, one pass
//!
//! The route label is axum's `MatchedPath` (nested routers included), else the gRPC
//! `/package.Service/Method` path, else the [route function](ObservabilityBuilder::route_fn),
//! else `unmatched`: a raw path never becomes a label, and distinct routes are capped
//! ([`ObservabilityBuilder::route_limit`]). The layer is a single service with one response
//! future and one body wrapper; label sets are cached metric handles, not strings built per
//! request.
//!
//! # Metrics
//!
//! | name | type | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | histogram | `http_request_method`, `http_route`, `http_response_status_code`, `error_type` (errors only) |
//! | `http_server_active_requests` | gauge | `http_request_method` |
//! | `http_server_request_body_size_bytes` | histogram | as duration |
//! | `http_server_response_body_size_bytes` | histogram | as duration |
//! | `rpc_server_call_duration_seconds` | histogram | `rpc_system`, `rpc_method`, `rpc_grpc_status_code`, `error_type` |
//! | `target_info` | gauge | `service_name`, `service_version`, `deployment_environment` |
//! | `tower_observability_*_total` | counter | the crate's own health |
//! | `process_*` | counter, gauges | CPU seconds, memory, fds, threads, start time |
//!
//! Durations run to the end of the response body. A request abandoned by its client is
//! recorded with status `499` and `error_type="cancelled"`. Server errors are responses
//! with status >= 500, panics, inner service and body errors, and gRPC server-fault codes
//! read from headers or trailers. All names are in [`metrics::names`].
//!
//! # Tracing
//!
//! Every request gets a server span in the same pass, named `{method} {route}` with the
//! metrics' route (`{method}` alone for `unmatched`; `package.Service/Method` for a gRPC
//! call, with the RPC attributes), kind server, the HTTP semantic
//! convention attributes, `error.type` and status Error on server errors. The caller's W3C
//! `traceparent`/`tracestate` are continued ([`trace`] has the exact rules; invalid input
//! starts a new trace, never an error response); the `x-request-id` is taken or made and
//! echoed. The span is a `tracing` span too, so the application's events nest under it and
//! carry `trace_id`, `span_id` and `request_id` (module `logging`, feature `logging`).
//! [`Observability::client_layer`] carries the trace into outbound calls. With the feature
//! `otlp`, spans are exported with OTLP (gRPC or HTTP/protobuf) through a bounded queue:
//! a collector that is down or hangs never slows a request, and drops are counted in
//! `tower_observability_spans_dropped_total`. Handlers read the context from the
//! [`RequestContext`] (an axum extractor, or [`trace::current_request`]).
//!
//! # Endpoints that fail, and deploys
//!
//! A collector or Sentry that is down, refuses, hangs or rate-limits costs requests nothing
//! measurable: after a failed delivery the sender waits before trying again (1 s, doubling
//! up to 30 s, with jitter; `Retry-After`, Sentry's `X-Sentry-Rate-Limits` and gRPC
//! `RetryInfo` honoured), and meanwhile requests neither capture their span nor build their
//! event: they increment `tower_observability_{spans,sentry_events}_dropped_total{reason}`
//! (`backoff`, `rate_limited`, `queue_full`, `refused`, `timeout`, `rejected`, `shutdown`).
//! The first failure and the recovery are each logged once at warn (target
//! `tower_observability::delivery`) with the endpoint and the drop count; an endpoint that
//! is back receives again within one backoff period.
//!
//! For deploys, [`Observability::shutdown_signal`] (feature `signal`) is the future to give
//! `axum::serve(..).with_graceful_shutdown(..)` or tonic's `serve_with_shutdown`: the first
//! SIGTERM or SIGINT turns `/readyz` to 503 and lets the requests in flight finish; when
//! the last handle to the layer is dropped, at the end of `main`, what is still queued is
//! sent, waiting at most the shutdown timeout (default 5 s,
//! `OBSERVABILITY_SHUTDOWN_TIMEOUT`), so nothing queued is lost to the process exiting.
//!
//! # Security headers and CORS
//!
//! Every response leaves with hardened headers: [`SecurityHeaders::api`] (the OWASP values
//! for JSON APIs) unless told otherwise, [`SecurityHeaders::web`] for services that serve
//! HTML, [`SecurityHeaders::none`] to turn them off. Values the handler set are kept unless
//! overridden; `Server`, `X-Powered-By` and the like are removed. CORS is off (browsers allow
//! no other origin) until a [`Cors`] allowlist is given; then real preflights are answered
//! by the layer, allowed origins are echoed, `Vary` is merged with the application's, and
//! refusals are counted in `tower_observability_cors_refused_total{reason}`. Both apply to
//! every response: the application's, 4xx and 5xx, and the 500 the layer answers a panic with.
//!
//! ```
//! use tower_observability::{Cors, MetricsBackend, Observability, SecurityHeaders};
//!
//! let obs = Observability::builder("checkout")
//!     .security_headers(SecurityHeaders::api().hsts_only_over_tls())
//!     .cors(Cors::allow_origins(["https://app.example.com"]).allow_headers(["content-type"]))
//! #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
//!     .build()?;
//! # let _ = obs;
//! # Ok::<(), tower_observability::BuildError>(())
//! ```
//!
//! # Configuration from the environment
//!
//! [`Observability::from_env`] reads `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`
//! (`service.name`, `service.version`, `deployment.environment.name`),
//! `OBSERVABILITY_ROUTE_LIMIT`, `OBSERVABILITY_EXCLUDE_PATHS` (comma-separated, a trailing
//! `*` makes a prefix), `OBSERVABILITY_DURATION_BUCKETS`, `OBSERVABILITY_SIZE_BUCKETS`,
//! `OBSERVABILITY_CATCH_PANICS`, `OBSERVABILITY_OBSERVE_ADMIN_PATHS`,
//! `OBSERVABILITY_SECURITY_HEADERS` (`api`, `web` or `off`) and
//! `OBSERVABILITY_CORS_ALLOWED_ORIGINS` (comma-separated; turns CORS on), refined by
//! `OBSERVABILITY_CORS_ALLOWED_METHODS`, `OBSERVABILITY_CORS_ALLOWED_HEADERS`,
//! `OBSERVABILITY_CORS_EXPOSED_HEADERS`, `OBSERVABILITY_CORS_ALLOW_CREDENTIALS` and
//! `OBSERVABILITY_CORS_MAX_AGE` (seconds; a public `*` policy needs the builder),
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`,
//! `OBSERVABILITY_TRACING` (`false`: no span, context or request id),
//! `OBSERVABILITY_TRACERESPONSE`, `OBSERVABILITY_TRUST_INBOUND_CONTEXT`,
//! `OBSERVABILITY_REQUEST_ID_HEADER` (`none` turns request ids off),
//! `OBSERVABILITY_SHUTDOWN_TIMEOUT` (seconds, or `500ms`, `5s`), and with the feature
//! `otlp`: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`otlp` or `none`),
//! `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`, `..._PROTOCOL` (`grpc`, `http/protobuf`),
//! `..._TIMEOUT`, `OTEL_EXPORTER_OTLP_HEADERS` and the `OTEL_BSP_*` queue settings.
//!
//! # Cargo features
//!
//! Items that need a feature say so with an "Available on crate feature ..." badge.
//!
//! | name | description | default |
//! |---|---|---|
//! | `axum` | read axum's `MatchedPath` for the route; [`Observability::admin_router`] | yes |
//! | `admin` | [`Observability::serve_admin`]: the admin endpoints on their own port (tokio, hyper) | yes |
//! | `signal` | [`Observability::shutdown_signal`]: graceful shutdown on SIGTERM or SIGINT, telemetry flushed before exit (tokio's signal handling) | yes |
//! | `otlp` | export spans with OTLP, gRPC or HTTP/protobuf (the crate's own encoder over hyper; opentelemetry SDK types for a user's exporter) | no |
//! | `logging` | `logging::init`: JSON or text log lines carrying the trace (tracing-subscriber) | no |
//! | `sentry` | report server errors and panics to Sentry (`SENTRY_DSN`), PII scrubbed, one hub per request | no |
//! | `redis` | share [rate limits](rate_limit) across replicas through Redis or Valkey (redis-rs) | no |
#![deny(missing_docs, unreachable_pub, unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// First, so that `warning!` is in scope in every module below.
#[macro_use]
mod warning;

mod admin;
mod body;
mod classify;
mod client_address;
mod config;
mod cors;
mod delivery;
mod error;
mod error_reporting;
mod exchange;
mod exclude;
mod future;
mod layer;
#[cfg(feature = "logging")]
pub mod logging;
mod method;
pub mod metrics;
mod observability;
mod panic;
mod percent;
pub mod rate_limit;
mod redact;
mod response_policy;
mod route;
mod security_headers;
#[cfg(feature = "sentry")]
mod sentry;
mod service;
mod shared;
mod shutdown;
mod signal;
pub mod trace;
mod wire;

#[cfg(feature = "admin")]
pub use admin::AdminServer;
pub use admin::AdminService;
pub use body::{BoxError, RequestBody, ResponseBody};
pub use client_address::ForwardedHeader;
pub use config::builder::DEFAULT_ROUTE_LIMIT;
pub use config::ObservabilityBuilder;
pub use cors::Cors;
pub use error::BuildError;
pub use future::ResponseFuture;
pub use layer::ObservabilityLayer;
pub use metrics::{
    prometheus_builder, MetricsBackend, NativeHistograms, DEFAULT_DURATION_BUCKETS,
    DEFAULT_SIZE_BUCKETS,
};
pub use observability::{Observability, Readiness};
pub use panic::PanicError;
pub use route::{RequestHead, RouteFn, OVERFLOW, UNMATCHED};
pub use security_headers::{ArrivedOverTls, SecurityHeaders};
#[cfg(feature = "sentry")]
pub use sentry::Sentry;
/// The Sentry SDK core the layer reports through: add breadcrumbs, tags or context to the
/// request being served (`sentry_core::add_breadcrumb`), or build a `before_send` filter.
#[cfg(feature = "sentry")]
#[cfg_attr(docsrs, doc(cfg(feature = "sentry")))]
pub use sentry_core;
pub use service::ObservabilityService;
#[cfg(feature = "signal")]
pub use shutdown::ShutdownSignal;
pub use trace::span::RequestContext;

// The Rust blocks of the README and of the docs pages compile (and run, unless marked), as
// doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/security-headers-and-cors.md")]
struct SecurityHeadersAndCorsDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/error-reporting.md")]
struct ErrorReportingDoctests;
