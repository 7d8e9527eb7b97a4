//! The crate never fights the application's own recorder: when one is installed before the
//! layer is built, the default keeps a private Prometheus registry for `/metrics`, and
//! `MetricsBackend::Global` records into the application's recorder instead.
//! (Its own test binary: a process has one global recorder.)

mod support;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::requests::one_get;
use tower_observability::{MetricsBackend, Observability};

#[tokio::test]
async fn an_application_recorder_installed_first_is_respected() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    // Default backend: cannot install, so it keeps its own registry and still serves it.
    let own = Observability::builder("own").build().unwrap();
    assert_eq!(one_get(&own, "/x").await, 200);
    let text = own.render_metrics();
    assert_eq!(
        support::sample(&text, "http_server_request_duration_seconds_count", &[]),
        Some(1.0),
        "{text}"
    );

    // Global backend: the request lands in the application's recorder.
    let global = Observability::builder("global")
        .metrics_backend(MetricsBackend::Global { render: None })
        .build()
        .unwrap();
    assert_eq!(one_get(&global, "/x").await, 200);
    let snapshot = snapshotter.snapshot().into_vec();
    let recorded = snapshot.iter().find(|(key, _, _, value)| {
        key.key().name() == "http_server_request_duration_seconds"
            && matches!(value, DebugValue::Histogram(samples) if samples.len() == 1)
    });
    assert!(
        recorded.is_some(),
        "the application's recorder did not receive the request: {snapshot:?}"
    );
    let target_info = snapshot
        .iter()
        .filter(|(key, _, _, _)| key.key().name() == "target_info")
        .count();
    assert_eq!(
        target_info, 1,
        "only the global layer records into the application's recorder"
    );
}
