//! Rate limiting in memory, over real sockets: accuracy at 5x the quota, the client address
//! behind trusted and untrusted peers, the 429 field by field and in every other signal.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::load::{assert_within, paced};
use support::*;
use tower_observability::rate_limit::{Key, Mode, Policy, RateLimit};
use tower_observability::{Cors, Observability};

fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/search", get(|| async { "results" }))
}

/// Serves `app` with the peer address known to the layer.
async fn serve_with_peers(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let make = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, make).await.unwrap();
    });
    addr
}

async fn get_with(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
) -> http::Response<Bytes> {
    let mut req = http::Request::get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ten_seconds_at_five_times_the_quota_admits_the_quota() {
    let obs = isolated("accuracy")
        .rate_limit(RateLimit::new(Policy::new("per-client", "50/s;burst=10")))
        .build()
        .unwrap();
    let addr = serve_with_peers(app().layer(obs.layer())).await;
    let url = format!("http://{addr}/users/1");
    let tally = paced(&client(), &[url], 250, Duration::from_secs(10), 5, &[]).await;
    assert_eq!(tally.other, 0, "{tally:?}");
    assert!(tally.refused > 0);
    assert_within(tally.admitted, 50.0, tally.elapsed, 10, 0.02);
    let text = obs.render_metrics();
    let limited = [("policy", "per-client"), ("mode", "enforce")];
    assert_eq!(
        sample(&text, "tower_observability_rate_limited_total", &limited),
        Some(tally.refused as f64)
    );
}

#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    // 127.0.0.1 is not a trusted proxy here: its X-Forwarded-For is the client's own words.
    let obs = isolated("forged")
        .trusted_proxies(["10.0.0.0/8"])
        .rate_limit(RateLimit::new(Policy::new("per-client", "1/min;burst=2")))
        .build()
        .unwrap();
    let addr = serve_with_peers(app().layer(obs.layer())).await;
    let client = client();
    let url = format!("http://{addr}/users/1");
    let mut statuses = Vec::new();
    for i in 0..4 {
        let forged = format!("198.51.100.{i}");
        let res = get_with(&client, &url, &[("x-forwarded-for", forged.as_str())]).await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
}

#[tokio::test]
async fn through_a_trusted_proxy_the_right_client_is_limited() {
    // The proxy is 127.0.0.1: it appends the address it saw to what the client sent.
    let obs = isolated("proxied")
        .trusted_proxies(["127.0.0.0/8", "::1"])
        .rate_limit(RateLimit::new(Policy::new("per-client", "1/min;burst=1")))
        .build()
        .unwrap();
    let addr = serve_with_peers(app().layer(obs.layer())).await;
    let client = client();
    let url = format!("http://{addr}/users/1");
    let status = |xff: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            get_with(&client, &url, &[("x-forwarded-for", xff)])
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("203.0.113.7").await, 200);
    assert_eq!(status("203.0.113.7").await, 429);
    // The client forging a left-most entry is still the address the proxy saw.
    assert_eq!(status("1.1.1.1, 203.0.113.7").await, 429);
    assert_eq!(status("203.0.113.8").await, 200, "another client");
}

