//! Rate limits shared through a real `redis-server` (started on 127.0.0.1, an ephemeral
//! port, no persistence; killed and restarted mid-run): accuracy, three replicas on one
//! quota, one round trip per decision, and what happens while Redis is down.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use support::load::{assert_within, paced};
use support::redis::Redis;
use support::*;
use tower_observability::rate_limit::{Fallback, Policy, RateLimit};
use tower_observability::Observability;

fn app() -> Router {
    Router::new().route("/users/{id}", get(|| async { "user" }))
}

/// A replica: its own layer (so its own Redis connection) on its own port.
async fn replica(name: &str, limits: RateLimit) -> (Observability, String) {
    let obs = isolated(name).rate_limit(limits).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app().layer(obs.layer());
    tokio::spawn(async move {
        let make = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, make).await.unwrap();
    });
    (obs, format!("http://{addr}/users/1"))
}

fn counter(obs: &Observability, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(&obs.render_metrics(), name, labels).unwrap_or(0.0)
}

const FALLBACKS: &str = "tower_observability_rate_limit_fallbacks_total";
const ERRORS: &str = "tower_observability_rate_limit_backend_errors_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_redis_ten_seconds_at_five_times_the_quota_admit_the_quota_in_one_round_trip_each()
{
    let redis = Redis::start();
    // What a timeout does is the outage tests' matter: here a generous one keeps a busy
    // machine's scheduling out of an accuracy figure.
    let limits = RateLimit::new(Policy::new("per-client", "50/s;burst=10"))
        .redis(redis.url())
        .redis_timeout(Duration::from_millis(250));
    let (obs, url) = replica("redis-accuracy", limits).await;
    // Built inside the runtime, the layer connects and loads its script at once.
    let loaded = || (redis.calls("script|load") == 1).then_some(());
    assert!(eventually(Duration::from_secs(5), loaded).await.is_some());
    let before = redis.calls("evalsha");
    let tally = paced(&client(), &[url], 250, Duration::from_secs(10), 5, &[]).await;
    assert_eq!(tally.other + tally.unavailable, 0, "{tally:?}");
    assert_within(tally.admitted, 50.0, tally.elapsed, 10, 0.02);
    // One round trip per decision: one EVALSHA, nothing else; a decision that did not get
    // its answer in time was made by the fallback, and counted so.
    let decisions = tally.admitted + tally.refused;
    let round_trips = redis.calls("evalsha") - before;
    let fallbacks = counter(&obs, FALLBACKS, &[]) as u64;
    assert!(
        round_trips <= decisions,
        "{round_trips} round trips for {decisions} decisions"
    );
    assert!(
        round_trips + fallbacks >= decisions,
        "{round_trips} + {fallbacks} < {decisions}"
    );
    assert!(fallbacks * 100 <= decisions, "{fallbacks} fallbacks");
    assert_eq!(redis.calls("script|load"), 1);
    assert_eq!(redis.calls("eval"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_share_one_quota() {
    let redis = Redis::start();
    let limits = || {
        RateLimit::new(Policy::new("per-client", "60/s;burst=10"))
            .redis(redis.url())
            .redis_timeout(Duration::from_millis(250))
    };
    let mut urls = Vec::new();
    let mut replicas = Vec::new();
    // Replicas of one service: one name, so one set of keys in Redis.
    for _ in 0..3 {
        let (obs, url) = replica("replicated", limits()).await;
        replicas.push(obs);
        urls.push(url);
    }
    let tally = paced(&client(), &urls, 300, Duration::from_secs(10), 6, &[]).await;
    assert_eq!(tally.other + tally.unavailable, 0, "{tally:?}");
    // One quota across the three, not three quotas.
    assert_within(tally.admitted, 60.0, tally.elapsed, 10, 0.05);
    let refused: f64 = replicas
        .iter()
        .map(|obs| counter(obs, "tower_observability_rate_limited_total", &[]))
        .sum();
    assert_eq!(refused, tally.refused as f64);
    for obs in &replicas {
        assert!(counter(obs, "tower_observability_rate_limited_total", &[]) > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_open_serves_within_the_timeout_then_decisions_resume_through_redis() {
    let mut redis = Redis::start();
    let limits = RateLimit::new(Policy::new("per-client", "20/s;burst=5"))
        .redis(redis.url())
        .redis_timeout(Duration::from_millis(20));
    let (obs, url) = replica("fail-open", limits).await;
    let client = client();
    let urls = [url];
    let run = |secs| paced(&client, &urls, 100, Duration::from_secs(secs), 2, &[]);
    let up = run(2).await;
    assert!(up.refused > 0, "limited through Redis: {up:?}");
    // On a busy machine a decision or two may already have missed the 20 ms: count from here.
    let open = [("fallback", "open")];
    let (fallbacks_up, errors_up) = (counter(&obs, FALLBACKS, &open), counter(&obs, ERRORS, &[]));

    redis.kill();
    let down = run(3).await;
    assert_eq!(
        down.admitted, 300,
        "fail-open serves every request: {down:?}"
    );
    // Each decision waits at most the 20 ms timeout (the rest is this loaded machine's
    // scheduling of a debug build), and the breaker soon stops waiting at all.
    assert!(down.slowest < Duration::from_millis(120), "{down:?}");
    assert_eq!(counter(&obs, FALLBACKS, &open) - fallbacks_up, 300.0);
    let errors = counter(&obs, ERRORS, &[]) - errors_up;
    assert!(errors >= 1.0, "the failures that opened the breaker");
    assert!(
        errors < 100.0,
        "the breaker stops trying per request: {errors}"
    );

    redis.restart();
    let calls = || redis.calls("evalsha");
    // Requests drive the breaker's probes: the first that gets through closes it.
    let back = run(3).await;
    assert!(calls() > 0, "no decision reached the restarted Redis");
    assert!(back.refused > 0, "limited through Redis again: {back:?}");
    let through_redis = calls();
    let fallbacks = counter(&obs, FALLBACKS, &[]);
    let again = run(1).await;
    let decisions = again.admitted + again.refused;
    let round_trips = calls() - through_redis;
    let fell_back = (counter(&obs, FALLBACKS, &[]) - fallbacks) as u64;
    // Every decision through Redis again, but for one that missed the 20 ms on a busy machine.
    assert!(round_trips + fell_back >= decisions && round_trips <= decisions);
    assert!(
        fell_back * 20 <= decisions,
        "{fell_back} of {decisions} fell back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_closed_refuses_and_counts() {
    let mut redis = Redis::start();
    let limits = RateLimit::new(Policy::new("per-client", "1000/s"))
        .redis(redis.url())
        .fallback(Fallback::Closed);
    let (obs, url) = replica("fail-closed", limits).await;
    let client = client();
    let (status, _) = send(&client, "GET", &url, b"").await;
    assert_eq!(status, 200);
    redis.kill();
    let down = paced(&client, &[url], 100, Duration::from_secs(2), 2, &[]).await;
    assert_eq!(
        down.unavailable, 200,
        "fail-closed refuses every request: {down:?}"
    );
    assert!(down.slowest < Duration::from_millis(120), "{down:?}");
    assert_eq!(counter(&obs, FALLBACKS, &[("fallback", "closed")]), 200.0);
    let text = obs.render_metrics();
    let unavailable = [("http_response_status_code", "503"), ("error_type", "503")];
    let count = "http_server_request_duration_seconds_count";
    assert_eq!(sample(&text, count, &unavailable), Some(200.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_local_fallback_limits_in_memory() {
    let mut redis = Redis::start();
    let limits = RateLimit::new(Policy::new("per-client", "1/min;burst=3"))
        .redis(redis.url())
        .fallback(Fallback::Local);
    let (obs, url) = replica("fail-local", limits).await;
    redis.kill();
    let down = paced(&client(), &[url], 50, Duration::from_secs(1), 1, &[]).await;
    assert_eq!((down.admitted, down.refused), (3, 47), "{down:?}");
    assert_eq!(counter(&obs, FALLBACKS, &[("fallback", "local")]), 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_redis_the_fields_name_what_redis_decided() {
    let redis = Redis::start();
    let limits = RateLimit::new(Policy::new("per-client", "2/min;burst=2"))
        .redis(redis.url())
        .headers_on_admitted(true);
    let (_obs, url) = replica("redis-fields", limits).await;
    let client = client();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let req = http::Request::get(url.as_str())
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let res = client.request(req).await.unwrap();
        let h = res.headers();
        seen.push((
            res.status().as_u16(),
            h["ratelimit"].to_str().unwrap().to_owned(),
            h.get("retry-after").map(|v| v.to_str().unwrap().to_owned()),
        ));
    }
    assert_eq!(
        seen,
        [
            (200, r#""per-client";r=1;t=30"#.into(), None),
            (200, r#""per-client";r=0;t=60"#.into(), None),
            (429, r#""per-client";r=0;t=60"#.into(), Some("30".into())),
        ]
    );
}

#[tokio::test]
async fn a_bad_redis_url_is_a_build_error_that_hides_the_password() {
    let err = isolated("bad-url")
        .rate_limit(RateLimit::new(Policy::new("p", "1/s")).redis("mysql://root:hunter2@db/"))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rate_limit") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn the_replicas_example_admits_one_quota_across_both() {
    let redis = Redis::start();
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let binary = examples.join("rate_limit_replicas");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--example",
                "rate_limit_replicas",
                "--features",
                "redis",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "could not build the example");
    }
    let out = std::process::Command::new(binary)
        .env("REDIS_URL", redis.url())
        .env("REPLICAS_DEMO_ONLY", "1")
        .env_remove("OTEL_SERVICE_NAME")
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("admitted 10 (replica 1: 5, replica 2: 5), refused 20"),
        "{stdout}"
    );
}
