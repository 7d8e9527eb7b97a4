//! Test support: servers on 127.0.0.1, a client, and a reader for the exposition format.
#![allow(dead_code, unreachable_pub)]

pub mod caller;
pub mod cost;
pub mod env;
pub mod exposition;
pub mod load;
pub mod otlp_receiver;
pub mod processes;
pub mod redis;
pub mod requests;
pub mod sentry_endpoint;
pub mod sentry_events;
pub mod tools;

// `processes` and the tests that start chromium or prometheus name it `support::tool`.
pub use tools::tool;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_observability::{MetricsBackend, Observability, ObservabilityBuilder};

/// A builder with a private registry, so tests in one binary do not see each other's series.
pub fn isolated(name: &str) -> ObservabilityBuilder {
    Observability::builder(name).metrics_backend(MetricsBackend::IsolatedPrometheus)
}

/// Serves `app` on 127.0.0.1 with an ephemeral port, until the test's runtime ends.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and reads the whole response.
pub async fn send(
    client: &HttpClient,
    method: &str,
    uri: &str,
    body: &'static [u8],
) -> (u16, Bytes) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// A sample's labels, unescaped, in their order.
pub type Labels = Vec<(String, String)>;

/// One sample line of the text exposition: its name, its labels, its value.
pub fn parse_sample(line: &str) -> Option<(&str, Labels, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, mut rest)) = series.split_once('{') else {
        return Some((series, Vec::new(), value));
    };
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches(',');
        if rest.starts_with('}') || rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => text.push('\n'),
                    c => text.push(c),
                },
                (_, c) => text.push(c),
            }
        };
        labels.push((key.to_owned(), text));
        rest = &after[end + 1..];
    }
    Some((name, labels, value))
}

/// The sum of the samples `name{...}` whose labels include every pair given (each matched
/// exactly), or `None` when none match.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    matching(text, name, labels, false)
}

/// The sample `name{...}` whose labels are exactly the pairs given, no more.
pub fn exact_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    matching(text, name, labels, true)
}

fn matching(text: &str, name: &str, wanted: &[(&str, &str)], exact: bool) -> Option<f64> {
    let mut total = None;
    for (metric, labels, value) in text.lines().filter_map(parse_sample) {
        let has = |(k, v): &(&str, &str)| labels.iter().any(|(lk, lv)| lk == k && lv == v);
        if metric == name
            && wanted.iter().all(has)
            && (!exact || labels.iter().filter(|(k, _)| k != "le").count() == wanted.len())
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// Number of sample lines (series) in an exposition.
pub fn series_count(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[path = "../../benches/support/memory.rs"]
mod memory;
#[allow(unused_imports)] // Not every test binary measures memory.
pub use memory::rss_bytes;

/// Runs `promtool check metrics` on an exposition; returns what it printed (empty: clean).
pub fn promtool_check_metrics(text: &str) -> String {
    let mut promtool = std::process::Command::new(tool("promtool", "prometheus"));
    let out = processes::run_with_input(promtool.args(["check", "metrics"]), text);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        printed.trim().to_owned()
    } else {
        format!("exit {}: {printed}", out.status)
    }
}

/// A writer log lines go to, for a test to read (a `tracing_subscriber` `MakeWriter`).
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A port on 127.0.0.1 nothing listens on.
///
/// Below the kernel's ephemeral range (32768 and up), so no receiver of another test that
/// binds port 0 can be handed it while it is meant to be closed, and never the same one
/// twice in a process.
pub fn closed_port() -> SocketAddr {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap();
    let given = given.get_or_insert_with(HashSet::new);
    // A start that differs between test binaries running at once.
    let start = 20_000 + (std::process::id() % 1_000) as u16 * 12;
    (0..12_000u16)
        .map(|i| 20_000 + (start - 20_000 + i) % 12_000)
        .find(|port| {
            !given.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .map(|port| {
            given.insert(port);
            SocketAddr::from(([127, 0, 0, 1], port))
        })
        .expect("a free port below the ephemeral range")
}

/// An endpoint that accepts connections and never answers (nor closes them).
pub async fn hanging_endpoint() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}
