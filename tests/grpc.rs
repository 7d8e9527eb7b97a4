//! gRPC through a real tonic server and client on 127.0.0.1: every status recorded with
//! its code, duration and error classification; a tonic service mounted in an axum router;
//! gRPC-Web, whose status may travel in the body.

#[path = "../examples/common/greeter.rs"]
mod greeter;
#[path = "support/grpc.rs"]
mod grpc_support;
mod support;

use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use greeter::{CountRequest, Greeter, HelloRequest, DELAY_MS};
use grpc_support::*;
use http_body_util::{BodyExt, Full};
use support::*;

const RPC_COUNT: &str = "rpc_server_call_duration_seconds_count";
const RPC_SUM: &str = "rpc_server_call_duration_seconds_sum";
const RPC_BUCKET: &str = "rpc_server_call_duration_seconds_bucket";
const HTTP_COUNT: &str = "http_server_request_duration_seconds_count";

fn hello(fail_with: i32) -> HelloRequest {
    HelloRequest {
        name: "test".into(),
        fail_with,
    }
}

/// `SayHello` asking the server to take `delay_ms` before answering.
fn slow_hello(fail_with: i32, delay_ms: u64) -> tonic::Request<HelloRequest> {
    let mut req = tonic::Request::new(hello(fail_with));
    req.metadata_mut()
        .insert(DELAY_MS, delay_ms.to_string().parse().unwrap());
    req
}

/// The sum and count of the rpc duration series with these labels.
fn rpc_seconds(text: &str, labels: &[(&str, &str)]) -> (f64, f64) {
    let sum = sample(text, RPC_SUM, labels).unwrap_or_else(|| panic!("no {labels:?}\n{text}"));
    (sum, sample(text, RPC_COUNT, labels).unwrap())
}

#[tokio::test]
async fn unary_codes_are_recorded_and_classified() {
    let obs = isolated("grpc-unary").build().unwrap();
    let mut client = connect(start(&obs).await).await;
    // Every call takes 150 ms in the handler, OK or not.
    assert_eq!(
        client.say_hello(slow_hello(0, 150)).await.unwrap().message,
        "hello test"
    );
    for code in [3, 14, 13] {
        let status = client.say_hello(slow_hello(code, 150)).await.unwrap_err();
        assert_eq!(status.code() as i32, code);
    }
    let text = obs.render_metrics();
    let method = ("rpc_method", "demo.Greeter/SayHello");
    for code in ["0", "3", "14", "13"] {
        let labels = [method, ("rpc_grpc_status_code", code)];
        let (seconds, calls) = rpc_seconds(&text, &labels);
        assert_eq!(calls, 1.0, "code {code}");
        assert!(
            (0.15..5.0).contains(&seconds),
            "a 150 ms call with code {code} was recorded as {seconds} s"
        );
        let under = [method, ("rpc_grpc_status_code", code), ("le", "0.1")];
        assert_eq!(sample(&text, RPC_BUCKET, &under), Some(0.0), "code {code}");
    }
    let count = |code: &str| sample(&text, RPC_COUNT, &[method, ("rpc_grpc_status_code", code)]);
    assert_eq!(count("0"), Some(1.0));
    assert_eq!(count("3"), Some(1.0));
    assert_eq!(count("14"), Some(1.0));
    assert_eq!(count("13"), Some(1.0));
    // INVALID_ARGUMENT is the caller's fault; UNAVAILABLE and INTERNAL are the server's.
    let errors = |code: &str, error: &str| {
        sample(
            &text,
            RPC_COUNT,
            &[
                method,
                ("rpc_grpc_status_code", code),
                ("error_type", error),
            ],
        )
    };
    assert_eq!(errors("14", "UNAVAILABLE"), Some(1.0));
    assert_eq!(errors("13", "INTERNAL"), Some(1.0));
    let invalid = text
        .lines()
        .find(|l| l.starts_with(RPC_COUNT) && l.contains("rpc_grpc_status_code=\"3\""))
        .unwrap();
    assert!(!invalid.contains("error_type"), "{invalid}");
    // The HTTP view agrees: status 200, gRPC faults as error_type.
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", "/demo.Greeter/SayHello"),
                ("http_response_status_code", "200"),
                ("error_type", "UNAVAILABLE")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "http_server_active_requests", &[]), Some(0.0));
}

