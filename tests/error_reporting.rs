//! Error reporting end to end: real servers on 127.0.0.1, the real transport, and a Sentry
//! envelope endpoint that stores what arrives.

mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::Value;
use support::sentry_endpoint::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use tower_observability::sentry_core::{add_breadcrumb, Breadcrumb};
use tower_observability::{Observability, ObservabilityBuilder, Sentry};

const SENT: &str = "tower_observability_sentry_events_sent_total";
const DROPPED: &str = "tower_observability_sentry_events_dropped_total";

fn reporting(name: &str, endpoint: &SentryEndpoint) -> ObservabilityBuilder {
    reporting_with(name, endpoint, |sentry| sentry)
}

/// [`reporting`], with Sentry settings of the test's own.
fn reporting_with(
    name: &str,
    endpoint: &SentryEndpoint,
    sentry: impl FnOnce(Sentry) -> Sentry,
) -> ObservabilityBuilder {
    isolated(name)
        .sentry(sentry(Sentry::dsn(endpoint.dsn())))
        .service_version("1.4.2")
        .environment("staging")
}

/// Waits until `n` events arrived (or 10 s passed) and returns them.
async fn events(endpoint: &SentryEndpoint, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(10), || {
        let events = endpoint.events();
        (events.len() >= n).then_some(events)
    })
    .await
    .unwrap_or_else(|| panic!("expected {n} events, got {:#?}", endpoint.events()))
}

fn tag<'a>(event: &'a Value, name: &str) -> &'a str {
    event["tags"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no tag {name} in {event:#}"))
}

/// Sentry reads an absent level as `error`, and the SDK leaves the default out.
fn level(event: &Value) -> &str {
    event["level"].as_str().unwrap_or("error")
}

fn counter(obs: &Observability, name: &str) -> f64 {
    sample(&obs.render_metrics(), name, &[]).unwrap_or_else(|| panic!("{name} not exported"))
}

#[tokio::test]
async fn a_500_arrives_with_route_status_release_environment_and_request() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting("checkout", &endpoint).build().unwrap();
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "db down") }),
        )
        .route("/ok", get(|| async { "fine" }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let (status, _) = send(&client(), "GET", &format!("http://{addr}/ok"), b"").await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &client(),
        "GET",
        &format!("http://{addr}/orders/7?page=2"),
        b"",
    )
    .await;
    assert_eq!(status, 503);

    let event = events(&endpoint, 1).await.remove(0);
    assert_eq!(level(&event), "error");
    assert_eq!(
        event["message"]["formatted"]
            .as_str()
            .or(event["message"].as_str()),
        Some("GET /orders/{id} responded 503 Service Unavailable"),
        "{event:#}"
    );
    assert_eq!(event["transaction"], "GET /orders/{id}");
    assert_eq!(event["release"], "1.4.2");
    assert_eq!(event["environment"], "staging");
    assert_eq!(tag(&event, "method"), "GET");
    assert_eq!(tag(&event, "route"), "/orders/{id}");
    assert_eq!(tag(&event, "status"), "503");
    assert_eq!(tag(&event, "service"), "checkout");
    assert_eq!(tag(&event, "environment"), "staging");
    assert_eq!(tag(&event, "release"), "1.4.2");
    assert_eq!(tag(&event, "error.type"), "503");
    let request = &event["request"];
    assert_eq!(request["method"], "GET");
    assert_eq!(request["url"], format!("http://{addr}/orders/7"));
    assert_eq!(request["query_string"], "page=2");
    assert_eq!(request["headers"]["host"], addr.to_string());

    let received = endpoint.received();
    assert_eq!(received.len(), 1, "the 200 is not reported");
    assert_eq!(received[0].project, "42");
    assert!(received[0]
        .auth
        .as_deref()
        .is_some_and(|a| a.contains("sentry_key=public-key")));
    assert!(obs.flush_sentry(Duration::from_secs(5)));
    assert_eq!(counter(&obs, SENT), 1.0);
    assert_eq!(counter(&obs, DROPPED), 0.0);
}

#[derive(Debug)]
struct LedgerError;

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ledger unreachable: connection refused")
    }
}

