//! Error reporting end to end: real servers on 127.0.0.1, the real transport, and a Sentry
//! envelope endpoint that stores what arrives.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use support::exposition::{metrics_when, total};
use support::requests::{first_bytes, raw_exchange, raw_get};
use support::sentry_endpoint::*;
use support::sentry_events::*;
use support::*;
use tower::ServiceExt;
use tower_observability::sentry_core::{add_breadcrumb, Breadcrumb};
use tower_observability::{Observability, ObservabilityBuilder, Sentry};

const SENT: &str = "tower_observability_sentry_events_sent_total";
const DROPPED: &str = "tower_observability_sentry_events_dropped_total";

/// A layer reporting to `endpoint` (release 1.4.2, environment staging), with the test's
/// own Sentry settings.
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

/// One test's set-up: a fresh Sentry endpoint and a layer reporting to it.
struct Reporting {
    endpoint: SentryEndpoint,
    obs: Observability,
}

impl Reporting {
    async fn start(name: &str, sentry: impl FnOnce(Sentry) -> Sentry) -> Self {
        let endpoint = SentryEndpoint::start().await;
        let obs = reporting_with(name, &endpoint, sentry).build().unwrap();
        Reporting { endpoint, obs }
    }

    /// Serves `app` behind the layer; returns where.
    async fn serve(&self, app: Router) -> SocketAddr {
        serve(app.layer(self.obs.layer())).await
    }

    /// Waits until `n` events arrived; returns them.
    async fn events(&self, n: usize) -> Vec<serde_json::Value> {
        events(&self.endpoint, n).await
    }
}

/// GET `path` of `addr` with a fresh client: its status.
async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    send(&client(), "GET", &format!("http://{addr}{path}"), b"")
        .await
        .0
}

#[tokio::test]
async fn a_500_arrives_with_route_status_release_environment_and_request() {
    let _shared = MEASURING.read().await;
    let t = Reporting::start("checkout", |s| s).await;
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "db down") }),
        )
        .route("/ok", get(|| async { "fine" }));
    let addr = t.serve(app).await;
    assert_eq!(get_status(addr, "/ok").await, 200);
    assert_eq!(get_status(addr, "/orders/7?page=2").await, 503);

    let event = t.events(1).await.remove(0);
    assert_eq!(level(&event), "error");
    assert_eq!(
        message(&event),
        "GET /orders/{id} responded 503 Service Unavailable"
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

    let received = t.endpoint.received();
    assert_eq!(received.len(), 1, "the 200 is not reported");
    assert_eq!(received[0].project, "42");
    assert!(received[0]
        .auth
        .as_deref()
        .is_some_and(|a| a.contains("sentry_key=public-key")));
    assert!(t.obs.flush_sentry(Duration::from_secs(5)));
    assert_eq!(total(&t.obs, SENT), 1.0);
    assert_eq!(total(&t.obs, DROPPED), 0.0);
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
    let obs = reporting_with("ledger", &endpoint, |s| s)
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
    let t = Reporting::start("stock", |s| s).await;
    let app = Router::new()
        .route("/stock", get(|| async { handler_that_panics() }))
        .route("/ok", get(|| async { "fine" }));
    let addr = t.serve(app).await;
    assert_eq!(get_status(addr, "/stock").await, 500);
    assert_eq!(
        get_status(addr, "/ok").await,
        200,
        "the service keeps serving"
    );

    let event = t.events(1).await.remove(0);
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
    let t = Reporting::start("mixed", |s| s).await;
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
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }));
    let addr = t.serve(app).await;
    let client = client();
    assert_eq!(get_status(addr, "/missing").await, 404);
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

    let events = t.events(2).await;
    let grpc = for_transaction(&events, "POST /pkg.Inventory/Reserve");
    assert_eq!(
        message(grpc),
        "POST /pkg.Inventory/Reserve failed with gRPC UNAVAILABLE: warehouse offline"
    );
    assert_eq!(tag(grpc, "error.type"), "UNAVAILABLE");
    assert_eq!(tag(grpc, "rpc.grpc.status_code"), "14");
    let body = for_transaction(&events, "GET /export");
    assert_eq!(body["exception"]["values"][0]["value"], "disk read failed");
    assert_eq!(tag(body, "error.type"), "body_error");
    // The transport sends in order: the 404 before them would have arrived first.
    assert_eq!(t.endpoint.events().len(), 2, "a 404 is not reported");
}

#[tokio::test]
async fn a_client_that_goes_away_is_not_a_server_error() {
    let _shared = MEASURING.read().await;
    let t = Reporting::start("gone", |s| s).await;
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
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }));
    let addr = t.serve(app).await;
    let mut socket = raw_get(addr, "/stream").await;
    assert!(first_bytes(&mut socket).await.starts_with("HTTP/1.1 200"));
    drop(socket);
    let cancelled = [("error_type", "cancelled")];
    metrics_when(&t.obs, "the abandoned request, as cancelled", |text| {
        sample(
            text,
            "http_server_request_duration_seconds_count",
            &cancelled,
        )
        .is_some()
    })
    .await;
    // A sentinel after it: the transport sends in order.
    get_status(addr, "/fail").await;
    let events = t.events(1).await;
    assert!(t.obs.flush_sentry(Duration::from_secs(5)));
    let transactions: Vec<_> = t
        .endpoint
        .events()
        .iter()
        .map(|e| e["transaction"].clone())
        .collect();
    assert_eq!(transactions, ["GET /fail"], "{events:#?}");
}

