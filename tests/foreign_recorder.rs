//! The crate never fights the application's own recorder: when one is installed before the
//! layer is built, the default keeps a private Prometheus registry for `/metrics`, and
//! `MetricsBackend::Global` records into the application's recorder instead.
//! (Its own test binary: a process has one global recorder.)

use axum::routing::get;
use axum::Router;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt;
use tower_observability::{MetricsBackend, Observability};

async fn one_request(obs: &Observability) {
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(obs.layer());
    let res = app
        .oneshot(
            http::Request::get("/x")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_application_recorder_installed_first_is_respected() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    // Default backend: cannot install, so it keeps its own registry and still serves it.
    let own = Observability::builder("own").build().unwrap();
    one_request(&own).await;
    let text = own.render_metrics();
    assert!(
        text.contains("http_server_request_duration_seconds_count{"),
        "{text}"
    );

    // Global backend: the request lands in the application's recorder.
    let global = Observability::builder("global")
        .metrics_backend(MetricsBackend::Global { render: None })
        .build()
        .unwrap();
    one_request(&global).await;
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
