//! The crate and the application share one recorder: the default installs a Prometheus
//! recorder globally (so the application's own metrics are on `/metrics` too), a second
//! layer reuses it, and `MetricsBackend::Global` records into it.
//! (Its own test binary: a process has one global recorder.)

mod support;

use axum::routing::get;
use axum::Router;
use support::*;
use tower::ServiceExt;
use tower_observability::{MetricsBackend, Observability};

#[tokio::test]
async fn default_installs_one_global_prometheus_recorder_shared_by_everyone() {
    let first = Observability::builder("first").build().unwrap();
    // The application's own metrics, through the facade, land in the same registry.
    metrics::describe_counter!(
        "app_jobs_processed_total",
        "Jobs the application processed."
    );
    metrics::describe_histogram!("app_job_seconds", "Time per job.");
    metrics::counter!("app_jobs_processed_total").increment(3);
    let text = first.render_metrics();
    assert!(
        text.contains("app_jobs_processed_total 3"),
        "the application's counter is missing:\n{text}"
    );

    // A second layer in the same process reuses the installed recorder.
    let second = Observability::builder("second").build().unwrap();
    let both = second.render_metrics();
    assert!(both.contains("service_name=\"first\"") && both.contains("service_name=\"second\""));

    // Global: record through whatever the application installed (here: ours).
    let global = Observability::builder("global")
        .metrics_backend(MetricsBackend::Global { render: None })
        .build()
        .unwrap();
    let app = Router::new()
        .route("/g", get(|| async { "g" }))
        .layer(global.layer());
    let res = app
        .oneshot(
            http::Request::get("/g")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    let text = first.render_metrics();
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[("http_route", "/g")]
        ),
        Some(1.0)
    );
    // Without a handle to render, the global backend serves only the process metrics.
    assert!(!global.render_metrics().contains("http_server"));
    // Histograms recorded by the application get buckets, not a summary.
    metrics::histogram!("app_job_seconds").record(0.2);
    let text = first.render_metrics();
    assert!(
        text.contains("app_job_seconds_bucket{le=\"0.25\"} 1"),
        "{text}"
    );
    let lint = promtool_check_metrics(&text);
    assert!(lint.is_empty(), "{lint}");
}
