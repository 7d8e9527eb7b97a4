//! Telemetry endpoints that fail, for real on 127.0.0.1: a collector on a closed port that
//! comes up later, a Sentry that answers 503 then 429 with rate limits then 200, endpoints
//! that accept and never answer. While a sender backs off or its queue is full, requests
//! capture no span and build no event (`before_send` never runs): they are counted by
//! reason; each change of state is one warn line naming the endpoint; an endpoint that is
//! back receives again within one backoff period. (Not timed: the load figures are
//! `scripts/outage.sh`.)

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use support::otlp_receiver::OtlpReceiver;
use support::sentry_endpoint::{Answer, SentryEndpoint};
use support::*;
use tower_observability::trace::{BatchSettings, OtlpProtocol, OtlpSettings};
use tower_observability::{Observability, Sentry};
use tracing_subscriber::layer::SubscriberExt;

const SPANS_DROPPED: &str = "tower_observability_spans_dropped_total";
const SPANS_EXPORTED: &str = "tower_observability_spans_exported_total";
const EVENTS_DROPPED: &str = "tower_observability_sentry_events_dropped_total";
const EVENTS_SENT: &str = "tower_observability_sentry_events_sent_total";

/// The log lines of this test binary, as text. Global: the lines come from the senders'
/// threads. Each test reads the lines naming its own endpoint.
fn logs() -> CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(logs.clone()),
            );
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

/// The warn lines that name `endpoint`.
fn warnings(logs: &CapturedLogs, endpoint: &str) -> Vec<String> {
    logs.text()
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(endpoint))
        .map(str::to_owned)
        .collect()
}

/// A drop counter's value for one reason.
fn dropped(obs: &Observability, metric: &str, reason: &str) -> f64 {
    sample(&obs.render_metrics(), metric, &[("reason", reason)])
        .unwrap_or_else(|| panic!("{metric}{{reason={reason:?}}} not exported"))
}

fn counter(obs: &Observability, metric: &str) -> f64 {
    sample(&obs.render_metrics(), metric, &[]).unwrap_or_else(|| panic!("{metric} not exported"))
}

async fn get_n(client: &HttpClient, uri: &str, n: usize, status: u16) {
    for _ in 0..n {
        assert_eq!(send(client, "GET", uri, b"").await.0, status, "{uri}");
    }
}

fn app(obs: &Observability) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/fail",
            get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .layer(obs.layer())
}

