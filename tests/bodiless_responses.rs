//! Every response is recorded with the status it had, over real HTTP/1.1 and HTTP/2
//! servers: responses whose body the server never polls (HEAD, 204, 304, an empty body, a
//! body complete at its `Content-Length`) end with their real status, not as a client that
//! went away; `499` stays for the client that leaves mid-body. The in-flight gauge is back
//! to 0 after each.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tower_observability::Observability;

const COUNT: &str = "http_server_request_duration_seconds_count";
const ACTIVE: &str = "http_server_active_requests";

/// A body of one 11-byte chunk that announces its exact length but never says it is over:
/// HTTP/1.1 servers stop polling it once the length has left, and drop it.
struct ExactLength(Option<Bytes>);

impl http_body::Body for ExactLength {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            // Never ends by itself: only the length says it is complete.
            None => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(11)
    }
}

/// A body that sends a chunk every 20 ms, 200 times: long enough for a client to leave.
fn endless() -> Body {
    Body::from_stream(futures_util::stream::unfold(0, |i| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        (i < 200).then_some((Ok::<_, Infallible>(Bytes::from_static(b"chunk")), i + 1))
    }))
}

fn app(obs: &Observability) -> Router {
    Router::new()
        .route("/ok", get(|| async { "hello" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
        )
        .route("/no-content", get(|| async { StatusCode::NO_CONTENT }))
        .route("/not-modified", get(|| async { StatusCode::NOT_MODIFIED }))
        .route("/empty", get(|| async { "" }))
        .route(
            "/exact",
            get(|| async { Body::new(ExactLength(Some(Bytes::from_static(b"exactly 11!")))) }),
        )
        .route("/endless", get(|| async { endless() }))
        .layer(obs.layer())
}

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Http1,
    Http2,
}

fn client_for(protocol: Protocol) -> HttpClient {
    let mut builder = Client::builder(TokioExecutor::new());
    if let Protocol::Http2 = protocol {
        // HTTP/2 with prior knowledge (h2c), which axum's server speaks.
        builder.http2_only(true);
    }
    builder.build_http()
}

/// The count recorded for exactly these labels (all of a series' labels, so a 5xx series
/// with its `error_type` is told from the same status without one).
fn count(text: &str, labels: &[(&str, &str)]) -> f64 {
    exact_sample(text, COUNT, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn responses_the_server_never_polls_keep_their_status() {
    // (method, path, status sent, what must be recorded beyond method/route/status)
    let cases: [(&str, &str, u16, Option<&str>); 7] = [
        ("HEAD", "/ok", 200, None),
        ("HEAD", "/fail", 500, Some("500")),
        ("GET", "/no-content", 204, None),
        ("GET", "/not-modified", 304, None),
        ("GET", "/empty", 200, None),
        ("GET", "/exact", 200, None),
        ("HEAD", "/exact", 200, None),
    ];
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let obs = isolated("bodiless").build().unwrap();
        let addr = serve(app(&obs)).await;
        let client = client_for(protocol);
        for (method, path, status, error) in cases {
            if let (Protocol::Http2, "GET", "/exact") = (protocol, method, path) {
                // HTTP/2 ends a stream with the body's end, not at a length: such a body
                // is never complete there, and no client would see it end.
                continue;
            }
            let uri = format!("http://{addr}{path}");
            let sent =
                tokio::time::timeout(Duration::from_secs(5), send(&client, method, &uri, b""));
            let (got, body) = sent
                .await
                .unwrap_or_else(|_| panic!("{protocol:?} {method} {path}: no response in 5 s"));
            assert_eq!(got, status, "{protocol:?} {method} {path}");
            if path == "/exact" && method == "GET" {
                assert_eq!(&body[..], b"exactly 11!");
            }
            let status = status.to_string();
            let mut labels = vec![
                ("http_request_method", method),
                ("http_route", path),
                ("http_response_status_code", status.as_str()),
            ];
            if let Some(error) = error {
                labels.push(("error_type", error));
            }
            let recorded = eventually(Duration::from_secs(5), || {
                let text = obs.render_metrics();
                (count(&text, &labels) == 1.0).then_some(text)
            })
            .await;
            let text = obs.render_metrics();
            assert!(
                recorded.is_some(),
                "{protocol:?} {method} {path}: not recorded as {labels:?}:\n{}",
                text.lines()
                    .filter(|l| l.starts_with(COUNT))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let cancelled = [("http_route", path), ("error_type", "cancelled")];
            assert_eq!(
                sample(&text, COUNT, &cancelled),
                None,
                "{protocol:?} {path}"
            );
            assert_eq!(
                sample(&text, ACTIVE, &[]),
                Some(0.0),
                "{protocol:?} {method} {path}: the in-flight gauge is not back to 0"
            );
        }
    }
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_is_still_499() {
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let obs = isolated("leaves").build().unwrap();
        let addr = serve(app(&obs)).await;
        let client = client_for(protocol);
        let req = http::Request::get(format!("http://{addr}/endless"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        // Two chunks in, then the client leaves.
        for _ in 0..2 {
            body.frame().await.unwrap().unwrap();
        }
        assert_eq!(sample(&obs.render_metrics(), ACTIVE, &[]), Some(1.0));
        drop(body);
        drop(client);
        let labels = [
            ("http_request_method", "GET"),
            ("http_route", "/endless"),
            ("http_response_status_code", "499"),
            ("error_type", "cancelled"),
        ];
        let text = eventually(Duration::from_secs(5), || {
            let text = obs.render_metrics();
            (count(&text, &labels) == 1.0).then_some(text)
        })
        .await
        .unwrap_or_else(|| panic!("{protocol:?}: the client that left is not a 499"));
        assert_eq!(sample(&text, ACTIVE, &[]), Some(0.0), "{protocol:?}");
    }
}
