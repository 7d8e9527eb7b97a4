//! Rules and dashboards name only metrics and labels the crate emits.

use super::*;

struct Allowed {
    metrics: BTreeMap<String, BTreeSet<String>>,
}

impl Allowed {
    fn new() -> Self {
        let mut metrics = BTreeMap::new();
        for m in CATALOGUE {
            let labels: BTreeSet<String> = m.labels.iter().map(|l| l.to_string()).collect();
            match m.kind {
                MetricKind::Histogram => {
                    // A duration histogram's native series: the family's own name, no `le`.
                    if m.name.ends_with("_duration_seconds") {
                        metrics.insert(m.name.to_string(), labels.clone());
                    }
                    let mut with_le = labels.clone();
                    with_le.insert("le".into());
                    metrics.insert(format!("{}_bucket", m.name), with_le);
                    metrics.insert(format!("{}_sum", m.name), labels.clone());
                    metrics.insert(format!("{}_count", m.name), labels);
                }
                _ => {
                    metrics.insert(m.name.to_string(), labels);
                }
            }
        }
        for (name, labels) in PROMETHEUS_SERIES {
            metrics.insert(
                name.to_string(),
                labels.iter().map(|l| l.to_string()).collect(),
            );
        }
        // Recording rules keep only `job` (they aggregate `by (job)`).
        for name in recorded_names() {
            metrics.insert(name, BTreeSet::new());
        }
        Allowed { metrics }
    }

    /// Problems with one query: unknown metrics, labels none of its metrics carry, functions
    /// Prometheus 2.42 lacks, legend labels the query cannot produce.
    fn check(&self, what: &str, expr: &str, legend: &str) -> Vec<String> {
        let n = match monitoring::promql::names(expr) {
            Ok(n) => n,
            Err(e) => return vec![format!("{what}: {e}")],
        };
        let mut problems = Vec::new();
        let mut labels: BTreeSet<String> = ["job", "instance", "__name__"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for m in &n.metrics {
            match self.metrics.get(m) {
                Some(l) => labels.extend(l.iter().cloned()),
                None if m.contains(':') => problems.push(format!(
                    "{what}: recording rule {m} is not defined in alerts/"
                )),
                None => problems.push(format!("{what}: metric {m} is not in names::CATALOGUE")),
            }
        }
        labels.extend(n.derived.iter().cloned());
        for l in &n.labels {
            if !labels.contains(l) {
                problems.push(format!(
                    "{what}: label {l} is not carried by {:?}",
                    n.metrics
                ));
            }
        }
        for l in monitoring::promql::legend_labels(legend) {
            if !labels.contains(&l)
                || (n.aggregates() && !n.by.contains(&l) && !n.derived.contains(&l))
            {
                problems.push(format!(
                    "{what}: legend {{{{{l}}}}} names a label the query does not return"
                ));
            }
        }
        for f in &n.functions {
            if !monitoring::promql::FUNCTIONS_2_42.contains(&f.as_str())
                && !monitoring::promql::AGGREGATIONS.contains(&f.as_str())
            {
                problems.push(format!("{what}: function {f} is not in Prometheus 2.42"));
            }
        }
        problems
    }
}

#[test]
fn rules_name_only_metrics_and_labels_the_crate_emits() {
    let allowed = Allowed::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for r in rules() {
        let name = r.str("alert").or(r.str("record")).unwrap();
        problems.extend(allowed.check(&format!("rule {name}"), r.str("expr").unwrap(), ""));
        checked += 1;
    }
    assert!(checked > 40, "only {checked} rules found");
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn dashboards_name_only_metrics_and_labels_the_crate_emits() {
    let allowed = Allowed::new();
    let mut problems = Vec::new();
    let queries = dashboard_queries();
    for q in &queries {
        let what = format!("{} / {}", q.dashboard, q.panel);
        let expr = substitute(&q.expr, GRAFANA_VARS);
        problems.extend(allowed.check(&what, &expr, &q.legend));
        if let Some((selector, label)) = &q.label_values {
            let n = monitoring::promql::names(&substitute(selector, GRAFANA_VARS)).unwrap();
            let carried: BTreeSet<&String> = n
                .metrics
                .iter()
                .filter_map(|m| allowed.metrics.get(m))
                .flatten()
                .collect();
            if !["job", "instance"].contains(&label.as_str()) && !carried.contains(label) {
                problems.push(format!(
                    "{what}: label_values asks for {label}, which {:?} does not carry",
                    n.metrics
                ));
            }
        }
    }
    assert!(
        queries.len() > 60,
        "only {} dashboard queries found",
        queries.len()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The names test must be able to fail: feed it what a careless edit would write.
#[test]
fn names_check_rejects_unknown_metrics_and_labels() {
    let allowed = Allowed::new();
    let cases = [
        ("http_requests_total", "unknown metric"),
        (
            r#"sum by (path) (rate(http_server_request_duration_seconds_count[5m]))"#,
            "unknown label",
        ),
        (
            r#"http_server_active_requests{http_route="/"}"#,
            "label of another metric",
        ),
        (
            "http_server_request_body_size_bytes",
            "a classic-only histogram's base name is not a series",
        ),
        (
            r#"http_server_request_duration_seconds{le="1"}"#,
            "no le on a native histogram",
        ),
        (
            "http_server_request_duration_seconds_sum{le=\"1\"}",
            "le only on _bucket",
        ),
        ("job:made_up:rate5m", "undefined recording rule"),
        ("sort_by_label(up, \"job\")", "function newer than 2.42"),
    ];
    for (expr, why) in cases {
        assert!(
            !allowed.check("case", expr, "").is_empty(),
            "accepted {expr} ({why})"
        );
    }
    assert!(
        !allowed.check("case", "sum(up)", "{{job}}").is_empty(),
        "accepted a legend label the query drops"
    );
    assert!(allowed
        .check("case", "sum by (job) (up)", "{{job}}")
        .is_empty());
}
