//! Every metric and label name the crate emits, in one place.
//!
//! Dashboards, alert rules and tests read these constants (the test
//! `tests/artefacts/names.rs` fails when an artefact names a metric or label that is not
//! listed in [`CATALOGUE`]). Names follow the OpenTelemetry HTTP and RPC semantic
//! conventions, mapped to Prometheus the way the OpenTelemetry Prometheus exporter does
//! (dots become underscores, the unit becomes a suffix, counters end in `_total`).

/// HTTP server request duration, first byte in to last byte out (histogram, seconds).
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Requests in flight (gauge).
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Request body bytes that reached the service (histogram, bytes).
pub const HTTP_SERVER_REQUEST_BODY_SIZE: &str = "http_server_request_body_size_bytes";
/// Response body bytes that left the service (histogram, bytes).
pub const HTTP_SERVER_RESPONSE_BODY_SIZE: &str = "http_server_response_body_size_bytes";
/// gRPC call duration to the end of the response stream (histogram, seconds).
pub const RPC_SERVER_CALL_DURATION: &str = "rpc_server_call_duration_seconds";
/// Constant 1, labelled with the service's identity.
pub const TARGET_INFO: &str = "target_info";

/// Requests whose route was folded into `overflow` because the route cap was reached.
pub const ROUTES_OVERFLOWED: &str = "tower_observability_routes_overflowed_total";
/// Panics caught in handlers or response bodies.
pub const PANICS: &str = "tower_observability_panics_total";
/// Spans handed to the exporter.
pub const SPANS_EXPORTED: &str = "tower_observability_spans_exported_total";
/// Spans not delivered, by [`LABEL_DROP_REASON`]: the queue was full, the exporter was
/// backing off or the collector failed.
pub const SPANS_DROPPED: &str = "tower_observability_spans_dropped_total";
/// Error events sent to Sentry.
pub const SENTRY_EVENTS_SENT: &str = "tower_observability_sentry_events_sent_total";
/// Error events not delivered to Sentry, by [`LABEL_DROP_REASON`].
pub const SENTRY_EVENTS_DROPPED: &str = "tower_observability_sentry_events_dropped_total";
/// CORS requests refused, by `reason`.
pub const CORS_REFUSED: &str = "tower_observability_cors_refused_total";
/// Requests over a rate-limit policy's quota, by `policy` and `mode` (`enforce`: refused
/// with a 429; `shadow`: let through and counted).
pub const RATE_LIMITED: &str = "tower_observability_rate_limited_total";
/// Rate-limit decisions the shared backend (Redis) failed to make, by `reason`
/// (`timeout`, `error`).
pub const RATE_LIMIT_BACKEND_ERRORS: &str = "tower_observability_rate_limit_backend_errors_total";
/// Rate-limit decisions made by the fallback because the shared backend could not
/// (failed, timed out, or its circuit breaker was open), by `fallback` (`open`, `closed`,
/// `local`).
pub const RATE_LIMIT_FALLBACKS: &str = "tower_observability_rate_limit_fallbacks_total";

/// Process CPU time (counter, seconds), read from `/proc` at scrape time (Linux).
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// Resident memory (gauge, bytes), read from `/proc` at scrape time (Linux).
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// Virtual memory (gauge, bytes), read from `/proc` at scrape time (Linux).
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
/// Open file descriptors (gauge), read from `/proc` at scrape time (Linux).
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// File descriptor limit (gauge), read from `/proc` at scrape time (Linux).
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// Process start time (gauge, seconds since the Unix epoch), read from `/proc` at scrape time (Linux).
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
/// OS threads (gauge), read from `/proc` at scrape time (Linux).
pub const PROCESS_THREADS: &str = "process_threads";

