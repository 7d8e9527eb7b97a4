//! A Sentry envelope endpoint on 127.0.0.1: `POST /api/{project}/envelope/` stores the raw
//! bytes and answers 200, as Sentry does, or slowly, or with the status and headers a test
//! sets ([`SentryEndpoint::answer`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// How the endpoint answers: after `delay`, with `status` and `headers`. Envelopes are
/// stored only when the status is a success.
#[derive(Debug, Clone)]
pub struct Answer {
    pub delay: Duration,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            delay: Duration::ZERO,
            status: 200,
            headers: Vec::new(),
        }
    }
}

#[derive(Clone, Default)]
pub struct SentryEndpoint {
    pub addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
    /// Every post, stored or not.
    posts: Arc<std::sync::atomic::AtomicUsize>,
}

impl SentryEndpoint {
    /// Starts the endpoint on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_answering(Answer::default()).await
    }

    /// Starts the endpoint, answering as `answer` says until told otherwise.
    pub async fn start_answering(answer: Answer) -> Self {
        let endpoint = SentryEndpoint::default();
        *endpoint.answer.lock().unwrap() = answer;
        let app = Router::new()
            .route("/api/{project}/envelope/", post(store))
            .with_state(endpoint.clone());
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

    /// From now on, answer as `answer` says.
    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// How many envelopes were posted, stored or not.
    pub fn posts(&self) -> usize {
        self.posts.load(std::sync::atomic::Ordering::SeqCst)
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
    State(endpoint): State<SentryEndpoint>,
    Path(project): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    endpoint
        .posts
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let answer = endpoint.answer.lock().unwrap().clone();
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let status = http::StatusCode::from_u16(answer.status).unwrap();
    if status.is_success() {
        let auth = headers
            .get("x-sentry-auth")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        endpoint.received.lock().unwrap().push(Received {
            project,
            auth,
            raw: body,
        });
    }
    let mut res = (status, "{}").into_response();
    for (name, value) in answer.headers {
        res.headers_mut()
            .insert(name, http::HeaderValue::from_str(&value).unwrap());
    }
    res
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