#[tokio::test]
async fn the_refusal_is_checked_field_by_field_and_seen_by_every_signal() {
    let obs = isolated("answer")
        .cors(Cors::allow_origins(["https://app.example.com"]))
        .rate_limit(
            RateLimit::new(Policy::new("per-client", "2/min;burst=1")).policy(
                Policy::new("search", "100/10s")
                    .key(Key::Global)
                    .only_routes(["/search"]),
            ),
        )
        .build()
        .unwrap();
    let addr = serve_with_peers(app().layer(obs.layer())).await;
    let client = client();
    let url = format!("http://{addr}/users/1");
    let origin = [("origin", "https://app.example.com")];
    assert_eq!(get_with(&client, &url, &origin).await.status(), 200);
    let res = get_with(&client, &url, &origin).await;
    assert_eq!(res.status(), 429);
    let h = res.headers();
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(h["retry-after"], "30", "one interval of 2/min");
    assert_eq!(h["ratelimit-policy"], r#""per-client";q=2;w=60"#);
    assert_eq!(h["ratelimit"], r#""per-client";r=0;t=30"#);
    // The other signals: security headers, the CORS grant, the request id.
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert!(h.contains_key("x-request-id"));
    let body: Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(body["status"], 429);
    assert_eq!(body["policy"], "per-client");
    assert_eq!(body["retry_after"], 30);
    assert_eq!(
        body["detail"],
        "The rate limit of policy \"per-client\" is exhausted: retry in 30 s."
    );
    // RED: a 429 like any response, not a server error.
    let text = obs.render_metrics();
    let refused = [
        ("http_route", "/users/{id}"),
        ("http_response_status_code", "429"),
    ];
    let count = "http_server_request_duration_seconds_count";
    assert_eq!(sample(&text, count, &refused), Some(1.0));
    assert!(!text.contains("error_type=\"429\""), "{text}");
    assert_eq!(sample(&text, "http_server_active_requests", &[]), Some(0.0));
    let limited = [("policy", "per-client"), ("mode", "enforce")];
    assert_eq!(
        sample(&text, "tower_observability_rate_limited_total", &limited),
        Some(1.0)
    );
    let search = [("policy", "search"), ("mode", "enforce")];
    assert_eq!(
        sample(&text, "tower_observability_rate_limited_total", &search),
        Some(0.0)
    );
    // The admin paths are never limited.
    let admin = obs.admin_router();
    let admin = serve(admin).await;
    for _ in 0..5 {
        let (status, _) = send(&client, "GET", &format!("http://{admin}/healthz"), b"").await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn shadow_mode_serves_every_request_and_counts_the_excess() {
    let obs = isolated("shadow")
        .rate_limit(RateLimit::new(Policy::new("per-client", "1/min;burst=2")).mode(Mode::Shadow))
        .build()
        .unwrap();
    let addr = serve_with_peers(app().layer(obs.layer())).await;
    let client = client();
    for _ in 0..5 {
        let (status, _) = send(&client, "GET", &format!("http://{addr}/users/1"), b"").await;
        assert_eq!(status, 200);
    }
    let text = obs.render_metrics();
    let shadow = [("policy", "per-client"), ("mode", "shadow")];
    assert_eq!(
        sample(&text, "tower_observability_rate_limited_total", &shadow),
        Some(3.0)
    );
}

#[tokio::test]
async fn the_environment_turns_it_on() {
    let vars = [
        ("OBSERVABILITY_RATE_LIMIT", "1/min;burst=1"),
        ("OBSERVABILITY_RATE_LIMIT_KEY", "header:x-api-key"),
    ];
    let obs = Observability::from_env_with("env", |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
    .metrics_backend(tower_observability::MetricsBackend::IsolatedPrometheus)
    .build()
    .unwrap();
    let addr = serve(app().layer(obs.layer())).await;
    let client = client();
    let url = format!("http://{addr}/users/1");
    let key = |k: &'static str| [("x-api-key", k)];
    assert_eq!(get_with(&client, &url, &key("a")).await.status(), 200);
    assert_eq!(get_with(&client, &url, &key("a")).await.status(), 429);
    assert_eq!(get_with(&client, &url, &key("b")).await.status(), 200);
    // Without the header the policy does not apply.
    assert_eq!(get_with(&client, &url, &[]).await.status(), 200);
    assert_eq!(get_with(&client, &url, &[]).await.status(), 200);
}

#[tokio::test]
async fn admitted_responses_can_carry_the_fields_too() {
    let obs = isolated("admitted")
        .rate_limit(
            RateLimit::new(Policy::new("per-client", "2/min;burst=3"))
                .policy(Policy::new("everyone", "100/s").key(Key::Global))
                .headers_on_admitted(true),
        )
        .build()
        .unwrap();
    let addr = serve_with_peers(app().layer(obs.layer())).await;
    let client = client();
    let url = format!("http://{addr}/users/1");
    // The policy with the fewest requests left is the one named.
    for left in [2, 1, 0] {
        let res = get_with(&client, &url, &[]).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["ratelimit-policy"],
            r#""per-client";q=2;w=60"#
        );
        let reset = 30 * (3 - left);
        assert_eq!(
            res.headers()["ratelimit"],
            format!(r#""per-client";r={left};t={reset}"#).as_str()
        );
    }
    let res = get_with(&client, &url, &[]).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["ratelimit"], r#""per-client";r=0;t=90"#);
}

/// The crate's key hash, as an SRE would recompute it to match a suspect API key.
fn key_hash(tag: u8, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(tag);
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_leave_a_sampled_audit_trail_with_the_key_hashed() {
    use tower::ServiceExt;
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let obs = isolated("audit")
        .rate_limit(
            RateLimit::new(
                Policy::new("per-key", "1/min;burst=1").key(Key::Header("x-api-key".into())),
            )
            .audit_log_per_second(3),
        )
        .build()
        .unwrap();
    let app = app().layer(obs.layer());
    let mut refused = 0;
    for _ in 0..200 {
        let req = http::Request::get("/users/7")
            .header("x-api-key", "secret-key-123")
            .body(axum::body::Body::empty())
            .unwrap();
        refused += u32::from(app.clone().oneshot(req).await.unwrap().status() == 429);
    }
    assert_eq!(refused, 199);
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request over its rate limit"))
        .collect();
    // 3 a second: the 199 refusals took one second, or two if they straddled one.
    assert!((3..=6).contains(&lines.len()), "{text}");
    let hash = format!("key={:016x}", key_hash(b'h', b"secret-key-123"));
    for line in &lines {
        for part in [
            "policy=per-key",
            "mode=\"enforce\"",
            "route=\"/users/{id}\"",
            "key_kind=\"header\"",
            &hash,
        ] {
            assert!(line.contains(part), "{part} missing: {line}");
        }
    }
    assert!(!text.contains("secret-key-123"), "the key in clear: {text}");
    let text = obs.render_metrics();
    let limited = [("policy", "per-key"), ("mode", "enforce")];
    assert_eq!(
        sample(&text, "tower_observability_rate_limited_total", &limited),
        Some(199.0)
    );
}
