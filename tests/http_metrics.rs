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
use support::exposition::*;
use support::requests::*;
use support::*;
use tower::{ServiceBuilder, ServiceExt};
use tower_observability::Observability;

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
    let text = metrics_when(&obs, "the streamed request", |text| {
        sample(text, DURATION_COUNT, &route).is_some()
    })
    .await;
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
async fn a_client_gone_before_or_mid_body_is_499_cancelled_and_frees_the_gauge() {
    // (route, the client reads the head before leaving)
    for (path, reads_head) in [("/stream", true), ("/slow", false)] {
        let obs = isolated("cancel").build().unwrap();
        let app = Router::new()
            .route(
                "/stream",
                get(|| async { slow_body(200, Duration::from_millis(25)) }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .layer(obs.layer());
        let addr = serve(app).await;
        let mut socket = raw_get(addr, path).await;
        if reads_head {
            assert!(first_bytes(&mut socket).await.starts_with("HTTP/1.1 200"));
            // Mid-body: the gauge holds the request.
            assert_eq!(active_total(&obs.render_metrics()), 1.0);
        } else {
            metrics_when(&obs, "the request's start", |text| {
                active_total(text) == 1.0
            })
            .await;
        }
        drop(socket);

        let cancelled = [
            ("http_route", path),
            ("http_response_status_code", "499"),
            ("error_type", "cancelled"),
        ];
        let text = metrics_when(&obs, path, |text| {
            sample(text, DURATION_COUNT, &cancelled).is_some()
        })
        .await;
        assert_eq!(
            sample(&text, DURATION_COUNT, &cancelled),
            Some(1.0),
            "{path}"
        );
        assert_eq!(active_total(&text), 0.0, "{path}");
    }
}

async fn panicking_handler() -> &'static str {
    panic!("boom")
}

#[tokio::test]
async fn a_panic_is_a_500_recorded_as_panic_and_the_service_keeps_serving() {
    // (who answers the panic, the layer's `catch_panics`)
    for (who, catch_panics) in [
        ("the layer, by default", true),
        ("tower-http's layer outside it", false),
    ] {
        let obs = isolated("panic")
            .catch_panics(catch_panics)
            .build()
            .unwrap();
        let app = Router::new()
            .route("/panic", get(panicking_handler))
            .route("/ok", get(|| async { "ok" }))
            .layer(obs.layer());
        let app = match catch_panics {
            true => app,
            false => app.layer(tower_http::catch_panic::CatchPanicLayer::new()),
        };
        let addr = serve(app).await;
        let client = client();
        for _ in 0..3 {
            let (status, body) = send(&client, "GET", &format!("http://{addr}/panic"), b"").await;
            assert_eq!(status, 500, "{who} answers the panic");
            if catch_panics {
                assert_eq!(&body[..], b"Internal Server Error");
            }
        }
        let (status, _) = send(&client, "GET", &format!("http://{addr}/ok"), b"").await;
        assert_eq!(status, 200, "{who}");
        let text = obs.render_metrics();
        let panic = [
            ("http_request_method", "GET"),
            ("http_route", "/panic"),
            ("http_response_status_code", "500"),
            ("error_type", "panic"),
        ];
        assert_eq!(
            exact_sample(&text, DURATION_COUNT, &panic),
            Some(3.0),
            "{who}"
        );
        assert_eq!(
            sample(&text, DURATION_COUNT, &[("error_type", "panic")]),
            Some(3.0),
            "{who}"
        );
        assert_eq!(
            sample(&text, "tower_observability_panics_total", &[]),
            Some(3.0),
            "{who}"
        );
        assert_eq!(active_total(&text), 0.0, "{who}");
    }
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
    // A client error: its code, and no error_type.
    let invalid = [
        ("rpc_system", "grpc"),
        ("rpc_method", "pkg.Svc/Invalid"),
        ("rpc_grpc_status_code", "3"),
    ];
    assert_eq!(exact_sample(&text, rpc, &invalid), Some(1.0), "{text}");
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
    let reply = raw_exchange(addr, &raw).await;
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
    // A body that fails mid-stream: the client gets the status and bytes produced, then
    // the failure (the connection is cut), never a clean end.
    let res = client
        .get(format!("http://{addr}/fails-mid-body").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut received = Vec::new();
    let mut failed = false;
    for _ in 0..16 {
        match body.frame().await {
            Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap_or_default()),
            Some(Err(_)) => {
                failed = true;
                break;
            }
            None => break,
        }
    }
    assert_eq!(
        received, b"partial",
        "the bytes produced before the failure"
    );
    assert!(failed, "the failure reached the client as a clean end");

    let text = metrics_when(&obs, "the failed body", |text| {
        sample(text, DURATION_COUNT, &[("error_type", "body_error")]).is_some()
    })
    .await;
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
async fn admin_and_excluded_paths_are_served_but_not_counted() {
    // (the exclusion, paths requested, each route's count (`None`: not counted), all counted)
    let cases = [
        (
            isolated("excluded").exclude_prefix("/internal/"),
            &[
                "/metrics",
                "/healthz",
                "/readyz",
                "/internal/debug",
                "/work",
            ][..],
            &[
                ("/internal/debug", None),
                ("/metrics", None),
                ("/work", Some(1.0)),
            ][..],
            1.0,
        ),
        (
            isolated("exclude-exact").exclude_path("/ping"),
            &[
                "/ping",
                "/ping?verbose=1",
                "/ping",
                "/ping/deep",
                "/pingpong",
            ],
            &[
                ("/ping", None),
                ("/ping/deep", Some(1.0)), // exact match, not a prefix
                ("/pingpong", Some(1.0)),
            ],
            2.0,
        ),
    ];
    for (builder, paths, routes, counted) in cases {
        let obs = builder.build().unwrap();
        let app = Router::new()
            .route("/internal/debug", get(|| async { "debug" }))
            .route("/work", get(|| async { "work" }))
            .route("/ping", get(|| async { "pong" }))
            .route("/ping/deep", get(|| async { "deep" }))
            .route("/pingpong", get(|| async { "pingpong" }))
            .merge(obs.admin_router())
            .layer(obs.layer());
        let addr = serve(app).await;
        let client = client();
        for path in paths {
            let (status, _) = send(&client, "GET", &format!("http://{addr}{path}"), b"").await;
            assert_eq!(status, 200, "{path}: excluded from signals, still served");
        }
        let text = obs.render_metrics();
        for (route, count) in routes {
            let got = sample(&text, DURATION_COUNT, &[("http_route", route)]);
            assert_eq!(got, *count, "{route}");
        }
        assert_eq!(
            sample(&text, DURATION_COUNT, &[]),
            Some(counted),
            "{paths:?}"
        );
        assert_eq!(active_total(&text), 0.0);
    }
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
    let identity = [
        ("service_name", "admin"),
        ("service_version", "1.2.3"),
        ("deployment_environment", "test"),
    ];
    assert_eq!(label_sets(&text, "target_info"), [labels(&identity)]);
    assert_eq!(exact_sample(&text, "target_info", &identity), Some(1.0));
    let rss = exact_sample(&text, "process_resident_memory_bytes", &[]);
    assert!(rss.is_some_and(|bytes| bytes > 0.0), "{text}");
    // (ready, method, path, status)
    for (ready, method, path, status) in [
        (true, "GET", "/healthz", 200),
        (true, "GET", "/readyz", 200),
        (false, "GET", "/readyz", 503),
        (false, "GET", "/healthz", 200),
        (false, "POST", "/metrics", 405),
        (false, "GET", "/nope", 404),
    ] {
        obs.readiness().set_ready(ready);
        let (got, _) = send(&client, method, &format!("{base}{path}"), b"").await;
        assert_eq!(got, status, "{method} {path}, ready: {ready}");
    }
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
    assert!(!label_sets(&text, DURATION_BUCKET).is_empty(), "{text}");

    let lint = promtool_check_metrics(&text);
    assert!(lint.is_empty(), "promtool: {lint}\n{text}");
}

#[tokio::test]
async fn non_utf8_values_in_the_headers_the_layer_reads_change_nothing() {
    let obs = isolated("non-utf8")
        .cors(tower_observability::Cors::allow_origins([
            "https://app.example.com",
        ]))
        .build()
        .unwrap();
    let odd = |bytes: &'static [u8]| http::HeaderValue::from_bytes(bytes).unwrap();
    let app = Router::new()
        .route("/", get(|| async { "root" }))
        .route(
            "/pkg.Svc/Odd",
            post(move || async move {
                // A broken gRPC server: an unreadable status in the head and the trailers.
                let frames = futures_util::stream::iter([
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))),
                    Ok(Frame::trailers({
                        let mut t = HeaderMap::new();
                        t.insert("grpc-status", odd(b"\xfe\x80"));
                        t
                    })),
                ]);
                Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", odd(b"1\xff"))
                    .body(Body::new(StreamBody::new(frames)))
                    .unwrap()
            }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;

    // Every header the layer parses, unreadable as UTF-8, on a plain request.
    let reply = raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\
          content-type: application/grpc\xff\r\n\
          traceparent: 00-\xff\xfe0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
          tracestate: \xff=\x80\r\n\
          x-request-id: \xff\xfe\x80\r\n\
          origin: https://app.example.com\xff\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("root"), "the app's body: {text}");
    // Not an allowed origin, so no CORS grant; a fresh request id, not the garbage.
    assert_eq!(raw_header(&reply, "access-control-allow-origin"), None);
    let id = raw_header(&reply, "x-request-id").expect("a request id is echoed");
    assert!(
        id.len() == 32 && id.iter().all(|b| b.is_ascii_hexdigit()),
        "{}",
        String::from_utf8_lossy(id)
    );

    // A gRPC call whose server answers with unreadable statuses, asking for trailers.
    let reply = raw_exchange(
        addr,
        b"POST /pkg.Svc/Odd HTTP/1.1\r\nhost: t\r\nconnection: close\r\nte: trailers\r\n\
          content-type: application/grpc\r\ncontent-length: 5\r\n\
          traceparent: \xff\r\n\r\n\0\0\0\0\0",
    )
    .await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(raw_header(&reply, "grpc-status"), Some(&b"1\xff"[..]));
    assert!(
        reply.windows(3).any(|w| w == b"\x02hi"),
        "the app's body reached the client"
    );

    let text = obs.render_metrics();
    assert!(!text.contains('\u{fffd}'), "a byte became a label:\n{text}");
    assert_eq!(
        label_sets(&text, DURATION_COUNT),
        [
            labels(&[
                ("http_request_method", "GET"),
                ("http_route", "/"),
                ("http_response_status_code", "200"),
            ]),
            labels(&[
                ("http_request_method", "POST"),
                ("http_route", "/pkg.Svc/Odd"),
                ("http_response_status_code", "200"),
                ("error_type", "UNKNOWN"),
            ]),
        ],
        "an unreadable content-type is not gRPC; an unreadable status is UNKNOWN"
    );
    assert_eq!(
        label_sets(&text, "rpc_server_call_duration_seconds_count"),
        [labels(&[
            ("rpc_system", "grpc"),
            ("rpc_method", "pkg.Svc/Odd"),
            ("rpc_grpc_status_code", "2"),
            ("error_type", "UNKNOWN"),
        ])]
    );
    assert_eq!(active_total(&text), 0.0);
}

#[tokio::test]
async fn paths_at_and_beyond_64_kib_through_a_real_server() {
    let obs = isolated("long-paths").build().unwrap();
    let app = Router::new()
        .route("/files/{*rest}", get(|| async { "file" }))
        .route("/", get(|| async { "root" }))
        .layer(obs.layer());
    let addr = serve(app).await;

    // GET of a path no client library would send, on a connection of its own.
    let get_raw = |path: String| async move {
        let head = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
        String::from_utf8_lossy(&raw_exchange(addr, head.as_bytes()).await).into_owned()
    };

    // The longest URI the `http` crate takes (65,534 bytes): the app answers, under its
    // template.
    let text = get_raw(format!("/files/{}", "a".repeat(65_534 - "/files/".len()))).await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("file"),
        "{text:.200}"
    );

    // 65,536 bytes and more: hyper refuses them before any service runs; the server lives on.
    for len in [65_536, 70_000, 200_000] {
        let text = get_raw(format!("/{}", "b".repeat(len - 1))).await;
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 4"),
            "{len}: {text:.200}"
        );
        let (status, body) = send(&client(), "GET", &format!("http://{addr}/"), b"").await;
        assert_eq!((status, &body[..]), (200, &b"root"[..]), "after {len}");
    }

    let text = obs.render_metrics();
    assert!(
        !text.contains("aaaa") && !text.contains("bbbb"),
        "a raw path became a label"
    );
    assert_eq!(
        sample(&text, DURATION_COUNT, &[("http_route", "/files/{*rest}")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, DURATION_COUNT, &[("http_route", "/")]),
        Some(3.0)
    );
    assert_eq!(sample(&text, DURATION_COUNT, &[]), Some(4.0), "{text}");
    assert_eq!(active_total(&text), 0.0);
}