fn otlp(endpoint: String, timeout: Duration) -> OtlpSettings {
    OtlpSettings {
        protocol: OtlpProtocol::HttpProtobuf,
        endpoint: Some(endpoint),
        timeout,
        headers: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_a_counter_and_receives_again_when_back() {
    let logs = logs();
    let addr = closed_port();
    let endpoint = format!("http://{addr}/v1/traces");
    let obs = isolated("collector-down")
        .otlp(otlp(endpoint.clone(), Duration::from_secs(2)))
        .batch_settings(BatchSettings {
            max_queue_size: 64,
            max_export_batch_size: 64,
            scheduled_delay: Duration::from_millis(100),
            export_timeout: Duration::from_secs(2),
        })
        .build()
        .unwrap();
    let uri = format!("http://{}/ok", serve(app(&obs)).await);
    let client = client();

    // Down: the first spans are captured, tried and refused.
    get_n(&client, &uri, 10, 200).await;
    let refused = eventually(Duration::from_secs(5), || {
        let n = dropped(&obs, SPANS_DROPPED, "refused");
        (n > 0.0).then_some(n)
    })
    .await
    .expect("the refused export is counted");
    // While the exporter waits (at least 500 ms), requests capture nothing: counted.
    get_n(&client, &uri, 20, 200).await;
    let backoff = dropped(&obs, SPANS_DROPPED, "backoff");
    assert!(
        backoff >= 1.0,
        "spans not captured while backing off: {backoff}"
    );
    assert_eq!(
        refused + backoff,
        30.0,
        "every span is refused or counted: none is queued or lost uncounted"
    );
    for reason in [
        "queue_full",
        "timeout",
        "rejected",
        "rate_limited",
        "shutdown",
    ] {
        assert_eq!(dropped(&obs, SPANS_DROPPED, reason), 0.0, "{reason}");
    }

    // Back: the collector listens again; requests keep coming, one every 50 ms.
    // The port was free a moment ago (the collector was "down"): take it back.
    let received = OtlpReceiver::http_on(addr).await;
    let up = Instant::now();
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        while received.count() == 0 {
            get_n(&client, &uri, 1, 200).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        up.elapsed()
    })
    .await
    .expect("the collector that came back receives spans again");
    println!("collector back: spans arrive {back:?} after it listens again");
    // The wait in effect when it came back is the first (at most 1 s), or the second (at
    // most 2 s) if a try fell in between; then the first spans leave 250 ms later.
    assert!(back <= Duration::from_millis(2500), "{back:?}");

    // One line when it went down, one when it came back, none per request.
    let lines = warnings(&logs, &endpoint);
    let total = counter(&obs, SPANS_DROPPED);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("span export to") && lines[0].contains("failed"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("works again") && lines[1].contains(&format!("{total} spans dropped")),
        "{} (dropped: {total})",
        lines[1]
    );
    assert!(counter(&obs, SPANS_EXPORTED) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_rate_limiting_sentry_builds_no_events_and_receives_again_when_back() {
    let logs = logs();
    let sentry = SentryEndpoint::start_answering(Answer {
        status: 503,
        ..Answer::default()
    })
    .await;
    let built = Arc::new(AtomicUsize::new(0));
    let counted = built.clone();
    let obs = isolated("sentry-failing")
        .sentry(Sentry::dsn(sentry.dsn()).before_send(move |event| {
            counted.fetch_add(1, Ordering::SeqCst);
            Some(event)
        }))
        .build()
        .unwrap();
    let uri = format!("http://{}/fail", serve(app(&obs)).await);
    let client = client();
    let endpoint = format!("{}/api/42/envelope/", sentry.addr.unwrap());

    // 503: the first event is built, posted, rejected.
    get_n(&client, &uri, 1, 500).await;
    eventually(Duration::from_secs(5), || {
        (dropped(&obs, EVENTS_DROPPED, "rejected") == 1.0).then_some(())
    })
    .await
    .expect("the rejected event is counted");
    // Backing off: failing requests are counted; their events are never built.
    get_n(&client, &uri, 20, 500).await;
    let backoff = dropped(&obs, EVENTS_DROPPED, "backoff");
    let made = built.load(Ordering::SeqCst);
    assert!(backoff >= 1.0, "{backoff}");
    assert_eq!(
        made as f64 + backoff,
        21.0,
        "an event is either built or counted"
    );
    assert_eq!(sentry.posts(), made, "every event built was posted");

    // Back up: the next failures after the wait are delivered.
    sentry.answer(Answer::default());
    let up = Instant::now();
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        while sentry.events().is_empty() {
            get_n(&client, &uri, 1, 500).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        up.elapsed()
    })
    .await
    .expect("Sentry receives events again");
    println!("Sentry back: an event arrives {back:?} after it answers 200 again");
    assert!(back <= Duration::from_millis(2500), "{back:?}");
    let sent = counter(&obs, EVENTS_SENT);

    // Rate limited: a 429 asking for 2 s stops events for 2 s, built or not.
    sentry.answer(Answer {
        status: 429,
        headers: vec![("x-sentry-rate-limits", "2:error:key".into())],
        ..Answer::default()
    });
    get_n(&client, &uri, 1, 500).await;
    eventually(Duration::from_secs(5), || {
        (dropped(&obs, EVENTS_DROPPED, "rate_limited") == 1.0).then_some(())
    })
    .await
    .expect("the 429 is counted");
    let (made, posts) = (built.load(Ordering::SeqCst), sentry.posts());
    get_n(&client, &uri, 10, 500).await;
    assert_eq!(dropped(&obs, EVENTS_DROPPED, "rate_limited"), 11.0);
    assert_eq!(
        built.load(Ordering::SeqCst),
        made,
        "nothing built while paused"
    );
    assert_eq!(sentry.posts(), posts, "nothing posted while paused");
    sentry.answer(Answer::default());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let delivered = tokio::time::timeout(Duration::from_secs(5), async {
        while counter(&obs, EVENTS_SENT) == sent {
            get_n(&client, &uri, 1, 500).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(delivered.is_ok(), "events flow again after the pause");

    // A state change, a line: down, back, rate limited, back.
    let lines = warnings(&logs, &endpoint);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].contains("503") && lines[0].contains("failed"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("works again"), "{}", lines[1]);
    assert!(lines[2].contains("429"), "{}", lines[2]);
    assert!(lines[3].contains("works again"), "{}", lines[3]);
    assert!(
        !lines.iter().any(|l| l.contains("public-key")),
        "no key in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queues_and_silent_endpoints_are_counted_by_their_reason() {
    let _logs = logs();
    let hanging = hanging_endpoint().await;
    let obs = isolated("silent")
        .otlp(otlp(
            format!("http://{hanging}/v1/traces"),
            Duration::from_secs(1),
        ))
        .batch_settings(BatchSettings {
            max_queue_size: 8,
            max_export_batch_size: 8,
            scheduled_delay: Duration::from_millis(50),
            export_timeout: Duration::from_secs(1),
        })
        .sentry(
            Sentry::dsn(format!("http://public@{hanging}/1"))
                .queue_capacity(2)
                .send_timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let base = format!("http://{}", serve(app(&obs)).await);
    let client = client();
    // The first batch of 8 hangs in the exporter; 8 more fill the queue; the rest find
    // it full. The first event hangs in the transport, 2 wait, the rest find it full.
    get_n(&client, &format!("{base}/fail"), 30, 500).await;
    assert!(dropped(&obs, SPANS_DROPPED, "queue_full") >= 1.0);
    assert!(dropped(&obs, EVENTS_DROPPED, "queue_full") >= 1.0);
    // The sends time out after 1 s: counted as timeouts.
    let timed_out = eventually(Duration::from_secs(5), || {
        let spans = dropped(&obs, SPANS_DROPPED, "timeout");
        let events = dropped(&obs, EVENTS_DROPPED, "timeout");
        (spans >= 8.0 && events >= 1.0).then_some((spans, events))
    })
    .await;
    assert!(timed_out.is_some(), "{}", obs.render_metrics());
    // Everything is accounted for: nothing was delivered, nothing is lost uncounted
    // beyond what is still held (a queue each).
    let spans = counter(&obs, SPANS_DROPPED);
    let events = counter(&obs, EVENTS_DROPPED);
    assert!((30.0 - 8.0..=30.0).contains(&spans), "{spans}");
    assert!((30.0 - 2.0..=30.0).contains(&events), "{events}");
    assert_eq!(
        counter(&obs, SPANS_EXPORTED) + counter(&obs, EVENTS_SENT),
        0.0
    );
    // Shutting down with both hanging ends within its timeout, and counts the rest.
    let started = Instant::now();
    assert!(!obs.shutdown(Duration::from_millis(500)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
