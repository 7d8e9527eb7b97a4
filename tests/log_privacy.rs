//! No log line carries a URL's user info: `Origin`, `Referer` and `Host` values with
//! `user:password@`, sent by a hostile client to a real server, go through every path that
//! logs (CORS refusals of requests and preflights, a 500 reported to Sentry, a panic) with
//! the crate's logs at their most verbose, in both of `logging`'s formats.

mod support;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::sentry_endpoint::SentryEndpoint;
use support::*;
use tower_observability::logging::{self, LogFormat};
use tower_observability::Cors;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// Every line of this crate and of the test, down to trace.
const EVERYTHING: &str = "tower_observability=trace,log_privacy=trace";

async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> u16 {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client()
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    status
}

// Flushing blocks this thread: the Sentry endpoint runs on the runtime's other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_carries_user_info() {
    let json = CapturedLogs::default();
    let text = CapturedLogs::default();
    let subscriber = tracing_subscriber::registry()
        .with(
            logging::layer(LogFormat::Json, json.clone()).with_filter(logging::filter(EVERYTHING)),
        )
        .with(
            logging::layer(LogFormat::Text, text.clone()).with_filter(logging::filter(EVERYTHING)),
        );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let sentry = SentryEndpoint::start().await;
    let obs = isolated("privacy")
        .cors(Cors::allow_origins(["https://app.example.com"]))
        .sentry(tower_observability::Sentry::dsn(sentry.dsn()))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/ok",
            get(|| async {
                tracing::info!("handled");
                "ok"
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .route("/panic", get(|| async { panic!("handler bug") as &str }))
        .layer(obs.layer());
    let addr = serve(app).await;

    let hostile = [
        ("origin", "https://ada:SECRET-origin@evil.test"),
        ("referer", "https://ada:SECRET-referer@evil.test/page?x=1"),
        ("host", "ada:SECRET-host@localhost"),
    ];
    // An actual request and a preflight from a refused origin: each is logged at debug.
    assert_eq!(send(addr, "GET", "/ok", &hostile).await, 200);
    let mut preflight = hostile.to_vec();
    preflight.push(("access-control-request-method", "GET"));
    assert_eq!(send(addr, "OPTIONS", "/ok", &preflight).await, 403);
    // A refused origin long enough that a cut could have hidden its `@`.
    let long = format!("https://{}:SECRET-long@evil.test", "u".repeat(4000));
    assert_eq!(send(addr, "GET", "/ok", &[("origin", &long)]).await, 200);
    // A server error reported to Sentry, and a panic, with the same headers.
    assert_eq!(send(addr, "GET", "/fail", &hostile).await, 500);
    assert_eq!(send(addr, "GET", "/panic", &hostile).await, 500);
    assert!(obs.flush_sentry(std::time::Duration::from_secs(5)));

    for (format, logs) in [("json", json.text()), ("text", text.text())] {
        // What makes the test able to fail: each path did log, and named the origin.
        for expected in [
            "CORS request refused",
            "CORS preflight refused",
            "request handler panicked",
            "handled",
            "https://REDACTED:REDACTED@evil.test",
        ] {
            assert!(
                logs.contains(expected),
                "{format}: no {expected:?} in\n{logs}"
            );
        }
        for line in logs.lines() {
            assert!(
                !line.contains("SECRET"),
                "{format}: user info logged: {line}"
            );
            assert!(
                !line.contains("uuuu"),
                "{format}: a hostile origin logged whole: {line}"
            );
        }
    }
    // The same values never reached Sentry either.
    let raw: Vec<u8> = sentry
        .received()
        .iter()
        .flat_map(|r| r.raw.to_vec())
        .collect();
    assert!(!raw.is_empty(), "the 500 and the panic were reported");
    assert!(!String::from_utf8_lossy(&raw).contains("SECRET"));
}