#[tokio::test]
async fn routes_beyond_the_cap_fold_into_overflow_and_are_counted() {
    let obs = isolated("overflow").route_limit(3).build().unwrap();
    let mut app = Router::new();
    for route in ["/r1", "/r2", "/r3", "/r4", "/r5", "/users/{id}"] {
        app = app.route(route, get(|| async { "ok" }));
    }
    let addr = serve(app.layer(obs.layer())).await;
    let client = client();
    // Three routes fill the cap; every new route after them is `overflow`, known ones stay.
    for path in [
        "/r1", "/r2", "/r3", "/r4", "/r5", "/r4", "/r1", "/users/9", "/nope",
    ] {
        send(&client, "GET", &format!("http://{addr}{path}"), b"").await;
    }
    let text = obs.render_metrics();
    let route = |r: &str| sample(&text, DURATION_COUNT, &[("http_route", r)]);
    assert_eq!(route("/r1"), Some(2.0));
    assert_eq!(route("/r2"), Some(1.0));
    assert_eq!(route("/r3"), Some(1.0));
    assert_eq!(route("overflow"), Some(4.0), "r4, r5, r4, users");
    assert_eq!(
        route("unmatched"),
        Some(1.0),
        "unmatched is not a route of the cap"
    );
    for gone in ["/r4", "/r5", "/users/{id}"] {
        assert_eq!(route(gone), None, "{gone} is past the cap");
    }
    assert_eq!(
        sample(&text, "tower_observability_routes_overflowed_total", &[]),
        Some(4.0)
    );
    let lint = promtool_check_metrics(&text);
    assert!(lint.is_empty(), "promtool: {lint}");
}

