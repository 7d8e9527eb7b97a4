//! Requests as clients send them: with headers through the HTTP client, as raw bytes over a
//! socket (what a client library would refuse to send, or a client that leaves), or in
//! process through the layer. Bodiless requests with headers only; `support::send` sends a
//! body.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_observability::Observability;

use super::HttpClient;

/// A client that speaks HTTP/2 with prior knowledge (h2c), as axum's server does.
pub fn h2c_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response as the client got it, its body read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends `method uri` with these headers (a name may repeat: each is a line) and reads the
/// whole reply.
pub async fn request(
    client: &HttpClient,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Writes `request` on a new connection and reads until the server closes it (10 s at most).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply))
        .await
        .expect("the server neither answered nor closed")
        .unwrap();
    reply
}

/// The value of response header `name` in a raw HTTP/1.1 reply (the first, if several).
pub fn raw_header<'a>(reply: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    reply[..head_end].split(|b| *b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        let (key, value) = line.split_at(colon);
        key.eq_ignore_ascii_case(name.as_bytes())
            .then(|| value[1..].trim_ascii())
    })
}

/// A connection that has sent `GET path` (HTTP/1.1, kept alive) and read nothing yet: a
/// client that can leave at any point by dropping it.
pub async fn raw_get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    socket
}

/// The first bytes that arrive on `socket` (10 s at most), as text.
pub async fn first_bytes(socket: &mut TcpStream) -> String {
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
        .await
        .expect("nothing arrived")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// One `GET path` in process (no socket) through `obs`'s layer over a router that answers
/// `path` with 200: its status.
pub async fn one_get(obs: &Observability, path: &str) -> u16 {
    use tower::ServiceExt;
    let app = axum::Router::new()
        .route(path, axum::routing::get(|| async { "ok" }))
        .layer(obs.layer());
    let req = http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    // The exchange ends with its body.
    res.into_body().collect().await.unwrap();
    status
}
