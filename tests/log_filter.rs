//! Log lines keep their trace ids under a targeted `RUST_LOG` (`myapp=debug`), which turns
//! the request span's own target off: through `logging::filter` (what `logging::init`
//! installs) the span stays on; under a filter of the application's own the lines take the
//! ids of the request being served. One subscriber for the binary, three outputs, each
//! behind its own filter, all fed by real requests through a real server.

mod support;

use axum::routing::get;
use axum::Router;
use support::*;
use tower_observability::logging::{self, LogFormat};
use tower_observability::trace::TraceParent;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The application's targeted filter: this crate (the test binary) at debug, all else off.
const TARGETED: &str = "log_filter=debug";

#[tokio::test]
async fn a_targeted_filter_keeps_the_trace_ids_on_every_line() {
    let ours = CapturedLogs::default();
    let theirs = CapturedLogs::default();
    let text = CapturedLogs::default();
    let subscriber = tracing_subscriber::registry()
        .with(logging::layer(LogFormat::Json, ours.clone()).with_filter(logging::filter(TARGETED)))
        .with(logging::layer(LogFormat::Json, theirs.clone()).with_filter(EnvFilter::new(TARGETED)))
        .with(logging::layer(LogFormat::Text, text.clone()).with_filter(EnvFilter::new(TARGETED)));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let obs = isolated("filtered").traceresponse(true).build().unwrap();
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|| async {
                tracing::debug!(step = 1, "loading order");
                tracing::info!(target: "some_dependency", "noise from elsewhere");
                "order"
            }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;
    let req = http::Request::get(format!("http://{addr}/orders/7"))
        .header("x-request-id", "req-filter-1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let res = client().request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let server = TraceParent::parse(res.headers()["traceresponse"].as_bytes()).unwrap();
    let (trace_id, span_id) = (server.trace_id.to_string(), server.parent_id.to_string());
    // Outside any request: no ids to carry.
    tracing::debug!("between requests");

    for (name, out) in [("logging::filter", &ours), ("own EnvFilter", &theirs)] {
        let all = out.text();
        let lines: Vec<serde_json::Value> = all
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let loading = lines
            .iter()
            .find(|l| l["message"] == "loading order")
            .unwrap_or_else(|| panic!("{name}: no line in {all}"));
        assert_eq!(loading["level"], "DEBUG", "{name}");
        assert_eq!(loading["step"], 1, "{name}");
        assert_eq!(loading["trace_id"], trace_id.as_str(), "{name}: {loading}");
        assert_eq!(loading["span_id"], span_id.as_str(), "{name}: {loading}");
        assert_eq!(loading["request_id"], "req-filter-1", "{name}: {loading}");
        let between = lines
            .iter()
            .find(|l| l["message"] == "between requests")
            .unwrap_or_else(|| panic!("{name}: no line in {all}"));
        assert!(between.get("trace_id").is_none(), "{name}: {between}");
        // The filter still filters: the request span adds no line, others stay off.
        assert_eq!(lines.len(), 2, "{name}: {all}");
    }
    let all = text.text();
    let loading = all
        .lines()
        .find(|l| l.contains("loading order"))
        .unwrap_or_else(|| panic!("no text line in {all}"));
    for want in [
        format!("trace_id={trace_id}"),
        format!("span_id={span_id}"),
        "request_id=req-filter-1".to_owned(),
    ] {
        assert!(loading.contains(&want), "{want} not in {loading:?}");
    }
    assert!(!all.contains("noise"), "{all}");
}
