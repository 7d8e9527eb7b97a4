//! A real Prometheus with native histograms scrapes the protobuf format: the native p99 of a
//! known latency mix agrees with the classic buckets' p99, within the classic bucket, and
//! is closer to the truth.

use std::time::Instant;

use support::processes::Prometheus;
use tower::ServiceExt;
use tower_observability::NativeHistograms;

use super::*;

/// The p99 of a query, once Prometheus has one (the mix must be in the rate window).
async fn p99(prometheus: &Prometheus, query: &str) -> Option<f64> {
    let result = prometheus.query(query).await.ok()?;
    let value = result.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
    value.is_finite().then_some(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_classic_quantiles_agree_within_the_classic_bucket() {
    let obs = isolated("native")
        .native_histograms(NativeHistograms::default())
        .build()
        .unwrap();
    let app = serve(app().layer(obs.layer())).await;
    let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
    let native = admin_server.local_addr();
    // The same exposition for a scraper that asks for the text format: Prometheus 2.42
    // keeps only the native view of a histogram scraped with native buckets.
    let admin = obs.admin_service();
    let classic = serve(Router::new().route_service(
        "/metrics",
        tower::service_fn(move |mut req: http::Request<axum::body::Body>| {
            req.headers_mut()
                .insert("accept", http::HeaderValue::from_static("text/plain"));
            admin.clone().oneshot(req)
        }),
    ))
    .await;
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n\
         \x20 - job_name: native\n    static_configs:\n      - targets: ['{native}']\n\
         \x20 - job_name: classic\n    static_configs:\n      - targets: ['{classic}']\n"
    );
    let prometheus =
        Prometheus::start_with_flags(&config, &[], &["--enable-feature=native-histograms"]).await;

    // The protobuf answer, as Prometheus asks for it.
    let (_, content_type, _) = get_with(
        &format!("http://{native}/metrics"),
        &[(
            "accept",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;q=0.3",
        )],
    )
    .await;
    assert!(
        content_type.starts_with("application/vnd.google.protobuf"),
        "{content_type}"
    );

    // One request of each kind, so the series exist before the mix is counted.
    get_with(&format!("http://{app}/sleep/50"), &[]).await;
    get_with(&format!("http://{app}/sleep/800"), &[]).await;
    let seen = |job: &'static str, metric: &'static str| {
        let prometheus = &prometheus;
        async move {
            prometheus
                .query(&format!("{metric}{{job=\"{job}\"}}"))
                .await
                .is_ok_and(|r| !r.is_empty())
        }
    };
    let start = Instant::now();
    while !(seen("native", "http_server_request_duration_seconds").await
        && seen("classic", "http_server_request_duration_seconds_bucket").await)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "series not scraped within 30 s\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The mix: 180 requests of 50 ms and 20 of 800 ms, 20 at a time. The p99 is among the
    // slow ones: 0.8 s and a little (the handler sleeps 800 ms).
    let slow = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|task| {
            let slow = slow.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let ms = if task == 0 || (i == 0 && task < 11) {
                        800
                    } else {
                        50
                    };
                    if ms == 800 {
                        slow.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    get_with(&format!("http://{app}/sleep/{ms}"), &[]).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(slow.load(std::sync::atomic::Ordering::Relaxed), 20);

    let route = "http_route=\"/sleep/{ms}\"";
    let native_q = format!(
        "histogram_quantile(0.99, sum(rate(http_server_request_duration_seconds{{job=\"native\",{route}}}[1m])))"
    );
    let classic_q = format!(
        "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{{job=\"classic\",{route}}}[1m])))"
    );
    // Until both have scraped the whole mix (their counts reach 202), at most 30 s.
    let start = Instant::now();
    let complete = |job: &'static str, query: String| {
        let prometheus = &prometheus;
        async move {
            prometheus
                .query(&query)
                .await
                .ok()
                .and_then(|r| r.first()?["value"][1].as_str()?.parse::<f64>().ok())
                .is_some_and(|v| v >= 202.0)
                .then_some(job)
        }
    };
    loop {
        let native_done = complete(
            "native",
            format!("sum(histogram_count(http_server_request_duration_seconds{{job=\"native\",{route}}}))"),
        )
        .await;
        let classic_done = complete(
            "classic",
            format!("sum(http_server_request_duration_seconds_count{{job=\"classic\",{route}}})"),
        )
        .await;
        if native_done.is_some() && classic_done.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the mix was not scraped within 30 s\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let native_p99 = p99(&prometheus, &native_q).await.expect("a native p99");
    let classic_p99 = p99(&prometheus, &classic_q).await.expect("a classic p99");
    eprintln!("p99: native {native_p99:.4} s, classic {classic_p99:.4} s (true: 0.80x s)");

    // The classic estimate is somewhere in its bucket (0.75, 1]; the native one within its
    // own bucket around 0.8 s: (2^(-3/8), 2^(-2/8)] at schema 3, 9 % wide.
    assert!(
        (0.75..=1.0).contains(&classic_p99),
        "classic p99 {classic_p99}"
    );
    let (low, high) = (2f64.powf(-3.0 / 8.0), 2f64.powf(-2.0 / 8.0));
    assert!(
        (low..=high).contains(&native_p99),
        "native p99 {native_p99} outside ({low}, {high}]"
    );
    assert!(
        (native_p99 - classic_p99).abs() <= 0.25,
        "they agree within the classic bucket's width"
    );
}