#[tokio::test]
async fn client_errors_are_reported_as_warnings_when_asked() {
    let _shared = MEASURING.read().await;
    let t = Reporting::start("strict", |s| s.report_client_errors(true)).await;
    let app = Router::new().route("/missing", get(|| async { StatusCode::NOT_FOUND }));
    let addr = t.serve(app).await;
    assert_eq!(get_status(addr, "/missing").await, 404);
    let event = t.events(1).await.remove(0);
    assert_eq!(level(&event), "warning");
    assert_eq!(tag(&event, "status"), "404");
}

#[tokio::test]
async fn before_send_and_the_sample_rate_decide_what_is_sent() {
    let _shared = MEASURING.read().await;
    let t = Reporting::start("filtered", |s| {
        s.before_send(|mut event| {
            if event.transaction.as_deref() == Some("GET /noisy") {
                return None;
            }
            event.tags.insert("team".into(), "payments".into());
            Some(event)
        })
    })
    .await;
    let failing = || {
        Router::new()
            .route("/noisy", get(|| async { StatusCode::BAD_GATEWAY }))
            .route("/real", get(|| async { StatusCode::BAD_GATEWAY }))
    };
    let addr = t.serve(failing()).await;
    assert_eq!(get_status(addr, "/noisy").await, 502);
    assert_eq!(get_status(addr, "/real").await, 502);
    let event = t.events(1).await.remove(0);
    assert_eq!(event["transaction"], "GET /real");
    assert_eq!(tag(&event, "team"), "payments");
    assert!(
        t.obs.shutdown(Duration::from_secs(5)),
        "shutdown flushes the events"
    );
    assert_eq!(
        t.endpoint.events().len(),
        1,
        "before_send dropped the noisy one"
    );

    let sampled_out = Reporting::start("sampled", |s| s.sample_rate(0.0)).await;
    let addr = sampled_out.serve(failing()).await;
    for _ in 0..5 {
        assert_eq!(get_status(addr, "/real").await, 502);
    }
    assert!(sampled_out.obs.flush_sentry(Duration::from_secs(5)));
    assert!(
        sampled_out.endpoint.received().is_empty(),
        "a sample rate of 0 sends nothing"
    );
    assert_eq!(total(&sampled_out.obs, SENT), 0.0);
}

#[tokio::test]
async fn no_credential_address_or_secret_leaves_the_process() {
    let _shared = MEASURING.read().await;
    let t = Reporting::start("private", |s| s).await;
    let app = Router::new()
        .route(
            "/account",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(t.obs.layer())
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
        let answer = raw_exchange(addr, head.as_bytes()).await;
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 500"));
    }

    let events = t.events(2).await;
    let raw: Vec<u8> = t
        .endpoint
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
    let t = Reporting::start("isolated", |s| s.queue_capacity(512)).await;
    let app = Router::new().route(
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
    );
    let addr = t.serve(app).await;
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

    let events = t.events(100).await;
    assert_eq!(events.len(), 100);
    let mut seen = std::collections::BTreeSet::new();
    for event in &events {
        let url = event["request"]["url"].as_str().unwrap();
        let id: u32 = url.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(id % 2, 1, "only failing requests are reported");
        assert_eq!(
            breadcrumbs(event),
            [format!("crumb-{id}")],
            "event of request {id}"
        );
        seen.insert(id);
    }
    assert_eq!(seen.len(), 100);
}

#[tokio::test]
async fn the_hub_stays_bound_while_the_body_streams() {
    let _shared = MEASURING.read().await;
    let t = Reporting::start("streams", |s| s).await;
    let app = Router::new().route(
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
    );
    let addr = t.serve(app).await;
    let res = client()
        .request(
            http::Request::get(format!("http://{addr}/feed"))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let _ = http_body_util::BodyExt::collect(res.into_body()).await;
    let event = t.events(1).await.remove(0);
    assert_eq!(
        breadcrumbs(&event),
        ["chunk-0", "chunk-1", "chunk-2", "chunk-3"],
        "breadcrumbs added while the body streamed"
    );
}

/// Tests that measure time or memory run alone; the others share the machine.
static MEASURING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

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
    let mut uris = Vec::new();
    for (_, obs) in &setups {
        uris.push(format!("http://{}/fail", serve(failing_app(obs)).await));
    }
    const WARM_UP: usize = 10;
    let latencies = cost::interleaved(&uris, 500, WARM_UP, ROUNDS, PER_ROUND).await;
    let n = WARM_UP + ROUNDS * PER_ROUND;
    for (case, obs) in &setups[1..] {
        // Nothing was delivered. An event is dropped on arrival, or held (queued or in
        // the one send under way: at most the queue's capacity), or dropped when its send
        // fails: so all but the held ones are counted already.
        assert_eq!(total(obs, SENT), 0.0, "{case}");
        let dropped = total(obs, DROPPED);
        assert!(
            dropped >= (n - CAPACITY) as f64 && dropped <= n as f64,
            "{case}: {dropped} dropped of {n}"
        );
    }
    // Within noise of no reporting: the same order, never the 500 ms send timeout.
    let cases: Vec<_> = setups.iter().map(|(case, _)| *case).collect();
    cost::assert_near_baseline(&cases, &latencies, "without reporting");

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
    let outage = cost::burst(hung, DROPPED, async {
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
    })
    .await;
    let (took, growth, dropped) = (outage.took, outage.rss_growth, outage.dropped);
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
    assert_eq!(total(hung, SENT), 0.0);

    // Once the transport has given up on what it holds, every event is accounted for.
    for (case, obs) in &setups[1..] {
        let sent = if *case == "hanging" { n + BURST } else { n };
        let all = eventually(Duration::from_secs(30), || {
            (total(obs, DROPPED) == sent as f64).then_some(())
        })
        .await;
        assert!(
            all.is_some(),
            "{case}: {} dropped of {sent}",
            total(obs, DROPPED)
        );
    }
}
