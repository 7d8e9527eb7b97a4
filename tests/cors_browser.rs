//! CORS as a browser enforces it: headless Chromium (Debian `chromium`) loads a page from
//! one loopback origin that calls the service on another with `fetch`, then a page from a
//! third origin the policy does not list. Each page posts what the browser allowed back to
//! its own server; the test asserts allowed exactly where the policy says.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use support::*;
use tokio::sync::mpsc;
use tower_observability::rate_limit::{Policy, RateLimit};
use tower_observability::Cors;

/// The page: runs every call, posts `{page, results}` to its own origin, then goes `next`.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>cors</title></head><body>
<script>
const API = "__API__";
async function call(name, path, init) {
  try {
    const res = await fetch(API + path, { ...init, signal: AbortSignal.timeout(10000) });
    const body = await res.text();
    return [name, { allowed: true, status: res.status, body,
      exposed: res.headers.get("x-request-id"), hidden: res.headers.get("x-internal") }];
  } catch (e) {
    return [name, { allowed: false, error: e.name }];
  }
}
(async () => {
  const results = Object.fromEntries([
    await call("simple_get", "/data", {}),
    await call("credentialed_json_post", "/data", { method: "POST", credentials: "include",
      headers: { "content-type": "application/json" }, body: JSON.stringify({ n: 1 }) }),
    await call("custom_header", "/data", { headers: { "x-custom": "yes" } }),
    await call("unlisted_header", "/data", { headers: { "x-secret": "no" } }),
    await call("unlisted_method", "/data", { method: "DELETE" }),
  ]);
  await fetch("/report", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ page: "__NAME__", results }) });
  if ("__NEXT__") location.href = "__NEXT__";
})();
</script></body></html>"#;

/// A page server: serves [`PAGE`] at `/` and forwards reports to the test.
async fn page_server(name: &str, api: &str, next: &str, reports: mpsc::Sender<Value>) -> String {
    page_server_with(PAGE, name, api, next, reports).await
}

/// A page server for the page `template`.
async fn page_server_with(
    template: &str,
    name: &str,
    api: &str,
    next: &str,
    reports: mpsc::Sender<Value>,
) -> String {
    let html = template
        .replace("__API__", api)
        .replace("__NAME__", name)
        .replace("__NEXT__", next);
    let app = Router::new()
        .route("/", get(move || async move { Html(html) }))
        .route(
            "/report",
            post(
                |State(tx): State<mpsc::Sender<Value>>, Json(v): Json<Value>| async move {
                    let _ = tx.send(v).await;
                },
            ),
        )
        .with_state(reports);
    format!("http://{}", serve(app).await)
}

/// Requests that reached the service's handlers, by method.
#[derive(Default)]
struct Hits {
    get: AtomicUsize,
    post: AtomicUsize,
    delete: AtomicUsize,
}

fn service(hits: Arc<Hits>) -> Router {
    let headers = [("x-request-id", "req-1"), ("x-internal", "secret")];
    Router::new()
        .route(
            "/data",
            get(move |State(h): State<Arc<Hits>>| async move {
                h.get.fetch_add(1, Ordering::SeqCst);
                (headers, "data")
            })
            .post(
                |State(h): State<Arc<Hits>>, Json(v): Json<Value>| async move {
                    h.post.fetch_add(1, Ordering::SeqCst);
                    Json(json!({ "got": v }))
                },
            )
            .delete(|State(h): State<Arc<Hits>>| async move {
                h.delete.fetch_add(1, Ordering::SeqCst);
                "deleted"
            }),
        )
        .with_state(hits)
}

