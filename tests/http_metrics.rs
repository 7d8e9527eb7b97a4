//! RED metrics end to end: real axum servers on 127.0.0.1, a real HTTP client, the
//! exposition as `/metrics` serves it.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{ServiceBuilder, ServiceExt};

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";
const DURATION_SUM: &str = "http_server_request_duration_seconds_sum";
const DURATION_BUCKET: &str = "http_server_request_duration_seconds_bucket";
const ACTIVE: &str = "http_server_active_requests";

/// A body of `chunks` chunks, `every` apart.
fn slow_body(chunks: u32, every: Duration) -> Body {
    Body::from_stream(futures_util::stream::unfold(0, move |i| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((
            Ok::<_, Infallible>(Bytes::from_static(b"0123456789")),
            i + 1,
        ))
    }))
}

fn active_total(text: &str) -> f64 {
    sample(text, ACTIVE, &[]).unwrap_or(0.0)
}

#[tokio::test]
async fn duration_runs_to_the_end_of_a_streamed_body() {
    let obs = isolated("stream").build().unwrap();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async { slow_body(6, Duration::from_millis(60)) }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;
    let (status, body) = send(&client(), "GET", &format!("http://{addr}/stream"), b"").await;
    assert_eq!((status, body.len()), (200, 60));

    let route = [
        ("http_route", "/stream"),
        ("http_response_status_code", "200"),
    ];
    let text = eventually(Duration::from_secs(5), || {
        let text = obs.render_metrics();
        sample(&text, DURATION_COUNT, &route).map(|_| text)
    })
    .await
    .expect("the streamed request was never recorded");
    let seconds = sample(&text, DURATION_SUM, &route).unwrap();
    assert!(
        seconds >= 0.3,
        "a 360 ms stream was recorded as {seconds} s"
    );
    let mut under = route.to_vec();
    under.push(("le", "0.25"));
    assert_eq!(sample(&text, DURATION_BUCKET, &under), Some(0.0));
    let size = [("http_route", "/stream")];
    assert_eq!(
        sample(&text, "http_server_response_body_size_bytes_sum", &size),
        Some(60.0)
    );
    assert_eq!(active_total(&text), 0.0);
}

#[tokio::test]
async fn client_gone_mid_body_is_499_cancelled_and_frees_the_gauge() {
    let obs = isolated("cancel").build().unwrap();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async { slow_body(200, Duration::from_millis(25)) }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;

    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = socket.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Mid-body: the gauge holds the request.
    assert_eq!(active_total(&obs.render_metrics()), 1.0);
    drop(socket);

    let cancelled = [
        ("http_route", "/stream"),
        ("http_response_status_code", "499"),
        ("error_type", "cancelled"),
    ];
    let text = eventually(Duration::from_secs(5), || {
        let text = obs.render_metrics();
        sample(&text, DURATION_COUNT, &cancelled).map(|_| text)
    })
    .await
    .expect("the abandoned request was never recorded as cancelled");
    assert_eq!(sample(&text, DURATION_COUNT, &cancelled), Some(1.0));
    assert_eq!(active_total(&text), 0.0);
}

#[tokio::test]
async fn client_gone_before_the_response_is_499_cancelled() {
    let obs = isolated("cancel-early").build().unwrap();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    eventually(Duration::from_secs(5), || {
        (active_total(&obs.render_metrics()) == 1.0).then_some(())
    })
    .await
    .expect("the request never started");
    drop(socket);
    let cancelled = [("http_route", "/slow"), ("error_type", "cancelled")];
    eventually(Duration::from_secs(5), || {
        sample(&obs.render_metrics(), DURATION_COUNT, &cancelled)
    })
    .await
    .expect("the abandoned request was never recorded as cancelled");
    assert_eq!(active_total(&obs.render_metrics()), 0.0);
}

async fn panicking_handler() -> &'static str {
    panic!("boom")
}

