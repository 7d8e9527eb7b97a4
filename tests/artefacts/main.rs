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
const SLI_WINDOWS: &[&str] = &["5m", "30m", "1h", "2h", "6h", "1d", "3d"];
/// (long, short, factor, for, severity) from DESIGN.md.
const BURN_RATES: &[(&str, &str, &str, &str, &str)] = &[
    ("1h", "5m", "14.4", "2m", "critical"),
    ("6h", "30m", "6", "15m", "critical"),
    ("1d", "2h", "3", "1h", "warning"),
    ("3d", "6h", "1", "3h", "warning"),
];
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