/// Chromium, killed with its whole process group when the test ends, however it ends.
struct Browser {
    child: Child,
    profile: std::path::PathBuf,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let chromium = tool("chromium", "chromium");
        let profile = std::env::temp_dir().join(format!(
            "tower-observability-cors-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so the renderers go with it.
            .process_group(0)
            .spawn()
            .expect("start chromium");
        Browser { child, profile }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn outcome(results: &Value, name: &str) -> (bool, Value) {
    let r = &results[name];
    assert!(r.is_object(), "no result for {name}: {results}");
    (r["allowed"].as_bool().unwrap(), r.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_allows_exactly_what_the_policy_says() {
    let (tx, mut reports) = mpsc::channel(4);
    let hits = Arc::new(Hits::default());
    // Bind the service first: the allowed page's origin is only known once it listens.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api: SocketAddr = listener.local_addr().unwrap();
    let api = format!("http://{api}");
    let outsider = page_server("outsider", &api, "", tx.clone()).await;
    let allowed = page_server("allowed", &api, &format!("{outsider}/"), tx).await;

    let obs = isolated("cors-browser")
        .cors(
            Cors::allow_origins([allowed.as_str()])
                .allow_methods(["GET", "POST"])
                .allow_headers(["content-type", "x-custom"])
                .expose_headers(["x-request-id"])
                .allow_credentials(true),
        )
        .build()
        .unwrap();
    let app = service(hits.clone()).layer(obs.layer());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let _browser = Browser::open(&format!("{allowed}/"));
    let mut pages = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while pages.len() < 2 {
        let report = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .expect("Chromium did not report both pages within 90 s")
            .unwrap();
        let page = report["page"].as_str().unwrap().to_owned();
        pages.insert(page, report["results"].clone());
    }

    let page = &pages["allowed"];
    let (ok, r) = outcome(page, "simple_get");
    assert!(ok, "simple GET from the allowed origin: {r}");
    assert_eq!(
        (r["status"].as_u64(), r["body"].as_str()),
        (Some(200), Some("data"))
    );
    assert_eq!(r["exposed"], "req-1", "x-request-id is exposed");
    assert!(r["hidden"].is_null(), "x-internal is not exposed: {r}");
    let (ok, r) = outcome(page, "credentialed_json_post");
    assert!(ok, "credentialed JSON POST (preflighted): {r}");
    assert_eq!(r["body"], r#"{"got":{"n":1}}"#);
    let (ok, r) = outcome(page, "custom_header");
    assert!(ok, "listed custom header: {r}");
    for blocked in ["unlisted_header", "unlisted_method"] {
        let (ok, r) = outcome(page, blocked);
        assert!(!ok, "{blocked} must be blocked: {r}");
        assert_eq!(
            r["error"], "TypeError",
            "{blocked}: a CORS failure, not a timeout"
        );
    }

    let page = &pages["outsider"];
    for name in [
        "simple_get",
        "credentialed_json_post",
        "custom_header",
        "unlisted_header",
        "unlisted_method",
    ] {
        let (ok, r) = outcome(page, name);
        assert!(!ok, "{name} from an unlisted origin must be blocked: {r}");
        assert_eq!(r["error"], "TypeError", "{name}");
    }

    // What reached the handlers: preflights that failed stopped the request itself.
    // GETs: allowed simple + custom header, and the outsider's simple GET (sent, unreadable).
    assert_eq!(hits.get.load(Ordering::SeqCst), 3);
    assert_eq!(
        hits.post.load(Ordering::SeqCst),
        1,
        "only the allowed page's POST"
    );
    assert_eq!(
        hits.delete.load(Ordering::SeqCst),
        0,
        "no DELETE got past its preflight"
    );

    let text = obs.render_metrics();
    let refused = |reason| {
        sample(
            &text,
            "tower_observability_cors_refused_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert!(refused("origin") >= 5.0, "every outsider call: {text}");
    assert!(refused("method") >= 1.0);
    assert!(refused("headers") >= 1.0);
}

/// The rate-limit page: three calls where the quota allows two; reports what the page can
/// read of each answer.
const LIMITED_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>429</title></head><body>
<script>
const API = "__API__";
(async () => {
  const results = [];
  for (let i = 0; i < 3; i++) {
    try {
      const res = await fetch(API + "/data", { headers: { "x-custom": "yes" },
        signal: AbortSignal.timeout(10000) });
      results.push({ allowed: true, status: res.status, body: await res.text(),
        type: res.headers.get("content-type"), retry: res.headers.get("retry-after"),
        limit: res.headers.get("ratelimit"), policy: res.headers.get("ratelimit-policy") });
    } catch (e) {
      results.push({ allowed: false, error: e.name });
    }
  }
  await fetch("/report", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ page: "__NAME__", results }) });
})();
</script></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reads_the_429_of_an_allowed_origin() {
    let (tx, mut reports) = mpsc::channel(2);
    let hits = Arc::new(Hits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let page = page_server_with(LIMITED_PAGE, "limited", &api, "", tx).await;
    let obs = isolated("rate-limit-browser")
        .cors(
            Cors::allow_origins([page.as_str()])
                .allow_headers(["x-custom"])
                .expose_headers(["retry-after", "ratelimit", "ratelimit-policy"]),
        )
        .rate_limit(RateLimit::new(Policy::new("per-client", "1/min;burst=2")))
        .build()
        .unwrap();
    let app = service(hits.clone()).layer(obs.layer());
    tokio::spawn(async move {
        let make = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, make).await.unwrap()
    });

    let _browser = Browser::open(&format!("{page}/"));
    let report = tokio::time::timeout(Duration::from_secs(90), reports.recv())
        .await
        .expect("Chromium did not report within 90 s")
        .unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{report}");
    for ok in &results[..2] {
        assert_eq!(
            (ok["allowed"].as_bool(), ok["status"].as_u64()),
            (Some(true), Some(200)),
            "{ok}"
        );
    }
    let refused = &results[2];
    assert_eq!(
        refused["allowed"], true,
        "the page can read the refusal: {refused}"
    );
    assert_eq!(refused["status"], 429);
    assert_eq!(refused["type"], "application/problem+json");
    assert_eq!(refused["retry"], "60", "exposed Retry-After: {refused}");
    assert_eq!(refused["limit"], r#""per-client";r=0;t=120"#);
    assert_eq!(refused["policy"], r#""per-client";q=1;w=60"#);
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], 429);
    // The preflight is the layer's, never limited; the refused call never reached the handler.
    assert_eq!(hits.get.load(Ordering::SeqCst), 2);
    let text = obs.render_metrics();
    let limited = [("policy", "per-client"), ("mode", "enforce")];
    assert_eq!(
        sample(&text, "tower_observability_rate_limited_total", &limited),
        Some(1.0)
    );
}