/// An app with an HTTP route and a gRPC one, each called once with a 50-byte body.
async fn one_http_and_one_grpc_call(obs: &Observability) -> String {
    let app = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/pkg.Svc/Call", post(|| async { grpc_response("0") }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let client = client();
    const BODY: &[u8] = &[b'x'; 50];
    send(&client, "POST", &format!("http://{addr}/echo"), BODY).await;
    let req = Request::post(format!("http://{addr}/pkg.Svc/Call"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(BODY)))
        .unwrap();
    let res = client.request(req).await.unwrap();
    res.into_body().collect().await.unwrap();
    metrics_when(obs, "the gRPC call", |text| {
        sample(text, "rpc_server_call_duration_seconds_count", &[]).is_some()
    })
    .await
}

#[tokio::test]
async fn histograms_have_the_default_or_the_configured_buckets_everywhere() {
    // The OpenTelemetry HTTP semantic conventions' advice, extended for slow calls.
    let semconv_and_slow = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
    ];
    let default_sizes = [
        0.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
        16777216.0, 67108864.0,
    ];
    // (builder, duration bounds, size bounds, the size bounds the 50-byte body falls between)
    let cases = [
        (
            isolated("buckets"),
            &semconv_and_slow[..],
            &default_sizes[..],
            ("0", "64"),
        ),
        (
            isolated("buckets-set")
                .duration_buckets([0.05, 0.2, 1.5])
                .size_buckets([10.0, 100.0]),
            &[0.05, 0.2, 1.5],
            &[10.0, 100.0],
            ("10", "100"),
        ),
    ];
    for (builder, duration, size, (below, above)) in cases {
        let obs = builder.build().unwrap();
        let text = one_http_and_one_grpc_call(&obs).await;
        let with_inf = |bounds: &[f64]| [bounds, &[f64::INFINITY]].concat();
        let echo = [("http_route", "/echo")];
        assert_eq!(
            bucket_bounds(&text, "http_server_request_duration_seconds", &echo),
            with_inf(duration)
        );
        let rpc = [("rpc_method", "pkg.Svc/Call")];
        assert_eq!(
            bucket_bounds(&text, "rpc_server_call_duration_seconds", &rpc),
            with_inf(duration)
        );
        for metric in [
            "http_server_request_body_size_bytes",
            "http_server_response_body_size_bytes",
        ] {
            assert_eq!(
                bucket_bounds(&text, metric, &echo),
                with_inf(size),
                "{metric}"
            );
            let bucket = format!("{metric}_bucket");
            let le = |le: &str| sample(&text, &bucket, &[("http_route", "/echo"), ("le", le)]);
            assert_eq!((le(below), le(above)), (Some(0.0), Some(1.0)), "{metric}");
        }
        // No histogram is rendered as a summary.
        assert!(!text.contains("quantile="), "{text}");
        let lint = promtool_check_metrics(&text);
        assert!(lint.is_empty(), "promtool: {lint}");
    }
}

