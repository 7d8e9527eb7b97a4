//! Static checks of the monitoring artefacts beside the code: dashboards, rules, unit tests
//! of the rules, the Alertmanager example, the monitoring stack and the runbooks, against
//! the real tools (promtool, amtool, python3) and the crate's metric catalogue.
//!
//! Run: `cargo test --test artefacts`. Needs promtool (Debian `prometheus`), amtool
//! (Debian `prometheus-alertmanager`) and python3 >= 3.11; a missing tool fails the test.

#[path = "../monitoring/mod.rs"]
mod monitoring;

mod alertmanager;
mod dashboards;
mod generator;
mod names;
mod one_source;
mod rule_coverage;
mod rules;
mod stack;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use monitoring::yaml::{self, Yaml};
use monitoring::*;
use tower_observability::metrics::names::{MetricKind, CATALOGUE};

const SEVERITIES: &[&str] = &["critical", "warning", "info"];
/// The SLI windows the generator records: every window of a burn-rate alert, as
/// tools/contract.py derives them from tools/slo.toml.
static SLI_WINDOWS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let windows = generator_value("contract.sli_windows(cfg)");
    let windows = windows.as_array().expect("a list of windows");
    windows
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
});
/// (long, short, factor, for, severity) of each `[[burn_rate]]` of tools/slo.toml: the
/// one source the generator and these tests read, so editing it and regenerating keeps
/// the tests green.
static BURN_RATES: std::sync::LazyLock<Vec<[String; 5]>> = std::sync::LazyLock::new(|| {
    let rates = generator_value("cfg['burn_rate']");
    let field = |rate: &serde_json::Value, key: &str| match &rate[key] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rates = rates.as_array().expect("a list of burn rates");
    rates
        .iter()
        .map(|r| ["long", "short", "factor", "for", "severity"].map(|k| field(r, k)))
        .collect()
});

/// `expr` evaluated by Python with the generator's modules importable and `cfg` holding
/// tools/slo.toml as the generator reads it, as JSON.
fn generator_value(expr: &str) -> serde_json::Value {
    let program = format!(
        "import json, sys, tomllib; sys.path.insert(0, sys.argv[1]); import contract, rules; \
         cfg = tomllib.load(open(sys.argv[2], 'rb')); print(json.dumps({expr}))"
    );
    let out = run_ok(
        Command::new(tool("python3", "python3"))
            .arg("-c")
            .arg(program)
            .arg(repo().join("tools"))
            .arg(repo().join("tools/slo.toml")),
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}
/// Series Prometheus itself writes, with their labels: scrape health and alert state.
const PROMETHEUS_SERIES: &[(&str, &[&str])] = &[
    ("up", &[]),
    ("scrape_duration_seconds", &[]),
    ("scrape_samples_scraped", &[]),
    ("scrape_samples_post_metric_relabeling", &[]),
    ("scrape_series_added", &[]),
    (
        "ALERTS",
        &["alertname", "alertstate", "severity", "slo", "rpc_method"],
    ),
    (
        "ALERTS_FOR_STATE",
        &["alertname", "severity", "slo", "rpc_method"],
    ),
];
/// Grafana variables, with values that make a query valid PromQL.
const GRAFANA_VARS: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "1h"),
    ("datasource", "prometheus"),
    ("job", ".+"),
    ("instance", ".+"),
    ("route", "/users/{id}"),
    ("method", ".+"),
];
