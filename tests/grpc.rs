//! gRPC through a real tonic server and client on 127.0.0.1: every status recorded with
//! its code, duration and error classification.

#[path = "../examples/common/greeter.rs"]
mod greeter;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use greeter::{CountRequest, Greeter, GreeterClient, HelloRequest};
use support::*;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tower_observability::Observability;

const RPC_COUNT: &str = "rpc_server_call_duration_seconds_count";
const RPC_SUM: &str = "rpc_server_call_duration_seconds_sum";

async fn start(obs: &Observability) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .layer(obs.layer())
        .add_service(Greeter)
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

async fn connect(addr: SocketAddr) -> GreeterClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    GreeterClient::new(channel)
}

fn hello(fail_with: i32) -> HelloRequest {
    HelloRequest {
        name: "test".into(),
        fail_with,
    }
}

#[tokio::test]
async fn unary_codes_are_recorded_and_classified() {
    let obs = isolated("grpc-unary").build().unwrap();
    let mut client = connect(start(&obs).await).await;
    assert_eq!(
        client.say_hello(hello(0)).await.unwrap().message,
        "hello test"
    );
    for code in [3, 14, 13] {
        let status = client.say_hello(hello(code)).await.unwrap_err();
        assert_eq!(status.code() as i32, code);
    }
    let text = obs.render_metrics();
    let method = ("rpc_method", "demo.Greeter/SayHello");
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
async fn streams_are_timed_to_their_end_and_trailer_errors_count() {
    let obs = isolated("grpc-stream").build().unwrap();
    let mut client = connect(start(&obs).await).await;
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