#[tokio::test]
async fn an_inner_service_error_arrives_as_an_exception() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting("ledger", &endpoint)
        .route_fn(|_| Some("/ledger".into()))
        .build()
        .unwrap();
    let service =
        tower::service_fn(|_req: Request<_>| async { Err::<Response<Body>, _>(LedgerError) });
    let layered = tower::Layer::layer(&obs.layer(), service);
    let req = Request::post("http://ledger.internal/ledger?id=9")
        .body(Body::empty())
        .unwrap();
    let err = layered.oneshot(req).await.unwrap_err();
    assert_eq!(err.to_string(), "ledger unreachable: connection refused");

    let event = events(&endpoint, 1).await.remove(0);
    let exception = &event["exception"]["values"][0];
    assert_eq!(
        exception["type"], "error_reporting::LedgerError",
        "{event:#}"
    );
    assert_eq!(exception["value"], "ledger unreachable: connection refused");
    assert_eq!(exception["mechanism"]["handled"], false);
    assert_eq!(level(&event), "error");
    assert_eq!(tag(&event, "method"), "POST");
    assert_eq!(tag(&event, "route"), "/ledger");
    assert_eq!(tag(&event, "status"), "500");
    assert_eq!(tag(&event, "error.type"), "service_error");
    assert_eq!(event["request"]["url"], "http://ledger.internal/ledger");
}

fn handler_that_panics() -> &'static str {
    panic!("invariant broken: negative stock")
}

#[tokio::test]
async fn a_panic_arrives_with_its_backtrace_and_the_client_gets_a_500() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting("stock", &endpoint).build().unwrap();
    let app = Router::new()
        .route("/stock", get(|| async { handler_that_panics() }))
        .route("/ok", get(|| async { "fine" }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let (status, _) = send(&client(), "GET", &format!("http://{addr}/stock"), b"").await;
    assert_eq!(status, 500);
    let (status, _) = send(&client(), "GET", &format!("http://{addr}/ok"), b"").await;
    assert_eq!(status, 200, "the service keeps serving");

    let event = events(&endpoint, 1).await.remove(0);
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "panic");
    assert_eq!(exception["value"], "invariant broken: negative stock");
    assert_eq!(exception["mechanism"]["type"], "panic");
    let frames = exception["stacktrace"]["frames"]
        .as_array()
        .expect("a stack trace");
    let innermost = frames.last().unwrap();
    assert!(
        innermost["function"]
            .as_str()
            .unwrap()
            .ends_with("handler_that_panics"),
        "the stack trace ends in the handler: {frames:#?}"
    );
    assert_eq!(innermost["in_app"], true);
    assert!(innermost["lineno"].as_u64().is_some());
    assert_eq!(tag(&event, "error.type"), "panic");
    assert_eq!(tag(&event, "status"), "500");
    assert_eq!(tag(&event, "route"), "/stock");
}

