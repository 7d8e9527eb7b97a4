//! gRPC: a tonic server with the one layer (unary and server-streaming methods), and a
//! client calling it, so every gRPC status is recorded with its code and classified.
//!
//! Run with `cargo run --example grpc`; it serves on `GRPC_ADDR` (default 127.0.0.1:50051),
//! the admin port on `GRPC_ADMIN_ADDR` (default 127.0.0.1:9465), makes a few calls, and
//! prints where to read `/metrics`. Ctrl-C stops it.

#[path = "common/greeter.rs"]
mod greeter;

use greeter::{CountRequest, Greeter, GreeterClient, HelloRequest};
use tokio_stream::wrappers::TcpListenerStream;
use tower_observability::Observability;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("GRPC_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let admin_addr = std::env::var("GRPC_ADMIN_ADDR").unwrap_or_else(|_| "127.0.0.1:9465".into());

    let obs = Observability::from_env("greeter")?.build()?;
    let admin = obs.serve_admin(&admin_addr)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .layer(obs.layer())
        .add_service(Greeter)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        });
    let server = tokio::spawn(server);

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = GreeterClient::new(channel);
    let hello = client
        .say_hello(HelloRequest {
            name: "world".into(),
            fail_with: 0,
        })
        .await?;
    println!("SayHello: {}", hello.message);
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
        println!("SayHello asked for {name}: got {:?}", err.code());
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
    println!("Count: {received} messages streamed");

    println!(
        "gRPC server on http://{addr}; metrics on http://{}/metrics",
        admin.local_addr()
    );
    println!(
        "  curl -s http://{}/metrics | grep rpc_server_call_duration_seconds_count",
        admin.local_addr()
    );
    println!("Ctrl-C to stop.");
    server.await??;
    Ok(())
}
