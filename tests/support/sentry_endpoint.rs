//! A Sentry envelope endpoint on 127.0.0.1: `POST /api/{project}/envelope/` stores the raw
//! bytes and answers 200, as Sentry does; plus endpoints that are down or hang.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// One envelope as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub project: String,
    pub auth: Option<String>,
    pub raw: Bytes,
}

#[derive(Clone, Default)]
pub struct SentryEndpoint {
    pub addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SentryEndpoint {
    /// Starts the endpoint on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        let endpoint = SentryEndpoint::default();
        let app = Router::new()
            .route("/api/{project}/envelope/", post(store))
            .with_state(endpoint.received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        SentryEndpoint {
            addr: Some(addr),
            ..endpoint
        }
    }

    /// The DSN pointing at this endpoint (project 42).
    pub fn dsn(&self) -> String {
        format!("http://public-key@{}/42", self.addr.unwrap())
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every event item received so far, decoded.
    pub fn events(&self) -> Vec<Value> {
        self.received()
            .iter()
            .flat_map(|r| decode_envelope(&r.raw))
            .filter(|(header, _)| header["type"] == "event")
            .map(|(_, payload)| serde_json::from_slice(&payload).unwrap())
            .collect()
    }
}

async fn store(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    Path(project): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> &'static str {
    let auth = headers
        .get("x-sentry-auth")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    received.lock().unwrap().push(Received {
        project,
        auth,
        raw: body,
    });
    "{}"
}

/// Splits an envelope into its items: (item header, payload). The envelope header (the
/// first line) is checked to be JSON and skipped.
pub fn decode_envelope(raw: &[u8]) -> Vec<(Value, Vec<u8>)> {
    let mut rest = raw;
    let line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = rest[..end].to_vec();
        *rest = &rest[(end + 1).min(rest.len())..];
        Some(line)
    };
    let header = line(&mut rest).expect("an envelope starts with a header line");
    let _: Value = serde_json::from_slice(&header).expect("the envelope header is JSON");
    let mut items = Vec::new();
    while let Some(item_header) = line(&mut rest) {
        if item_header.is_empty() {
            continue;
        }
        let item: Value = serde_json::from_slice(&item_header).expect("item header is JSON");
        let payload = match item["length"].as_u64() {
            Some(len) => {
                let len = len as usize;
                let payload = rest[..len].to_vec();
                rest = &rest[len..];
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                }
                payload
            }
            None => line(&mut rest).unwrap_or_default(),
        };
        items.push((item, payload));
    }
    items
}
