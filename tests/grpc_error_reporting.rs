//! gRPC server faults reported to Sentry through a real tonic server and client on
//! 127.0.0.1 and the Sentry envelope endpoint of `support`: UNAVAILABLE and INTERNAL are
//! reported whether they came trailers-only or in the trailers after messages;
//! INVALID_ARGUMENT and OK are not.

#[path = "../examples/common/greeter.rs"]
mod greeter;
#[path = "support/grpc.rs"]
mod grpc_support;
mod support;

use std::time::Duration;

use greeter::{CountReply, CountRequest, HelloRequest};
use grpc_support::*;
use support::sentry_endpoint::*;
use support::sentry_events::{events, message, tag};
use support::*;
use tonic::Code;

fn hello(fail_with: i32) -> HelloRequest {
    HelloRequest {
        name: "test".into(),
        fail_with,
    }
}

/// Two messages, then `fail_with`.
fn count(fail_with: i32) -> CountRequest {
    CountRequest {
        n: 2,
        delay_ms: 1,
        fail_with,
    }
}

/// Reads a stream to its end: the code it ended with.
async fn drain(mut stream: tonic::Streaming<CountReply>) -> Code {
    loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => return Code::Ok,
            Err(status) => return status.code(),
        }
    }
}

/// A call of the Greeter asking the server to end with a status code.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// Unary `SayHello`.
    Hello(i32),
    /// Server-streaming `Count`: two messages, then the status.
    Count(i32),
}

#[tokio::test]
async fn grpc_server_faults_from_a_real_tonic_server_are_reported_and_client_faults_are_not() {
    let endpoint = SentryEndpoint::start().await;
    let obs = isolated("greeter")
        .sentry(tower_observability::Sentry::dsn(endpoint.dsn()))
        .build()
        .unwrap();
    let (mut client, heads) = connect_noting_heads(start(&obs).await).await;

    // First what must not be reported: the transport sends in order, so had any of these
    // been reported it would arrive before the faults below. Then the server faults:
    // trailers-only, then in the trailers after two messages.
    for (call, code) in [
        (Call::Hello(0), Code::Ok),
        (Call::Hello(3), Code::InvalidArgument),
        (Call::Count(0), Code::Ok),
        (Call::Count(3), Code::InvalidArgument),
        (Call::Hello(14), Code::Unavailable),
        (Call::Hello(13), Code::Internal),
        (Call::Count(14), Code::Unavailable),
        (Call::Count(13), Code::Internal),
    ] {
        let got = match call {
            Call::Hello(fail_with) => match client.say_hello(hello(fail_with)).await {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            },
            Call::Count(fail_with) => drain(client.count(count(fail_with)).await.unwrap()).await,
        };
        assert_eq!(got, code, "{call:?}");
    }
    // Where each status travelled, as seen on the wire.
    let seen: Vec<_> = heads.lock().unwrap().clone();
    let head = |code: &str| Some(code.to_owned());
    assert_eq!(
        seen,
        [
            None,
            head("3"),
            None,
            None,
            head("14"),
            head("13"),
            None,
            None
        ],
        "unary errors come trailers-only, stream errors in the trailers"
    );

    let events = events(&endpoint, 4).await;
    assert!(obs.flush_sentry(Duration::from_secs(5)));
    assert_eq!(endpoint.events().len(), 4, "{:#?}", endpoint.events());

    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["transaction"].as_str().unwrap().to_owned(),
                tag(e, "rpc.grpc.status_code").to_owned(),
                tag(e, "error.type").to_owned(),
            )
        })
        .collect();
    let expected = |route: &str, code: &str, error: &str| {
        (format!("POST {route}"), code.to_owned(), error.to_owned())
    };
    assert_eq!(
        summary,
        [
            expected("/demo.Greeter/SayHello", "14", "UNAVAILABLE"),
            expected("/demo.Greeter/SayHello", "13", "INTERNAL"),
            expected("/demo.Greeter/Count", "14", "UNAVAILABLE"),
            expected("/demo.Greeter/Count", "13", "INTERNAL"),
        ],
        "only the server faults, in order"
    );
    for event in &events {
        assert_eq!(event["level"].as_str().unwrap_or("error"), "error");
        assert_eq!(tag(event, "status"), "200", "gRPC faults ride on HTTP 200");
    }
    // The grpc-message travels with the report, from the head or from the trailers.
    assert_eq!(
        message(&events[0]),
        "POST /demo.Greeter/SayHello failed with gRPC UNAVAILABLE: asked to fail"
    );
    assert_eq!(
        message(&events[3]),
        "POST /demo.Greeter/Count failed with gRPC INTERNAL: stream failed"
    );
}
