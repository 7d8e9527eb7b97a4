//! Values kept in one place: buckets, the crate's marker series, cancellations never
//! counted as faults.

use super::*;

/// A value of the generator's Python modules (tools/), as JSON.
fn python_value(module: &str, expr: &str) -> serde_json::Value {
    let out = run_ok(
        Command::new(tool("python3", "python3"))
            .arg("-c")
            .arg(format!(
                "import json, sys; sys.path.insert(0, sys.argv[1]); import {module}; print(json.dumps({expr}))"
            ))
            .arg(repo().join("tools")),
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

/// The generator checks the latency threshold against the crate's default buckets, which it
/// reads from the Rust source (tools/contract.py); they, and the list in tools/slo.toml's
/// comment, must be the crate's.
#[test]
fn generator_buckets_are_the_crates_default_duration_buckets() {
    let crate_buckets = tower_observability::DEFAULT_DURATION_BUCKETS.to_vec();
    let python: Vec<f64> = python_value("contract", "contract.DEFAULT_DURATION_BUCKETS")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(
        python, crate_buckets,
        "tools/contract.py reads other buckets than DEFAULT_DURATION_BUCKETS (src/metrics/mod.rs)"
    );
    let toml = read(repo().join("tools/slo.toml"));
    let listed = toml
        .lines()
        .skip_while(|l| !l.contains("the crate's default buckets"))
        .nth(1)
        .expect("tools/slo.toml lists the default buckets");
    let listed: Vec<f64> = listed
        .trim_start_matches('#')
        .trim()
        .trim_end_matches(").")
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(
        listed, crate_buckets,
        "tools/slo.toml's comment lists other buckets"
    );
    // The threshold is one of them.
    let threshold: f64 = slo_toml("latency", "threshold_seconds").parse().unwrap();
    assert!(crate_buckets.contains(&threshold));
}

/// Service-down, saturation alerts and the dashboards' job/instance variables select the
/// crate's services by a series only the crate emits, not by `target_info`, which every
/// OpenTelemetry SDK and the Collector expose too. (tests/rules/service.test.yml shows an
/// OpenTelemetry SDK target staying silent; the mutation test swaps the marker back.)
#[test]
fn services_are_selected_by_a_series_only_the_crate_emits() {
    use tower_observability::metrics::names as n;
    let marker = python_value("rules", "rules.CRATE_MARKER");
    assert_eq!(marker, n::PANICS, "tools/rules.py CRATE_MARKER");
    let spec = CATALOGUE.iter().find(|m| m.name == n::PANICS).unwrap();
    assert!(
        spec.kind == MetricKind::Counter && spec.labels.is_empty(),
        "the marker is one unlabelled counter per process"
    );
    assert!(n::PANICS.starts_with("tower_observability_"));
    let mut problems = Vec::new();
    for g in rule_groups() {
        let group = g.str("name").unwrap();
        for r in g.seq("rules") {
            let name = r.str("alert").or(r.str("record")).unwrap();
            let expr = r.str("expr").unwrap();
            if expr.contains(n::TARGET_INFO) {
                problems.push(format!("{name}: selects by target_info"));
            }
            let selects = group.ends_with("-service") || group.ends_with("-saturation");
            if selects && !expr.contains(&format!("present_over_time({}[1d])", n::PANICS)) {
                problems.push(format!(
                    "{name}: does not select the crate's services by {}",
                    n::PANICS
                ));
            }
        }
    }
    for (path, d) in dashboards() {
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["name"] == "job" || v["name"] == "instance" {
                let query = v["query"].as_str().unwrap_or_default();
                if !query.starts_with(&format!("label_values({}", n::PANICS)) {
                    problems.push(format!(
                        "{}: variable {} lists {query}",
                        path.display(),
                        v["name"]
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Cancelled requests and calls are the client's doing: no ratio counts them on either side,
/// and no query lists them as faults, except panels that show every error type (HTTP
/// "Errors by type", where `cancelled` is one of the types on display).
fn error_type_problems(what: &str, panel_title: &str, expr: &str) -> Vec<String> {
    use tower_observability::metrics::names as n;
    let mut problems = Vec::new();
    let server_error = r#"error_type!="",error_type!="cancelled""#;
    let bare = expr.replace(server_error, "");
    if bare.contains(r#"error_type!="""#) && !panel_title.contains("Errors by type") {
        problems.push(format!(
            "{what}: error_type!=\"\" counts cancellations as faults"
        ));
    }
    // Ratios are written `numerator\n/\ndenominator`: the denominator runs to the next
    // `and` / comparison, and every request count in it must leave cancellations out.
    if expr.contains(server_error) {
        for after in expr.split("\n/\n").skip(1) {
            let denominator = after
                .split("\nand")
                .next()
                .unwrap()
                .split("\n>")
                .next()
                .unwrap();
            for metric in [
                format!("{}_count", n::HTTP_SERVER_REQUEST_DURATION),
                format!("{}_count", n::RPC_SERVER_CALL_DURATION),
            ] {
                for part in denominator.split(&metric).skip(1) {
                    let selector = match part.strip_prefix('{') {
                        Some(rest) => &rest[..rest.find('}').unwrap_or(rest.len())],
                        None => "",
                    };
                    if !selector.contains(r#"error_type!="cancelled""#) {
                        problems.push(format!(
                            "{what}: a ratio divides by {metric} with cancelled requests in it"
                        ));
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn no_ratio_or_fault_panel_counts_cancellations() {
    let mut problems = Vec::new();
    for r in rules() {
        let name = r.str("alert").or(r.str("record")).unwrap();
        problems.extend(error_type_problems(
            &format!("rule {name}"),
            "",
            r.str("expr").unwrap(),
        ));
    }
    for q in dashboard_queries() {
        let what = format!("{} / {}", q.dashboard, q.panel);
        problems.extend(error_type_problems(&what, &q.panel, &q.expr));
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The check can fail: the gRPC panel and alert as they were.
    let c = r#"rpc_server_call_duration_seconds_count"#;
    assert!(!error_type_problems(
        "x",
        "Server faults by code",
        &format!(r#"sum by (error_type) (rate({c}{{error_type!=""}}[5m]))"#)
    )
    .is_empty());
    assert!(!error_type_problems(
        "x",
        "",
        &format!(
            "sum(rate({c}{{error_type!=\"\",error_type!=\"cancelled\"}}[10m]))\n/\nsum(rate({c}[10m]))"
        )
    )
    .is_empty());
}
