//! The OpenMetrics exposition, read by a real OpenMetrics parser (Python's
//! `prometheus_client`, installed by `scripts/test-all.sh`).

use std::collections::HashMap;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use super::*;

/// One family as the parser returned it.
#[derive(Debug, Deserialize)]
struct ParsedFamily {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    unit: String,
    samples: Vec<ParsedSample>,
}

#[derive(Debug, Deserialize)]
struct ParsedSample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
    exemplar: Option<Value>,
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "unit": f.unit, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value,
         "exemplar": None if s.exemplar is None else
            {"labels": s.exemplar.labels, "value": s.exemplar.value,
             "timestamp": float(s.exemplar.timestamp)}}
        for s in f.samples]})
json.dump(out, sys.stdout)
"#;

/// Parses `text` with `prometheus_client.openmetrics.parser`; panics with its error.
fn parse_openmetrics(text: &str) -> Vec<ParsedFamily> {
    let out = processes::run_with_input(Command::new("python3").args(["-c", PARSE]), text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "pip install prometheus_client (scripts/test-all.sh does)"
    );
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_exposition_parses_as_openmetrics_with_exemplars_of_exported_spans() {
    let (received, endpoint) = span_receiver().await;
    // The installed recorder: the application's own `metrics::` calls are exposed too (the
    // only test of this binary that installs one).
    let obs = exporting(tower_observability::Observability::builder("om"), &endpoint)
        .build()
        .unwrap();
    for name in ["app_jobs_total", "app_plain"] {
        metrics::describe_counter!(name, "An application counter.");
    }
    metrics::describe_gauge!("app_temperature", "An application gauge.");
    metrics::describe_histogram!("app_latency_seconds", "An application histogram.");
    metrics::counter!("app_jobs_total", "queue" => "a\"b").increment(3);
    metrics::counter!("app_plain").increment(2);
    metrics::gauge!("app_temperature").set(-1.5);
    metrics::histogram!("app_latency_seconds").record(0.2);
    let app = serve(app().layer(obs.layer())).await;
    let admin_server = obs.serve_admin("127.0.0.1:0").unwrap();
    let admin = admin_server.local_addr();

    for id in 0..5 {
        get_with(&format!("http://{app}/users/{id}"), &[]).await;
    }
    assert_eq!(grpc_call(app).await, 200);
    // A caller that did not sample its trace: the span is not exported, so no exemplar.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    get_with(
        &format!("http://{app}/users/99"),
        &[(
            "traceparent",
            &format!("00-{unsampled}-b7ad6b7169203331-00"),
        )],
    )
    .await;
    assert!(obs.flush_traces(Duration::from_secs(10)), "spans exported");

    let (status, content_type, body) = get_with(
        &format!("http://{admin}/metrics"),
        &[("accept", PROMETHEUS_ACCEPT)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.ends_with("# EOF\n"), "{}", &text[text.len() - 200..]);
    assert!(!text.contains("\n\n"), "no blank lines in OpenMetrics");
    let families = parse_openmetrics(&text);
    let family = |name: &str| {
        families.iter().find(|f| f.name == name).unwrap_or_else(|| {
            panic!(
                "no family {name} in {:?}",
                families.iter().map(|f| &f.name).collect::<Vec<_>>()
            )
        })
    };

    // The duration histograms, with exemplars that all point to exported spans.
    let exported = trace_ids(&received);
    for (name, count) in [
        // Five users, the unsampled one and the gRPC call.
        ("http_server_request_duration_seconds", 7.0),
        ("rpc_server_call_duration_seconds", 1.0),
    ] {
        let f = family(name);
        assert_eq!((f.kind.as_str(), f.unit.as_str()), ("histogram", "seconds"));
        let total: f64 = f
            .samples
            .iter()
            .filter(|s| s.name == format!("{name}_count"))
            .map(|s| s.value)
            .sum();
        assert_eq!(total, count, "{name}");
        let exemplars: Vec<&Value> = f
            .samples
            .iter()
            .filter_map(|s| s.exemplar.as_ref())
            .collect();
        assert!(!exemplars.is_empty(), "{name} has exemplars");
        for e in exemplars {
            let trace_id = e["labels"]["trace_id"].as_str().unwrap();
            assert_eq!(e["labels"]["span_id"].as_str().unwrap().len(), 16);
            assert!(exported.contains(trace_id), "{trace_id} was exported");
            assert_ne!(trace_id, unsampled);
            let age = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                - e["timestamp"].as_f64().unwrap();
            assert!((0.0..120.0).contains(&age), "exemplar time {age} s ago");
        }
    }
    assert!(
        !text.contains(unsampled),
        "an unexported span gives no exemplar"
    );

    // The rest of the exposition: the crate's counters and gauges, the application's
    // metrics, the process metrics, each with its OpenMetrics type.
    for (name, kind) in [
        ("tower_observability_panics", "counter"),
        ("tower_observability_spans_exported", "counter"),
        ("http_server_active_requests", "gauge"),
        ("target_info", "gauge"),
        ("app_jobs", "counter"),
        ("app_plain", "unknown"),
        ("app_temperature", "gauge"),
        ("app_latency_seconds", "histogram"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ] {
        assert_eq!(family(name).kind, kind, "{name}");
    }
    let jobs = &family("app_jobs").samples[0];
    assert_eq!((jobs.name.as_str(), jobs.value), ("app_jobs_total", 3.0));
    assert_eq!(jobs.labels["queue"], "a\"b");
    assert_eq!(
        family("app_plain").samples[0].name,
        "app_plain",
        "names kept"
    );

    // Without an OpenMetrics Accept: the classic format, which promtool accepts silently.
    let (_, content_type, body) = get_with(&format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let classic = String::from_utf8(body.to_vec()).unwrap();
    assert!(!classic.contains("# EOF") && !classic.contains("trace_id"));
    // Silent but for the application's own counter named against the convention.
    let lint = promtool_check_metrics(&classic);
    assert!(
        lint.lines()
            .all(|l| l.contains("app_plain counter metrics should have")),
        "promtool check metrics: {lint}"
    );
}