#[tokio::test]
async fn grpc_server_faults_and_body_errors_are_reported_and_4xx_are_not() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting("mixed", &endpoint).build().unwrap();
    let app = Router::new()
        .route(
            "/pkg.Inventory/Reserve",
            axum::routing::post(|| async {
                Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "14")
                    .header("grpc-message", "warehouse%20offline")
                    .body(Body::empty())
                    .unwrap()
            }),
        )
        .route(
            "/export",
            get(|| async {
                Body::from_stream(futures_util::stream::iter([
                    Ok(Bytes::from_static(b"row 1\n")),
                    Err(std::io::Error::other("disk read failed")),
                ]))
            }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let client = client();
    let (status, _) = send(&client, "GET", &format!("http://{addr}/missing"), b"").await;
    assert_eq!(status, 404);
    let req = http::Request::post(format!("http://{addr}/pkg.Inventory/Reserve"))
        .header("content-type", "application/grpc")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 200);
    let export = client
        .request(
            http::Request::get(format!("http://{addr}/export"))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    // The server aborts the connection mid-body: the client may see that at any point.
    if let Ok(res) = export {
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
    }

    let events = events(&endpoint, 2).await;
    let grpc = events
        .iter()
        .find(|e| e["transaction"] == "POST /pkg.Inventory/Reserve")
        .expect("the gRPC fault was reported");
    let message = grpc["message"]["formatted"]
        .as_str()
        .or(grpc["message"].as_str());
    assert_eq!(
        message,
        Some("POST /pkg.Inventory/Reserve failed with gRPC UNAVAILABLE: warehouse offline")
    );
    assert_eq!(tag(grpc, "error.type"), "UNAVAILABLE");
    assert_eq!(tag(grpc, "rpc.grpc.status_code"), "14");
    let body = events
        .iter()
        .find(|e| e["transaction"] == "GET /export")
        .expect("the body error was reported");
    assert_eq!(body["exception"]["values"][0]["value"], "disk read failed");
    assert_eq!(tag(body, "error.type"), "body_error");
    // The transport sends in order: the 404 before them would have arrived first.
    assert_eq!(endpoint.events().len(), 2, "a 404 is not reported");
}

#[tokio::test]
async fn a_client_that_goes_away_is_not_a_server_error() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting("gone", &endpoint).build().unwrap();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async {
                Body::from_stream(futures_util::stream::unfold(0u32, |i| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    (i < 500).then(|| (Ok::<_, Infallible>(Bytes::from_static(b"tick")), i + 1))
                }))
            }),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(obs.layer());
    let addr = serve(app).await;
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(socket);
    let cancelled = [("error_type", "cancelled")];
    eventually(Duration::from_secs(5), || {
        sample(
            &obs.render_metrics(),
            "http_server_request_duration_seconds_count",
            &cancelled,
        )
    })
    .await
    .expect("the abandoned request was recorded as cancelled");
    // A sentinel after it: the transport sends in order.
    send(&client(), "GET", &format!("http://{addr}/fail"), b"").await;
    let events = events(&endpoint, 1).await;
    assert!(obs.flush_sentry(Duration::from_secs(5)));
    let transactions: Vec<_> = endpoint
        .events()
        .iter()
        .map(|e| e["transaction"].clone())
        .collect();
    assert_eq!(transactions, ["GET /fail"], "{events:#?}");
}

#[tokio::test]
async fn client_errors_are_reported_as_warnings_when_asked() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting_with("strict", &endpoint, |s| s.report_client_errors(true))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .layer(obs.layer());
    let addr = serve(app).await;
    send(&client(), "GET", &format!("http://{addr}/missing"), b"").await;
    let event = events(&endpoint, 1).await.remove(0);
    assert_eq!(level(&event), "warning");
    assert_eq!(tag(&event, "status"), "404");
}

#[tokio::test]
async fn before_send_and_the_sample_rate_decide_what_is_sent() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting_with("filtered", &endpoint, |s| {
        s.before_send(|mut event| {
            if event.transaction.as_deref() == Some("GET /noisy") {
                return None;
            }
            event.tags.insert("team".into(), "payments".into());
            Some(event)
        })
    })
    .build()
    .unwrap();
    let failing = || {
        Router::new()
            .route("/noisy", get(|| async { StatusCode::BAD_GATEWAY }))
            .route("/real", get(|| async { StatusCode::BAD_GATEWAY }))
    };
    let addr = serve(failing().layer(obs.layer())).await;
    send(&client(), "GET", &format!("http://{addr}/noisy"), b"").await;
    send(&client(), "GET", &format!("http://{addr}/real"), b"").await;
    let event = events(&endpoint, 1).await.remove(0);
    assert_eq!(event["transaction"], "GET /real");
    assert_eq!(tag(&event, "team"), "payments");
    assert!(
        obs.shutdown(Duration::from_secs(5)),
        "shutdown flushes the events"
    );
    assert_eq!(
        endpoint.events().len(),
        1,
        "before_send dropped the noisy one"
    );

    let never = SentryEndpoint::start().await;
    let sampled_out = reporting_with("sampled", &never, |s| s.sample_rate(0.0))
        .build()
        .unwrap();
    let addr = serve(failing().layer(sampled_out.layer())).await;
    for _ in 0..5 {
        send(&client(), "GET", &format!("http://{addr}/real"), b"").await;
    }
    assert!(sampled_out.flush_sentry(Duration::from_secs(5)));
    assert!(
        never.received().is_empty(),
        "a sample rate of 0 sends nothing"
    );
    assert_eq!(counter(&sampled_out, SENT), 0.0);
}

