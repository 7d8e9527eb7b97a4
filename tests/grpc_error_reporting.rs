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
use serde_json::Value;
use support::sentry_endpoint::*;
use support::*;

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
async fn drain(mut stream: tonic::Streaming<CountReply>) -> tonic::Code {
    loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => return tonic::Code::Ok,
            Err(status) => return status.code(),
        }
    }
}

fn tag<'a>(event: &'a Value, name: &str) -> &'a str {
    event["tags"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no tag {name} in {event:#}"))
}

fn message(event: &Value) -> &str {
    event["message"]["formatted"]
        .as_str()
        .or(event["message"].as_str())
        .unwrap_or_else(|| panic!("no message in {event:#}"))
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
    // been reported it would arrive before the faults below.
    client.say_hello(hello(0)).await.unwrap();
    let invalid = client.say_hello(hello(3)).await.unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        drain(client.count(count(0)).await.unwrap()).await,
        tonic::Code::Ok
    );
    assert_eq!(
        drain(client.count(count(3)).await.unwrap()).await,
        tonic::Code::InvalidArgument
    );
    // Then the server faults: trailers-only, then in the trailers after two messages.
    let unavailable = client.say_hello(hello(14)).await.unwrap_err();
    assert_eq!(unavailable.code(), tonic::Code::Unavailable);
    let internal = client.say_hello(hello(13)).await.unwrap_err();
    assert_eq!(internal.code(), tonic::Code::Internal);
    assert_eq!(
        drain(client.count(count(14)).await.unwrap()).await,
        tonic::Code::Unavailable
    );
    assert_eq!(
        drain(client.count(count(13)).await.unwrap()).await,
        tonic::Code::Internal
    );
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

    let events = eventually(Duration::from_secs(10), || {
        let events = endpoint.events();
        (events.len() >= 4).then_some(events)
    })
    .await
    .unwrap_or_else(|| panic!("expected 4 events, got {:#?}", endpoint.events()));
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
