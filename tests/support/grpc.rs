//! A real tonic Greeter server behind the layer and clients for it, on 127.0.0.1, shared
//! by the gRPC tests (included with `#[path]` beside `mod greeter`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tower::ServiceBuilder;
use tower_observability::Observability;

use crate::greeter::{Greeter, GreeterClient};

/// Serves the Greeter with `obs`'s layer on a free port.
pub async fn start(obs: &Observability) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .layer(obs.layer())
        .add_service(Greeter)
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A plain client.
#[allow(dead_code)]
pub async fn connect(addr: SocketAddr) -> GreeterClient<Channel> {
    GreeterClient::new(channel(addr).await)
}

/// What the client saw of each response head: the `grpc-status` in it, if any (there is
/// one only in a trailers-only response).
pub type Heads = Arc<Mutex<Vec<Option<String>>>>;

/// A client that notes every response head it receives, as it arrived off the wire.
pub async fn connect_noting_heads(
    addr: SocketAddr,
) -> (
    GreeterClient<
        impl tonic::client::GrpcService<
            tonic::body::Body,
            ResponseBody = tonic::body::Body,
            Error = tonic::transport::Error,
        >,
    >,
    Heads,
) {
    let heads = Heads::default();
    let noted = heads.clone();
    let note = move |res: http::Response<tonic::body::Body>| {
        let status = res.headers().get("grpc-status");
        let status = status.map(|v| v.to_str().unwrap().to_owned());
        noted.lock().unwrap().push(status);
        res
    };
    let channel = ServiceBuilder::new()
        .map_response(note)
        .service(channel(addr).await);
    (GreeterClient::new(channel), heads)
}
