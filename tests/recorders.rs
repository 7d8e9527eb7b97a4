//! The crate and the application share one recorder: the default installs a Prometheus
//! recorder globally (so the application's own metrics are on `/metrics` too), a second
//! layer reuses it, and `MetricsBackend::Global` records into it.
//! (Its own test binary: a process has one global recorder.)

mod support;

use support::exposition::label_sets;
use support::requests::one_get;
use support::*;
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
    assert_eq!(
        exact_sample(&text, "app_jobs_processed_total", &[]),
        Some(3.0),
        "the application's counter is missing:\n{text}"
    );

    // A second layer in the same process reuses the installed recorder.
    let second = Observability::builder("second").build().unwrap();
    let both = second.render_metrics();
    for service in ["first", "second"] {
        let identity = [("service_name", service)];
        assert_eq!(sample(&both, "target_info", &identity), Some(1.0), "{both}");
    }

    // Global: record through whatever the application installed (here: ours).
    let global = Observability::builder("global")
        .metrics_backend(MetricsBackend::Global { render: None })
        .build()
        .unwrap();
    assert_eq!(one_get(&global, "/g").await, 200);
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
    let own = global.render_metrics();
    assert!(!own.contains("http_server"), "{own}");
    // Histograms recorded by the application get buckets, not a summary.
    metrics::histogram!("app_job_seconds").record(0.2);
    let text = first.render_metrics();
    let bucket = "app_job_seconds_bucket";
    assert_eq!(
        sample(&text, bucket, &[("le", "0.25")]),
        Some(1.0),
        "{text}"
    );
    let buckets = label_sets(&text, bucket);
    assert!(
        buckets.iter().all(|labels| labels.len() == 1),
        "{buckets:?}"
    );
    let lint = promtool_check_metrics(&text);
    assert!(lint.is_empty(), "{lint}");
}