#[tokio::test]
async fn no_credential_address_or_secret_leaves_the_process() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting("private", &endpoint).build().unwrap();
    let app = Router::new()
        .route(
            "/account",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(obs.layer())
        // An outer layer marks a header sensitive, as tower-http's SetSensitiveHeaders does.
        .layer(tower::util::MapRequestLayer::new(
            |mut req: Request<Body>| {
                if let Some(v) = req.headers_mut().get_mut("x-internal-note") {
                    v.set_sensitive(true);
                }
                req
            },
        ));
    let addr = serve(app).await;
    let secrets = [
        ("authorization", "Bearer SECRET-bearer-1"),
        ("proxy-authorization", "Basic SECRET-proxy-2"),
        ("cookie", "session=SECRET-cookie-3"),
        ("x-api-key", "SECRET-apikey-4"),
        ("api-key", "SECRET-apikey-5"),
        ("x-auth-token", "SECRET-authtoken-6"),
        ("x-forwarded-for", "203.0.113.77"),
        ("x-real-ip", "203.0.113.78"),
        ("forwarded", "for=203.0.113.79"),
        ("cf-connecting-ip", "203.0.113.80"),
        ("true-client-ip", "203.0.113.81"),
        ("x-internal-note", "SECRET-marked-7"),
        ("referer", "http://app.example/?token=SECRET-referer-8"),
    ];
    // Absolute form, so the request line itself carries URL credentials.
    let mut head = format!(
        "GET http://ada:SECRET-urlpass-9@{addr}/account?token=SECRET-token-10&password=SECRET-pw-11&page=3;pass=SECRET-pass-14&pw=SECRET-pw-15&sid=SECRET-sid-16&bearer=SECRET-bearer-17;%70assword=SECRET-pw-18 HTTP/1.1\r\nhost: {addr}\r\nuser-agent: pii-test\r\nconnection: close\r\n"
    );
    for (name, value) in secrets {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // Origin form, with credentials where a URL would put them: in the Host header.
    let host_head = format!(
        "GET /account?id=2 HTTP/1.1\r\nhost: bob:SECRET-hostpass-12@{addr}\r\n\
         user-agent: pii-host\r\norigin: http://bob:SECRET-originpass-13@app.example\r\n\
         connection: close\r\n\r\n"
    );
    for head in [head, host_head] {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 500"));
    }

    let events = events(&endpoint, 2).await;
    let raw: Vec<u8> = endpoint
        .received()
        .iter()
        .flat_map(|r| r.raw.to_vec())
        .collect();
    let raw = String::from_utf8_lossy(&raw);
    for needle in [
        "SECRET",
        "203.0.113",
        "ada:",
        "bob:",
        "hunter",
        "urlpass",
        "hostpass",
        "originpass",
    ] {
        assert!(!raw.contains(needle), "{needle:?} left the process: {raw}");
    }
    // What is useful and harmless is still there.
    let by_agent = |agent: &str| {
        events
            .iter()
            .find(|e| e["request"]["headers"]["user-agent"] == agent)
            .unwrap_or_else(|| panic!("no event from {agent}: {events:#?}"))
    };
    let request = &by_agent("pii-test")["request"];
    assert_eq!(
        request["query_string"],
        "token=[Filtered]&password=[Filtered]&page=3;pass=[Filtered]&pw=[Filtered]&\
         sid=[Filtered]&bearer=[Filtered];%70assword=[Filtered]"
    );
    assert_eq!(request["url"], format!("http://{addr}/account"));
    let request = &by_agent("pii-host")["request"];
    assert_eq!(request["headers"]["host"], addr.to_string());
    assert_eq!(request["url"], format!("http://{addr}/account"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn breadcrumbs_never_leak_between_200_concurrent_requests() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting_with("isolated", &endpoint, |s| s.queue_capacity(512))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/work/{id}",
            get(|Path(id): Path<u32>| async move {
                add_breadcrumb(Breadcrumb {
                    message: Some(format!("crumb-{id}")),
                    ..Default::default()
                });
                // Interleave with the other requests before deciding.
                for _ in 0..(id % 5) {
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep(Duration::from_millis(u64::from(id % 7))).await;
                if id % 2 == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;
    let client = client();
    let requests = (0..200u32).map(|id| {
        let client = client.clone();
        tokio::spawn(
            async move { send(&client, "GET", &format!("http://{addr}/work/{id}"), b"").await },
        )
    });
    for r in futures_util::future::join_all(requests).await {
        r.unwrap();
    }

    let events = events(&endpoint, 100).await;
    assert_eq!(events.len(), 100);
    let mut seen = std::collections::BTreeSet::new();
    for event in &events {
        let url = event["request"]["url"].as_str().unwrap();
        let id: u32 = url.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(id % 2, 1, "only failing requests are reported");
        let crumbs: Vec<_> = event["breadcrumbs"]["values"]
            .as_array()
            .map(|v| v.iter().map(|b| b["message"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(crumbs, [format!("crumb-{id}")], "event of request {id}");
        seen.insert(id);
    }
    assert_eq!(seen.len(), 100);
}

#[tokio::test]
async fn the_hub_stays_bound_while_the_body_streams() {
    let _shared = MEASURING.read().await;
    let endpoint = SentryEndpoint::start().await;
    let obs = reporting("streams", &endpoint).build().unwrap();
    let app = Router::new()
        .route(
            "/feed",
            get(|| async {
                let chunks = futures_util::stream::unfold(0u8, |i| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    add_breadcrumb(Breadcrumb {
                        message: Some(format!("chunk-{i}")),
                        ..Default::default()
                    });
                    match i {
                        0..=2 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), i + 1)),
                        3 => Some((Err(std::io::Error::other("upstream closed")), i + 1)),
                        _ => None,
                    }
                });
                Body::from_stream(chunks)
            }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;
    let res = client()
        .request(
            http::Request::get(format!("http://{addr}/feed"))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let _ = http_body_util::BodyExt::collect(res.into_body()).await;
    let event = events(&endpoint, 1).await.remove(0);
    let crumbs: Vec<_> = event["breadcrumbs"]["values"]
        .as_array()
        .expect("breadcrumbs added while the body streamed")
        .iter()
        .map(|b| b["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(crumbs, ["chunk-0", "chunk-1", "chunk-2", "chunk-3"]);
}

/// Tests that measure time or memory run alone; the others share the machine.
static MEASURING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The latencies of `n` sequential requests to `path`, each answered 500.
async fn latencies(client: &HttpClient, addr: std::net::SocketAddr, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let (status, _) = send(client, "GET", &format!("http://{addr}/fail"), b"").await;
        assert_eq!(status, 500);
        times.push(start.elapsed());
    }
    times
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn failing_app(obs: &Observability) -> Router {
    Router::new()
        .route(
            "/fail",
            get(|| async { Ok::<_, Infallible>(StatusCode::INTERNAL_SERVER_ERROR) }),
        )
        .layer(obs.layer())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_down_or_hangs_never_slows_requests_and_drops_are_counted() {
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 50;
    const CAPACITY: usize = 8;
    let _alone = MEASURING.write().await;
    let hanging = hanging_endpoint().await;
    let reporting_to = |name: &str, dsn: String| {
        isolated(name)
            .sentry(
                Sentry::dsn(dsn)
                    .queue_capacity(CAPACITY)
                    .send_timeout(Duration::from_millis(500)),
            )
            .build()
            .unwrap()
    };
    let setups = [
        ("no DSN", isolated("baseline").build().unwrap()),
        (
            "down",
            reporting_to("down", format!("http://key@{}/1", closed_port())),
        ),
        (
            "hanging",
            reporting_to("hanging", format!("http://key@{hanging}/1")),
        ),
    ];
    let client = client();
    let mut addrs = Vec::new();
    for (_, obs) in &setups {
        let addr = serve(failing_app(obs)).await;
        latencies(&client, addr, 10).await; // warm-up: connection, route, series
        addrs.push(addr);
    }
    // Interleaved rounds: a slow moment of this shared machine hits every setup alike.
    let mut samples = vec![Vec::new(); setups.len()];
    for _ in 0..ROUNDS {
        for (addr, all) in addrs.iter().zip(&mut samples) {
            all.extend(latencies(&client, *addr, PER_ROUND).await);
        }
    }
    let n = 10 + ROUNDS * PER_ROUND;
    let mut tails = Vec::new();
    for ((case, obs), sorted) in setups.iter().zip(&mut samples) {
        sorted.sort();
        let (p50, p99) = (pct(sorted, 0.5), pct(sorted, 0.99));
        eprintln!("{case:>8}: p50 {p50:?}  p99 {p99:?}");
        tails.push((case, p50, p99));
        if *case == "no DSN" {
            continue;
        }
        // Nothing was delivered. An event is dropped on arrival, or held (queued or in
        // the one send under way: at most the queue's capacity), or dropped when its send
        // fails: so all but the held ones are counted already.
        assert_eq!(counter(obs, SENT), 0.0, "{case}");
        let dropped = counter(obs, DROPPED);
        assert!(
            dropped >= (n - CAPACITY) as f64 && dropped <= n as f64,
            "{case}: {dropped} dropped of {n}"
        );
    }
    let (_, base50, base99) = tails[0];
    for (case, p50, p99) in &tails[1..] {
        // Within noise of no reporting: the same order, never the 500 ms send timeout.
        let bound = |base: Duration, slack: Duration| (base * 3).max(base + slack);
        assert!(
            *p50 <= bound(base50, Duration::from_millis(2)),
            "{case}: p50 {p50:?} vs {base50:?} without reporting"
        );
        assert!(
            *p99 <= bound(base99, Duration::from_millis(10)),
            "{case}: p99 {p99:?} vs {base99:?} without reporting"
        );
    }

    // An outage: a burst of identical errors straight through the layer. The queue stays
    // at its capacity, so memory does not grow with the burst (unbounded, each event would
    // hold its request, tags and contexts: 884 bytes serialised, more in memory, so 50 MiB
    // and more for these); every event beyond what is held is dropped and counted.
    const BURST: usize = 60_000;
    let (_, hung) = &setups[2];
    let service = tower::Layer::layer(
        &hung.layer(),
        tower::service_fn(|_req: Request<_>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .body(Body::from("outage"))
                    .unwrap(),
            )
        }),
    );
    let before = counter(hung, DROPPED);
    let rss_before = rss_bytes();
    let started = Instant::now();
    for _ in 0..BURST {
        let req = Request::get("http://shop.internal/checkout")
            .body(Body::empty())
            .unwrap();
        let res = service.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 500);
        // The exchange ends with its body.
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap();
    }
    let took = started.elapsed();
    let growth = rss_bytes().saturating_sub(rss_before);
    let dropped = counter(hung, DROPPED) - before;
    eprintln!(
        "hanging endpoint, {BURST} errors in {took:?}: {dropped} dropped, rss +{} KiB",
        growth / 1024
    );
    assert!(growth < 8 << 20, "rss grew {growth} bytes");
    // Held before and during the burst: at most a queue each; those held before may time
    // out during the burst and be counted with it.
    assert!(
        dropped >= (BURST - CAPACITY) as f64 && dropped <= (BURST + CAPACITY) as f64,
        "{dropped} dropped of {BURST}"
    );
    assert_eq!(counter(hung, SENT), 0.0);

    // Once the transport has given up on what it holds, every event is accounted for.
    for (case, obs) in &setups[1..] {
        let total = if *case == "hanging" { n + BURST } else { n };
        let all = eventually(Duration::from_secs(30), || {
            (counter(obs, DROPPED) == total as f64).then_some(())
        })
        .await;
        assert!(
            all.is_some(),
            "{case}: {} dropped of {total}",
            counter(obs, DROPPED)
        );
    }
}