/// `http.request.method`: the standard method, or `_OTHER`.
pub const LABEL_METHOD: &str = "http_request_method";
/// `http.route`: the route template, `unmatched` or `overflow`; never a raw path.
pub const LABEL_ROUTE: &str = "http_route";
/// `http.response.status_code`.
pub const LABEL_STATUS: &str = "http_response_status_code";
/// `error.type`: present only on errors (`500`, `panic`, `cancelled`, `UNAVAILABLE`, ...).
pub const LABEL_ERROR_TYPE: &str = "error_type";
/// `rpc.system`: always `grpc`.
pub const LABEL_RPC_SYSTEM: &str = "rpc_system";
/// `rpc.method`: `package.Service/Method`.
pub const LABEL_RPC_METHOD: &str = "rpc_method";
/// `rpc.grpc.status_code`: the numeric gRPC status code.
pub const LABEL_RPC_GRPC_STATUS: &str = "rpc_grpc_status_code";
/// `service.name` on `target_info`.
pub const LABEL_SERVICE_NAME: &str = "service_name";
/// `service.version` on `target_info`.
pub const LABEL_SERVICE_VERSION: &str = "service_version";
/// `deployment.environment` on `target_info`.
pub const LABEL_DEPLOYMENT_ENVIRONMENT: &str = "deployment_environment";
/// Why a CORS request was refused (`origin`, `method`, `headers`, `private_network`).
pub const LABEL_CORS_REASON: &str = "reason";
/// Why spans or Sentry events were dropped: `queue_full` (the sender's queue had no room),
/// `backoff` (the endpoint failed and the sender waits before trying again: nothing is
/// captured or built meanwhile), `rate_limited` (the endpoint asked for a pause), `refused`
/// (no connection: refused, reset, a host that does not resolve), `timeout` (no answer in
/// time), `rejected` (the endpoint answered with an error), `shutdown` (still queued when
/// the shutdown timeout passed).
pub const LABEL_DROP_REASON: &str = "reason";
/// The values of [`LABEL_DROP_REASON`].
pub const DROP_REASONS: &[&str] = &[
    "queue_full",
    "backoff",
    "rate_limited",
    "refused",
    "timeout",
    "rejected",
    "shutdown",
];
/// The rate-limit policy's name.
pub const LABEL_RATE_LIMIT_POLICY: &str = "policy";
/// The rate limiter's mode: `enforce` or `shadow`.
pub const LABEL_RATE_LIMIT_MODE: &str = "mode";
/// Why the shared rate-limit backend failed: `timeout` or `error`.
pub const LABEL_RATE_LIMIT_REASON: &str = "reason";
/// The rate limiter's fallback: `open`, `closed` or `local`.
pub const LABEL_RATE_LIMIT_FALLBACK: &str = "fallback";

/// How a metric is exposed to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonic counter (`_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A histogram with explicit buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric the crate emits: its name, kind and the labels it may carry.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// The Prometheus metric family name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Every label the metric may carry (Prometheus adds `job` and `instance` on scrape).
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

const HTTP_LABELS: &[&str] = &[LABEL_METHOD, LABEL_ROUTE, LABEL_STATUS, LABEL_ERROR_TYPE];

