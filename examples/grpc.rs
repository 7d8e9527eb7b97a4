//! gRPC: a tonic server with the one layer (unary and server-streaming methods), and a
//! tonic client with the outbound propagation layer, so each call is one trace from client
//! to server and every gRPC status is recorded with its code and classified.
//!
//! Run with `cargo run --example grpc --features grpc` (the feature brings tonic); it serves
//! on `GRPC_ADDR` (default 127.0.0.1:50051), the admin port on `GRPC_ADMIN_ADDR` (default
//! 127.0.0.1:9465), makes a few calls, prints what each did, then where to read `/metrics`.
//! Ctrl-C stops it.

#[path = "common/greeter.rs"]
mod greeter;
#[path = "common/listen.rs"]
mod listen;

use std::sync::{Arc, Mutex};

use greeter::{CountRequest, Greeter, GreeterClient, HelloRequest};
use tokio_stream::wrappers::TcpListenerStream;
use tower::ServiceBuilder;
use tower_observability::trace::TRACEPARENT;
use tower_observability::Observability;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let obs = Observability::from_env("greeter")?.build()?;
    let admin = listen::serve_admin(&obs, "GRPC_ADMIN_ADDR", "127.0.0.1:9465");
    let listener = listen::listen("GRPC_ADDR", "127.0.0.1:50051").await;
    let addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .layer(obs.layer())
        .add_service(Greeter)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), obs.shutdown_signal());
    let server = tokio::spawn(server);
    println!("gRPC server with the layer on http://{addr}");
    println!("  (listen elsewhere: GRPC_ADDR=host:port GRPC_ADMIN_ADDR=host:port)");

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    // The client layer opens a client span per call and sends it as `traceparent`; the
    // layer after it only notes what went on the wire, for this demo to print.
    let sent = Arc::new(Mutex::new(String::new()));
    let noted = sent.clone();
    let channel = ServiceBuilder::new()
        .layer(obs.client_layer())
        .map_request(move |req: http::Request<tonic::body::Body>| {
            let traceparent = req.headers().get(TRACEPARENT);
            let traceparent = traceparent.and_then(|v| v.to_str().ok()).unwrap_or("");
            *noted.lock().unwrap() = traceparent.to_owned();
            req
        })
        .service(channel);
    let mut client = GreeterClient::new(channel);

    let hello = client
        .say_hello(HelloRequest {
            name: "world".into(),
            fail_with: 0,
        })
        .await?;
    let traceparent = sent.lock().unwrap().clone();
    println!("SayHello -> {:?} (OK)", hello.message);
    println!("  client sent  traceparent: {traceparent}");
    println!("  server handled it in trace {}", hello.trace_id);
    let continued = traceparent.split('-').nth(1) == Some(hello.trace_id.as_str());
    println!(
        "  {}",
        if continued {
            "one trace from client to server"
        } else {
            "the trace did NOT continue (is OBSERVABILITY_TRACING off?)"
        }
    );
    for (code, name) in [
        (3, "INVALID_ARGUMENT"),
        (14, "UNAVAILABLE"),
        (13, "INTERNAL"),
    ] {
        let err = client
            .say_hello(HelloRequest {
                name: "x".into(),
                fail_with: code,
            })
            .await
            .unwrap_err();
        println!("SayHello asked for {name} -> {:?}", err.code());
    }
    let mut stream = client
        .count(CountRequest {
            n: 5,
            delay_ms: 20,
            fail_with: 0,
        })
        .await?;
    let mut received = 0;
    while stream.message().await?.is_some() {
        received += 1;
    }
    println!("Count -> {received} messages streamed, timed to the end of the stream (OK)");

    // What the layer recorded: UNAVAILABLE and INTERNAL carry `error_type` (server faults),
    // INVALID_ARGUMENT does not (the caller's fault).
    println!("Recorded:");
    let exposition = obs.render_metrics();
    let calls = exposition
        .lines()
        .filter(|l| l.starts_with("rpc_server_call_duration_seconds_count"));
    for line in calls {
        println!("  {line}");
    }

    let metrics = format!("http://{}/metrics", admin.local_addr());
    println!("Metrics on {metrics}; try:");
    println!("  curl -s '{metrics}' | grep rpc_server_call_duration_seconds_count");
    println!("Ctrl-C to stop.");
    server.await??;
    Ok(())
}