#[tokio::test]
async fn a_body_ending_in_trailers_is_complete_over_http1_and_http2() {
    // hyper polls a body no further once its trailers are out: a body that does not also
    // say `is_end_stream` then must not be taken for one the client abandoned.
    let obs = isolated("trailers").build().unwrap();
    let app = Router::new()
        .route("/pkg.Svc/Fail", post(|| async { grpc_response("14") }))
        .layer(obs.layer());
    let addr = serve(app).await;
    for client in [client(), h2c_client()] {
        let req = Request::post(format!("http://{addr}/pkg.Svc/Fail"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
    let failed = [
        ("http_route", "/pkg.Svc/Fail"),
        ("http_response_status_code", "200"),
        ("error_type", "UNAVAILABLE"),
    ];
    let text = metrics_when(&obs, "both calls", |text| {
        sample(text, DURATION_COUNT, &[]) == Some(2.0)
    })
    .await;
    assert_eq!(sample(&text, DURATION_COUNT, &failed), Some(2.0), "{text}");
    assert_eq!(
        sample(&text, DURATION_COUNT, &[("error_type", "cancelled")]),
        None
    );
    assert_eq!(
        sample(
            &text,
            "rpc_server_call_duration_seconds_count",
            &[("rpc_grpc_status_code", "14")]
        ),
        Some(2.0)
    );
    assert_eq!(active_total(&text), 0.0);
}