#[tokio::test]
async fn a_trailers_only_error_is_read_from_the_head() {
    let obs = isolated("grpc-trailers-only").build().unwrap();
    let (mut client, heads) = connect_noting_heads(start(&obs).await).await;
    client.say_hello(hello(0)).await.unwrap();
    for code in [14, 3] {
        let status = client.say_hello(hello(code)).await.unwrap_err();
        assert_eq!(status.code() as i32, code);
    }
    // tonic answered the errors trailers-only: `grpc-status` in the head, no body.
    assert_eq!(
        *heads.lock().unwrap(),
        [None, Some("14".to_owned()), Some("3".to_owned())]
    );
    let text = obs.render_metrics();
    let method = ("rpc_method", "demo.Greeter/SayHello");
    assert_eq!(
        sample(
            &text,
            RPC_COUNT,
            &[
                method,
                ("rpc_grpc_status_code", "14"),
                ("error_type", "UNAVAILABLE")
            ]
        ),
        Some(1.0),
        "UNAVAILABLE in a trailers-only head is a server error"
    );
    assert_eq!(
        sample(
            &text,
            HTTP_COUNT,
            &[
                ("http_route", "/demo.Greeter/SayHello"),
                ("http_response_status_code", "200"),
                ("error_type", "UNAVAILABLE")
            ]
        ),
        Some(1.0)
    );
    // INVALID_ARGUMENT, trailers-only too, is the caller's fault: no error_type anywhere.
    let invalid: Vec<_> = text
        .lines()
        .filter(|l| l.contains("rpc_grpc_status_code=\"3\""))
        .collect();
    assert!(!invalid.is_empty(), "{text}");
    assert!(
        invalid.iter().all(|l| !l.contains("error_type")),
        "{invalid:?}"
    );
    assert_eq!(
        sample(
            &text,
            HTTP_COUNT,
            &[("http_route", "/demo.Greeter/SayHello")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, HTTP_COUNT, &[("error_type", "UNAVAILABLE")]),
        Some(1.0),
        "only the UNAVAILABLE call is an error"
    );
    assert_eq!(
        sample(&text, HTTP_COUNT, &[("error_type", "INVALID_ARGUMENT")]),
        None
    );
}

#[tokio::test]
async fn streams_are_timed_to_their_end_and_trailer_errors_count() {
    let obs = isolated("grpc-stream").build().unwrap();
    let (mut client, heads) = connect_noting_heads(start(&obs).await).await;
    let mut ok = client
        .count(CountRequest {
            n: 5,
            delay_ms: 60,
            fail_with: 0,
        })
        .await
        .unwrap();
    let mut n = 0;
    while ok.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 5);
    let mut failing = client
        .count(CountRequest {
            n: 2,
            delay_ms: 1,
            fail_with: 14,
        })
        .await
        .unwrap();
    assert!(failing.message().await.unwrap().is_some());
    assert!(failing.message().await.unwrap().is_some());
    assert_eq!(
        failing.message().await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
    // Messages came first, so the status could only travel in the trailers.
    assert_eq!(*heads.lock().unwrap(), [None, None]);

    let method = ("rpc_method", "demo.Greeter/Count");
    let text = eventually(Duration::from_secs(5), || {
        let text = obs.render_metrics();
        sample(&text, RPC_COUNT, &[method, ("rpc_grpc_status_code", "14")]).map(|_| text)
    })
    .await
    .expect("the failed stream was never recorded");
    let ok_seconds = sample(&text, RPC_SUM, &[method, ("rpc_grpc_status_code", "0")]).unwrap();
    assert!(
        ok_seconds >= 0.3,
        "a 5 x 60 ms stream was recorded as {ok_seconds} s"
    );
    assert_eq!(
        sample(
            &text,
            RPC_COUNT,
            &[
                method,
                ("rpc_grpc_status_code", "14"),
                ("error_type", "UNAVAILABLE")
            ]
        ),
        Some(1.0),
        "UNAVAILABLE in the trailers of a stream is a server error"
    );
}

#[tokio::test]
async fn a_stream_cancelled_by_the_client_is_recorded_as_cancelled() {
    let obs = isolated("grpc-cancel").build().unwrap();
    let mut client = connect(start(&obs).await).await;
    let mut stream = client
        .count(CountRequest {
            n: 1000,
            delay_ms: 20,
            fail_with: 0,
        })
        .await
        .unwrap();
    assert!(stream.message().await.unwrap().is_some());
    assert_eq!(
        sample(&obs.render_metrics(), "http_server_active_requests", &[]),
        Some(1.0)
    );
    drop(stream);

    let cancelled = [
        ("rpc_method", "demo.Greeter/Count"),
        ("rpc_grpc_status_code", "1"),
        ("error_type", "cancelled"),
    ];
    let text = eventually(Duration::from_secs(5), || {
        let text = obs.render_metrics();
        sample(&text, RPC_COUNT, &cancelled).map(|_| text)
    })
    .await
    .expect("the cancelled stream was never recorded");
    assert_eq!(sample(&text, RPC_COUNT, &cancelled), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[
                ("http_response_status_code", "499"),
                ("error_type", "cancelled")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "http_server_active_requests", &[]), Some(0.0));
}

#[tokio::test]
async fn a_unary_call_cancelled_by_the_client_is_timed_to_the_cancellation() {
    let obs = isolated("grpc-unary-cancel").build().unwrap();
    let mut client = connect(start(&obs).await).await;
    // The handler would take 5 s; the client gives up after 200 ms.
    let call = client.say_hello(slow_hello(0, 5_000));
    let gave_up = tokio::time::timeout(Duration::from_millis(200), call).await;
    assert!(
        gave_up.is_err(),
        "the call finished before the client gave up"
    );

    let cancelled = [
        ("rpc_method", "demo.Greeter/SayHello"),
        ("rpc_grpc_status_code", "1"),
        ("error_type", "cancelled"),
    ];
    let text = eventually(Duration::from_secs(4), || {
        let text = obs.render_metrics();
        sample(&text, RPC_COUNT, &cancelled).map(|_| text)
    })
    .await
    .expect("the cancelled call was never recorded (or only when the handler ended)");
    let (seconds, calls) = rpc_seconds(&text, &cancelled);
    assert_eq!(calls, 1.0);
    assert!(
        (0.2..4.0).contains(&seconds),
        "a call cancelled after 200 ms was recorded as {seconds} s"
    );
    assert_eq!(
        sample(
            &text,
            HTTP_COUNT,
            &[
                ("http_route", "/demo.Greeter/SayHello"),
                ("http_response_status_code", "499"),
                ("error_type", "cancelled")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "http_server_active_requests", &[]), Some(0.0));
}

#[tokio::test]
async fn a_tonic_service_mounted_in_an_axum_router_records_each_method() {
    let obs = isolated("grpc-in-axum").build().unwrap();
    // tonic mounts the service as `/demo.Greeter/{*rest}`; an HTTP route sits beside it.
    let app = tonic::service::Routes::new(Greeter)
        .into_axum_router()
        .route("/users/{id}", post(|| async { "user" }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let mut client = connect(addr).await;
    client.say_hello(hello(0)).await.unwrap();
    client.say_hello(hello(14)).await.unwrap_err();
    let mut stream = client
        .count(CountRequest {
            n: 2,
            delay_ms: 1,
            fail_with: 0,
        })
        .await
        .unwrap();
    while stream.message().await.unwrap().is_some() {}
    // A gRPC content-type does not turn an HTTP route's path into a label.
    let req = http::Request::post(format!("http://{addr}/users/7"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client_request(req).await;
    assert_eq!(res.0, 200);

    let count = [("rpc_method", "demo.Greeter/Count")];
    let text = eventually(Duration::from_secs(5), || {
        let text = obs.render_metrics();
        sample(&text, RPC_COUNT, &count).map(|_| text)
    })
    .await
    .expect("the stream was never recorded");
    let method = |m: &str, code: &str| {
        let labels = [("rpc_method", m), ("rpc_grpc_status_code", code)];
        sample(&text, RPC_COUNT, &labels)
    };
    assert_eq!(method("demo.Greeter/SayHello", "0"), Some(1.0));
    assert_eq!(method("demo.Greeter/SayHello", "14"), Some(1.0));
    assert_eq!(method("demo.Greeter/Count", "0"), Some(1.0));
    let route = |r: &str| sample(&text, HTTP_COUNT, &[("http_route", r)]);
    assert_eq!(route("/demo.Greeter/SayHello"), Some(2.0));
    assert_eq!(route("/demo.Greeter/Count"), Some(1.0));
    assert_eq!(route("/users/{id}"), Some(1.0));
    assert!(
        !text.contains("{*rest}"),
        "the catch-all became a label:\n{text}"
    );
    assert!(!text.contains("/users/7"), "a raw path became a label");
}

/// Sends a request with a plain HTTP/1 client; returns the status and the whole body.
async fn client_request(req: http::Request<Full<Bytes>>) -> (u16, Bytes) {
    let res = client().request(req).await.unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

/// One gRPC message frame (uncompressed) holding `payload`.
fn grpc_frame(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![flags];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A gRPC-Web response as a server sends it: a message, then the status in a trailer
/// frame (flag 0x80) inside the body; no HTTP trailers.
fn grpc_web_response(status_in_body: &str) -> http::Response<Body> {
    let mut body = grpc_frame(0, b"\x0a\x02hi");
    let trailers = format!("grpc-status:{status_in_body}\r\n");
    body.extend(grpc_frame(0x80, trailers.as_bytes()));
    http::Response::builder()
        .header("content-type", "application/grpc-web+proto")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn grpc_web_counts_as_its_head_says() {
    let obs = isolated("grpc-web").build().unwrap();
    let app = axum::Router::new()
        .route("/pkg.Web/Ok", post(|| async { grpc_web_response("0") }))
        .route(
            "/pkg.Web/TrailersOnly",
            post(|| async {
                http::Response::builder()
                    .header("content-type", "application/grpc-web+proto")
                    .header("grpc-status", "14")
                    .header("grpc-message", "backend%20down")
                    .body(Body::empty())
                    .unwrap()
            }),
        )
        .route(
            "/pkg.Web/Invalid",
            post(|| async {
                http::Response::builder()
                    .header("content-type", "application/grpc-web-text+proto")
                    .header("grpc-status", "3")
                    .body(Body::empty())
                    .unwrap()
            }),
        )
        // A proxy in front answering for a backend that is down: no gRPC at all.
        .route(
            "/pkg.Web/Proxy",
            post(|| async {
                http::Response::builder()
                    .status(503)
                    .header("content-type", "text/plain")
                    .body(Body::from("upstream unavailable"))
                    .unwrap()
            }),
        )
        // A failure only the body's trailer frame reports: not decoded (documented).
        .route(
            "/pkg.Web/FailsInBody",
            post(|| async { grpc_web_response("13") }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;
    let call = |method: &'static str, content_type: &'static str| {
        let req = http::Request::post(format!("http://{addr}/pkg.Web/{method}"))
            .header("content-type", content_type)
            .header("x-grpc-web", "1")
            .body(Full::new(Bytes::from(grpc_frame(0, b""))))
            .unwrap();
        client_request(req)
    };
    let (status, body) = call("Ok", "application/grpc-web+proto").await;
    assert_eq!(status, 200);
    assert!(
        body.ends_with(b"grpc-status:0\r\n"),
        "the client got the trailer frame"
    );
    assert_eq!(call("Ok", "application/grpc-web-text").await.0, 200);
    assert_eq!(call("TrailersOnly", "application/grpc-web").await.0, 200);
    assert_eq!(
        call("Invalid", "application/grpc-web-text+proto").await.0,
        200
    );
    assert_eq!(call("Proxy", "application/grpc-web+proto").await.0, 503);
    assert_eq!(
        call("FailsInBody", "application/grpc-web+proto").await.0,
        200
    );

    let text = obs.render_metrics();
    let rpc = |method: &str, code: &str| {
        let labels = [("rpc_method", method), ("rpc_grpc_status_code", code)];
        sample(&text, RPC_COUNT, &labels)
    };
    // Series of `method` with any error_type.
    let errors = |method: &str| {
        text.lines()
            .filter(|l| l.starts_with(RPC_COUNT) && l.contains(&format!("\"{method}\"")))
            .filter(|l| l.contains("error_type="))
            .count()
    };
    // Status in the body: the head says OK, and OK is not UNKNOWN.
    assert_eq!(rpc("pkg.Web/Ok", "0"), Some(2.0));
    assert_eq!(errors("pkg.Web/Ok"), 0, "{text}");
    // Trailers-only: read exactly.
    assert_eq!(
        sample(
            &text,
            RPC_COUNT,
            &[
                ("rpc_method", "pkg.Web/TrailersOnly"),
                ("rpc_grpc_status_code", "14"),
                ("error_type", "UNAVAILABLE")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(rpc("pkg.Web/Invalid", "3"), Some(1.0));
    assert_eq!(errors("pkg.Web/Invalid"), 0);
    // No gRPC status at all: the gRPC mapping of the HTTP status.
    assert_eq!(
        sample(
            &text,
            RPC_COUNT,
            &[
                ("rpc_method", "pkg.Web/Proxy"),
                ("rpc_grpc_status_code", "14"),
                ("error_type", "UNAVAILABLE")
            ]
        ),
        Some(1.0)
    );
    // The limit of not decoding bodies: a status only the trailer frame carries is unseen.
    assert_eq!(rpc("pkg.Web/FailsInBody", "0"), Some(1.0));
    assert_eq!(
        sample(&text, HTTP_COUNT, &[("error_type", "UNKNOWN")]),
        None,
        "a gRPC-Web response was taken for a broken server"
    );
}

#[tokio::test]
async fn promtool_is_clean_with_grpc_series() {
    let obs = isolated("grpc-promtool").build().unwrap();
    let mut client = connect(start(&obs).await).await;
    for code in [0, 3, 14] {
        let _ = client.say_hello(hello(code)).await;
    }
    let text = obs.render_metrics();
    assert!(text.contains("rpc_server_call_duration_seconds_bucket"));
    let out = promtool_check_metrics(&text);
    assert!(out.is_empty(), "promtool: {out}\n{text}");
}

#[tokio::test]
async fn invented_methods_under_a_catch_all_stop_at_the_route_cap() {
    // Method paths become routes, so a caller inventing them is held by the cap.
    let obs = isolated("grpc-flood").route_limit(5).build().unwrap();
    let app = tonic::service::Routes::new(Greeter)
        .into_axum_router()
        .layer(obs.layer());
    let addr = serve(app).await;
    for i in 0..200 {
        let req = http::Request::post(format!("http://{addr}/demo.Greeter/Invented{i}"))
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(client_request(req).await.0, 200);
    }
    let text = obs.render_metrics();
    let routes: std::collections::BTreeSet<_> = text
        .lines()
        .filter(|l| l.starts_with(HTTP_COUNT))
        .map(|l| {
            l.split("http_route=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(routes.len(), 6, "five routes and overflow: {routes:?}");
    assert!(routes.contains("overflow"));
    assert_eq!(
        sample(&text, "tower_observability_routes_overflowed_total", &[]),
        Some(195.0)
    );
    // UNIMPLEMENTED is a server fault: a caller probing methods shows as errors.
    assert_eq!(
        sample(&text, RPC_COUNT, &[("error_type", "UNIMPLEMENTED")]),
        Some(200.0)
    );
}

#[tokio::test]
async fn a_call_over_its_rate_limit_is_resource_exhausted_trailers_only() {
    use tower_observability::rate_limit::{Key, Policy, RateLimit};
    let obs = isolated("grpc-rate-limit")
        .rate_limit(RateLimit::new(
            Policy::new("calls", "1/min;burst=1").key(Key::Global),
        ))
        .build()
        .unwrap();
    let addr = start(&obs).await;
    let (mut client, heads) = connect_noting_heads(addr).await;
    assert!(client.say_hello(hello(0)).await.is_ok());
    let status = client.say_hello(hello(0)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "rate limit exceeded");
    let pushback = status.metadata().get("grpc-retry-pushback-ms").unwrap();
    assert_eq!(pushback, "60000");
    // Trailers-only: the status is in the head the client received.
    assert_eq!(heads.lock().unwrap().last().unwrap().as_deref(), Some("8"));
    // Recorded as RESOURCE_EXHAUSTED, which is not a server fault.
    let text = obs.render_metrics();
    let exhausted = [("rpc_grpc_status_code", "8")];
    assert_eq!(sample(&text, RPC_COUNT, &exhausted), Some(1.0));
    assert!(
        !text.contains("error_type=\"RESOURCE_EXHAUSTED\""),
        "{text}"
    );
}