#[tokio::test]
async fn a_panic_under_an_outer_catch_panic_layer_is_recorded_and_frees_the_gauge() {
    let obs = isolated("panic-outer").catch_panics(false).build().unwrap();
    let app = Router::new()
        .route("/panic", get(panicking_handler))
        .layer(obs.layer())
        .layer(tower_http::catch_panic::CatchPanicLayer::new());
    let addr = serve(app).await;
    let client = client();
    let (status, _) = send(&client, "GET", &format!("http://{addr}/panic"), b"").await;
    assert_eq!(status, 500, "tower-http's layer answers the panic");
    let text = obs.render_metrics();
    let panic = [
        ("http_route", "/panic"),
        ("http_response_status_code", "500"),
        ("error_type", "panic"),
    ];
    assert_eq!(sample(&text, DURATION_COUNT, &panic), Some(1.0));
    assert_eq!(
        sample(&text, "tower_observability_panics_total", &[]),
        Some(1.0)
    );
    assert_eq!(active_total(&text), 0.0);
    // And the service keeps serving.
    let (status, _) = send(&client, "GET", &format!("http://{addr}/panic"), b"").await;
    assert_eq!(status, 500);
}

#[tokio::test]
async fn the_layer_answers_panics_itself_by_default() {
    let obs = isolated("panic").build().unwrap();
    let app = Router::new()
        .route("/panic", get(panicking_handler))
        .route("/ok", get(|| async { "ok" }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let client = client();
    for _ in 0..3 {
        let (status, body) = send(&client, "GET", &format!("http://{addr}/panic"), b"").await;
        assert_eq!((status, &body[..]), (500, &b"Internal Server Error"[..]));
    }
    let (status, _) = send(&client, "GET", &format!("http://{addr}/ok"), b"").await;
    assert_eq!(status, 200);
    let text = obs.render_metrics();
    assert_eq!(
        sample(&text, DURATION_COUNT, &[("error_type", "panic")]),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "tower_observability_panics_total", &[]),
        Some(3.0)
    );
    assert_eq!(active_total(&text), 0.0);
}

#[tokio::test]
async fn a_panic_in_the_response_body_is_recorded() {
    let obs = isolated("body-panic").build().unwrap();
    let body = || {
        Body::from_stream(futures_util::stream::unfold(0, |i| async move {
            if i == 1 {
                panic!("body boom");
            }
            Some((Ok::<_, Infallible>(Bytes::from_static(b"first")), i + 1))
        }))
    };
    let app = Router::new()
        .route("/p", get(move || async move { body() }))
        .layer(obs.layer());
    let res = app
        .oneshot(Request::get("/p").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert!(err.to_string().contains("body boom"), "{err}");
    let text = obs.render_metrics();
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[("http_route", "/p"), ("error_type", "panic")]
        ),
        Some(1.0)
    );
    assert_eq!(active_total(&text), 0.0);
}

/// A gRPC-style response: one message, then trailers.
fn grpc_response(trailer_status: &'static str) -> Response<Body> {
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
        Ok(Frame::trailers({
            let mut t = HeaderMap::new();
            t.insert("grpc-status", trailer_status.parse().unwrap());
            t
        })),
    ]);
    Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(StreamBody::new(frames)))
        .unwrap()
}

