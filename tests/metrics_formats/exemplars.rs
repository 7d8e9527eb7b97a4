//! A real Prometheus with exemplar storage scrapes a traced service under traffic: the
//! exemplars it stores lead to spans the OTLP receiver got.

use std::time::Instant;

use support::processes::Prometheus;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_exemplars_that_lead_to_exported_traces() {
    let (received, endpoint) = span_receiver().await;
    let obs = exporting(isolated("exemplars"), &endpoint).build().unwrap();
    let app = serve(app().layer(obs.layer())).await;
    let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
    let admin = admin_server.local_addr();
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: exemplars\n    static_configs:\n      - targets: ['{admin}']\n"
    );
    let prometheus =
        Prometheus::start_with_flags(&config, &[], &["--enable-feature=exemplar-storage"]).await;

    // Traffic and queries interleaved, for at most 60 s, until both histograms have
    // exemplars in Prometheus.
    let start = Instant::now();
    let mut found: Vec<(String, String)> = Vec::new();
    let families = [
        "http_server_request_duration_seconds_bucket",
        "rpc_server_call_duration_seconds_bucket",
    ];
    while start.elapsed() < Duration::from_secs(60) {
        for id in 0..5 {
            get_with(&format!("http://{app}/users/{id}"), &[]).await;
        }
        get_with(&format!("http://{app}/sleep/30"), &[]).await;
        grpc_call(app).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        found.clear();
        for family in families {
            let data = prometheus
                .api(
                    "query_exemplars",
                    &[
                        ("query", family),
                        ("start", &(now - 120).to_string()),
                        ("end", &(now + 5).to_string()),
                    ],
                )
                .await
                .unwrap_or_else(|e| panic!("query_exemplars: {e}\n{}", prometheus.log()));
            for series in data.as_array().into_iter().flatten() {
                for e in series["exemplars"].as_array().into_iter().flatten() {
                    let trace_id = e["labels"]["trace_id"].as_str().unwrap_or_default();
                    found.push((family.to_owned(), trace_id.to_owned()));
                }
            }
        }
        if families.iter().all(|f| found.iter().any(|(g, _)| g == f)) {
            break;
        }
    }
    assert!(
        families.iter().all(|f| found.iter().any(|(g, _)| g == f)),
        "exemplars for both histograms within 60 s, got {found:?}\n{}",
        prometheus.log()
    );

    // Every exemplar's trace is one the receiver got.
    assert!(obs.flush_traces(Duration::from_secs(10)));
    let exported = trace_ids(&received);
    for (family, trace_id) in &found {
        assert_eq!(trace_id.len(), 32, "{family}: {trace_id:?}");
        assert!(
            exported.contains(trace_id),
            "{family}: exemplar trace {trace_id} was not exported ({} traces were)",
            exported.len()
        );
    }
}
