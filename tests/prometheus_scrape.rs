//! A real Prometheus server scrapes the quickstart example under traffic, and the
//! per-route, per-status request rate comes out as the service saw it.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::processes::{quickstart, Prometheus};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_quickstart_under_traffic() {
    let (_app, app, admin) = quickstart();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: quickstart\n    static_configs:\n      - targets: ['{admin}']\n"
    );
    let prometheus = Prometheus::start(&config, &[]).await;

    let expected: BTreeSet<(String, String)> = [
        ("/", "200"),
        ("/users/{id}", "200"),
        ("/users/{id}", "404"),
        ("/api/v1/items/{id}", "200"),
        ("/slow", "200"),
        ("/stream", "200"),
        ("/fail", "500"),
        ("/panic", "500"),
        ("unmatched", "404"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    let paths = [
        "/",
        "/users/42",
        "/users/0",
        "/api/v1/items/7",
        "/slow?ms=20",
        "/stream",
        "/fail",
        "/panic",
        "/no/such/path",
        "/another/random/path",
    ];
    let query = "sum by (http_route, http_response_status_code) \
                 (rate(http_server_request_duration_seconds_count[1m]))";
    let client = client();
    let start = Instant::now();
    let mut seen = BTreeSet::new();
    // Traffic and queries interleaved, for at most 60 s.
    while start.elapsed() < Duration::from_secs(60) {
        for path in paths {
            send(&client, "GET", &format!("http://{app}{path}"), b"").await;
        }
        let result = prometheus.query(query).await.expect("query runs");
        seen = result
            .iter()
            .filter(|s| s["value"][1].as_str().unwrap_or("0") != "0")
            .map(|s| {
                let m = &s["metric"];
                (
                    m["http_route"].as_str().unwrap_or_default().to_owned(),
                    m["http_response_status_code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen, expected, "routes and codes Prometheus saw");

    // The service's identity and process metrics came along with the scrape.
    let info = prometheus.query("target_info").await.unwrap();
    assert_eq!(info[0]["metric"]["service_name"], "quickstart");
    let rss = prometheus
        .query("process_resident_memory_bytes")
        .await
        .unwrap();
    assert_eq!(rss.len(), 1);
    let scrape_paths = prometheus
        .query(
            "count(http_server_request_duration_seconds_count{http_route=~\"/metrics|/healthz\"})",
        )
        .await
        .unwrap();
    assert!(scrape_paths.is_empty(), "scrapes were counted as requests");
}