#[tokio::test]
async fn grpc_status_in_trailers_and_headers_classifies_errors() {
    let obs = isolated("grpc").build().unwrap();
    let app = Router::new()
        .route(
            "/pkg.Svc/Unavailable",
            post(|| async { grpc_response("14") }),
        )
        .route("/pkg.Svc/Invalid", post(|| async { grpc_response("3") }))
        .route(
            "/pkg.Svc/TrailersOnly",
            post(|| async {
                Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "13")
                    .body(Body::empty())
                    .unwrap()
            }),
        )
        .layer(obs.layer());
    for method in ["Unavailable", "Invalid", "TrailersOnly"] {
        let req = Request::post(format!("/pkg.Svc/{method}"))
            .header("content-type", "application/grpc")
            .body(Body::from(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.into_body().collect().await.unwrap();
    }
    let text = obs.render_metrics();
    let rpc = "rpc_server_call_duration_seconds_count";
    assert_eq!(
        sample(
            &text,
            rpc,
            &[
                ("rpc_method", "pkg.Svc/Unavailable"),
                ("rpc_grpc_status_code", "14"),
                ("error_type", "UNAVAILABLE")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                ("http_route", "/pkg.Svc/Unavailable"),
                ("http_response_status_code", "200"),
                ("error_type", "UNAVAILABLE")
            ]
        ),
        Some(1.0),
        "grpc-status 14 in trailers must count as a server error"
    );
    let invalid = text
        .lines()
        .find(|l| l.starts_with(rpc) && l.contains("pkg.Svc/Invalid"))
        .unwrap();
    assert!(invalid.contains("rpc_grpc_status_code=\"3\"") && !invalid.contains("error_type"));
    assert_eq!(
        sample(
            &text,
            rpc,
            &[
                ("rpc_method", "pkg.Svc/TrailersOnly"),
                ("error_type", "INTERNAL")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn any_tower_service_works_and_inner_errors_are_server_errors() {
    let obs = isolated("tower").build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(obs.layer())
        .service(tower::service_fn(|req: Request<_>| async move {
            if req.uri().path() == "/broken" {
                return Err(std::io::Error::other("database unreachable"));
            }
            Ok(Response::new(Full::new(Bytes::from_static(b"fine"))))
        }));
    let ok = svc
        .clone()
        .oneshot(Request::get("/fine").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(ok.into_body().collect().await.unwrap().to_bytes(), "fine");
    let err = svc
        .oneshot(
            Request::get("/broken")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "database unreachable");
    let text = obs.render_metrics();
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                ("http_route", "unmatched"),
                ("http_response_status_code", "500"),
                ("error_type", "service_error")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(active_total(&text), 0.0);
}

#[tokio::test]
async fn bad_input_never_panics_nor_adds_labels() {
    let obs = isolated("bad-input").build().unwrap();
    // One chunk, then (once it has left) an error.
    let failing = || {
        Body::from_stream(futures_util::stream::unfold(0, |i| async move {
            match i {
                0 => Some((Ok(Bytes::from_static(b"partial")), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Err(std::io::Error::other("disk on fire")), 2))
                }
                _ => None,
            }
        }))
    };
    let app = Router::new()
        .route("/", get(|| async { "root" }))
        .route("/fails-mid-body", get(move || async move { failing() }))
        .layer(obs.layer());
    let addr = serve(app).await;

    // A non-UTF-8 header value and a path of nearly 64 KiB (the `http` crate's limit for a
    // URI is 65534 bytes; hyper answers longer ones itself), over a raw socket.
    let long_path = format!("/{}", "a".repeat(65_000));
    let mut raw = Vec::new();
    raw.extend_from_slice(b"GET / HTTP/1.1\r\nhost: t\r\nx-odd: \xff\xfe\x80\r\n\r\n");
    raw.extend_from_slice(
        format!("GET {long_path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(&raw).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:.200}");
    assert!(
        reply.contains("HTTP/1.1 404"),
        "the long path gets the app's 404"
    );

    let client = client();
    for method in ["PURGE", "X-WEIRD", "get"] {
        let (status, _) = send(&client, method, &format!("http://{addr}/"), b"").await;
        assert_eq!(status, 405);
    }
    // A body that fails mid-stream: the client gets the status and bytes produced.
    let res = client
        .get(format!("http://{addr}/fails-mid-body").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.into_body().collect().await.is_err());

    let text = eventually(Duration::from_secs(5), || {
        let text = obs.render_metrics();
        sample(&text, DURATION_COUNT, &[("error_type", "body_error")]).map(|_| text)
    })
    .await
    .expect("the failed body was never recorded");
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                ("http_route", "unmatched"),
                ("http_response_status_code", "404")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, DURATION_COUNT, &[("http_request_method", "_OTHER")]),
        Some(3.0)
    );
    assert!(!text.contains("aaaaaaaa"), "a raw path became a label");
    assert!(!text.contains("PURGE") && !text.contains("X-WEIRD"));
    assert_eq!(active_total(&text), 0.0);
}

#[tokio::test]
async fn admin_paths_and_configured_paths_are_not_counted() {
    let obs = isolated("excluded")
        .exclude_prefix("/internal/")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/internal/debug", get(|| async { "debug" }))
        .route("/work", get(|| async { "work" }))
        .merge(obs.admin_router())
        .layer(obs.layer());
    let addr = serve(app).await;
    let client = client();
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/internal/debug",
        "/work",
    ] {
        let (status, _) = send(&client, "GET", &format!("http://{addr}{path}"), b"").await;
        assert_eq!(status, 200, "{path}");
    }
    let text = obs.render_metrics();
    assert_eq!(
        sample(&text, DURATION_COUNT, &[]),
        Some(1.0),
        "only /work counts"
    );
    assert_eq!(
        sample(&text, DURATION_COUNT, &[("http_route", "/work")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn admin_server_serves_metrics_health_and_readiness() {
    let obs = isolated("admin")
        .service_version("1.2.3")
        .environment("test")
        .build()
        .unwrap();
    let admin = obs.serve_admin("127.0.0.1:0").unwrap();
    let base = format!("http://{}", admin.local_addr());
    let client = client();
    let (status, body) = send(&client, "GET", &format!("{base}/metrics"), b"").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains(
        "target_info{service_name=\"admin\",service_version=\"1.2.3\",deployment_environment=\"test\"} 1"
    ), "{text}");
    assert!(text.contains("process_resident_memory_bytes "));
    assert_eq!(
        send(&client, "GET", &format!("{base}/healthz"), b"")
            .await
            .0,
        200
    );
    assert_eq!(
        send(&client, "GET", &format!("{base}/readyz"), b"").await.0,
        200
    );
    obs.readiness().set_ready(false);
    assert_eq!(
        send(&client, "GET", &format!("{base}/readyz"), b"").await.0,
        503
    );
    assert_eq!(
        send(&client, "GET", &format!("{base}/healthz"), b"")
            .await
            .0,
        200
    );
    assert_eq!(
        send(&client, "POST", &format!("{base}/metrics"), b"")
            .await
            .0,
        405
    );
    assert_eq!(
        send(&client, "GET", &format!("{base}/nope"), b"").await.0,
        404
    );
    admin.shutdown();
}

#[tokio::test]
async fn request_sizes_count_the_bytes_that_flow_without_content_length() {
    let obs = isolated("sizes").build().unwrap();
    let app = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .layer(obs.layer());
    // A streamed (chunked) request body has no Content-Length.
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"0123456789")))),
    );
    let req = Request::post("/echo")
        .body(Body::new(StreamBody::new(chunks)))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes().len(),
        40
    );
    let text = obs.render_metrics();
    let route = [("http_route", "/echo")];
    assert_eq!(
        sample(&text, "http_server_request_body_size_bytes_sum", &route),
        Some(40.0)
    );
    assert_eq!(
        sample(&text, "http_server_response_body_size_bytes_sum", &route),
        Some(40.0)
    );
}

#[tokio::test]
async fn promtool_finds_nothing_to_lint_after_mixed_traffic() {
    let obs = isolated("promtool").build().unwrap();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/panic", get(panicking_handler))
        .route("/pkg.Svc/Call", post(|| async { grpc_response("14") }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let client = client();
    for path in ["/ok", "/fail", "/panic", "/missing", "/ok"] {
        send(&client, "GET", &format!("http://{addr}{path}"), b"").await;
    }
    send(&client, "BREW", &format!("http://{addr}/ok"), b"").await;
    send(&client, "POST", &format!("http://{addr}/ok"), b"body").await;
    let text = obs.render_metrics();
    assert!(text.contains("http_server_request_duration_seconds_bucket"));

    let lint = promtool_check_metrics(&text);
    assert!(lint.is_empty(), "promtool: {lint}\n{text}");
}