/// Every metric the crate emits, with its labels.
pub const CATALOGUE: &[MetricSpec] = &[
    MetricSpec {
        name: HTTP_SERVER_REQUEST_DURATION,
        kind: MetricKind::Histogram,
        labels: HTTP_LABELS,
        help: "Duration of HTTP server requests, from the request's arrival to the end of the response body.",
    },
    MetricSpec {
        name: HTTP_SERVER_ACTIVE_REQUESTS,
        kind: MetricKind::Gauge,
        labels: &[LABEL_METHOD],
        help: "Number of HTTP server requests in flight, including those still streaming a response body.",
    },
    MetricSpec {
        name: HTTP_SERVER_REQUEST_BODY_SIZE,
        kind: MetricKind::Histogram,
        labels: HTTP_LABELS,
        help: "Bytes of request body read by the service.",
    },
    MetricSpec {
        name: HTTP_SERVER_RESPONSE_BODY_SIZE,
        kind: MetricKind::Histogram,
        labels: HTTP_LABELS,
        help: "Bytes of response body sent by the service.",
    },
    MetricSpec {
        name: RPC_SERVER_CALL_DURATION,
        kind: MetricKind::Histogram,
        labels: &[LABEL_RPC_SYSTEM, LABEL_RPC_METHOD, LABEL_RPC_GRPC_STATUS, LABEL_ERROR_TYPE],
        help: "Duration of gRPC server calls, to the end of the response stream.",
    },
    MetricSpec {
        name: TARGET_INFO,
        kind: MetricKind::Gauge,
        labels: &[LABEL_SERVICE_NAME, LABEL_SERVICE_VERSION, LABEL_DEPLOYMENT_ENVIRONMENT],
        help: "Target metadata: always 1, labelled with the service's name, version and environment.",
    },
    MetricSpec {
        name: ROUTES_OVERFLOWED,
        kind: MetricKind::Counter,
        labels: &[],
        help: "Requests recorded under http_route=\"overflow\" because the distinct-route cap was reached.",
    },
    MetricSpec {
        name: PANICS,
        kind: MetricKind::Counter,
        labels: &[],
        help: "Panics caught in request handlers or response bodies.",
    },
    MetricSpec {
        name: SPANS_EXPORTED,
        kind: MetricKind::Counter,
        labels: &[],
        help: "Spans handed to the OpenTelemetry exporter.",
    },
    MetricSpec {
        name: SPANS_DROPPED,
        kind: MetricKind::Counter,
        labels: &[LABEL_DROP_REASON],
        help: "Spans not delivered to the collector, by reason (queue_full, backoff, rate_limited, refused, timeout, rejected, shutdown).",
    },
    MetricSpec {
        name: SENTRY_EVENTS_SENT,
        kind: MetricKind::Counter,
        labels: &[],
        help: "Error events handed to the Sentry transport.",
    },
    MetricSpec {
        name: SENTRY_EVENTS_DROPPED,
        kind: MetricKind::Counter,
        labels: &[LABEL_DROP_REASON],
        help: "Error events not delivered to Sentry, by reason (queue_full, backoff, rate_limited, refused, timeout, rejected, shutdown).",
    },
    MetricSpec {
        name: CORS_REFUSED,
        kind: MetricKind::Counter,
        labels: &[LABEL_CORS_REASON],
        help: "Cross-origin requests refused by the CORS policy, by reason.",
    },
    MetricSpec {
        name: RATE_LIMITED,
        kind: MetricKind::Counter,
        labels: &[LABEL_RATE_LIMIT_POLICY, LABEL_RATE_LIMIT_MODE],
        help: "Requests over a rate-limit policy's quota: refused with a 429 (mode enforce) or let through (mode shadow).",
    },
    MetricSpec {
        name: RATE_LIMIT_BACKEND_ERRORS,
        kind: MetricKind::Counter,
        labels: &[LABEL_RATE_LIMIT_REASON],
        help: "Rate-limit decisions the shared backend (Redis) failed to make, by reason.",
    },
    MetricSpec {
        name: RATE_LIMIT_FALLBACKS,
        kind: MetricKind::Counter,
        labels: &[LABEL_RATE_LIMIT_FALLBACK],
        help: "Rate-limit decisions made by the fallback because the shared backend could not.",
    },
    MetricSpec {
        name: PROCESS_CPU_SECONDS,
        kind: MetricKind::Counter,
        labels: &[],
        help: "Total user and system CPU time spent in seconds.",
    },
    MetricSpec {
        name: PROCESS_RESIDENT_MEMORY,
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Resident memory size in bytes.",
    },
    MetricSpec {
        name: PROCESS_VIRTUAL_MEMORY,
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Virtual memory size in bytes.",
    },
    MetricSpec {
        name: PROCESS_OPEN_FDS,
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Number of open file descriptors.",
    },
    MetricSpec {
        name: PROCESS_MAX_FDS,
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Maximum number of open file descriptors.",
    },
    MetricSpec {
        name: PROCESS_START_TIME,
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Start time of the process since unix epoch in seconds.",
    },
    MetricSpec {
        name: PROCESS_THREADS,
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Number of OS threads in the process.",
    },
];
