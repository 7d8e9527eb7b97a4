//! Static checks of the monitoring artefacts beside the code: dashboards, rules, unit tests
//! of the rules, the Alertmanager example, the monitoring stack and the runbooks, against
//! the real tools (promtool, amtool, python3) and the crate's metric catalogue.
//!
//! Run: `cargo test --test artefacts`. Needs promtool (Debian `prometheus`), amtool
//! (Debian `prometheus-alertmanager`) and python3 >= 3.11; a missing tool fails the test.

mod monitoring;

use std::collections::{BTreeMap, BTreeSet};
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

fn promtool() -> std::path::PathBuf {
    tool("promtool", "prometheus")
}

fn amtool() -> std::path::PathBuf {
    tool("amtool", "prometheus-alertmanager")
}

// ------------------------------------------------------------------ generator

#[test]
fn generated_files_match_the_generator() {
    let python = tool("python3", "python3");
    let out = Command::new(&python)
        .arg(repo().join("tools/generate.py"))
        .arg("--check")
        .output()
        .expect("run tools/generate.py");
    assert!(
        out.status.success(),
        "regenerating changes committed files; run `python3 tools/generate.py` and commit:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generator_is_deterministic_and_writes_every_generated_file() {
    let python = tool("python3", "python3");
    let dir = std::env::temp_dir().join(format!("tower-obs-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for _ in 0..2 {
        run_ok(
            Command::new(&python)
                .arg(repo().join("tools/generate.py"))
                .arg("--root")
                .arg(&dir),
        );
    }
    let mut generated = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                generated.push(p);
            }
        }
    }
    assert!(generated.len() >= 10, "generator wrote only {generated:?}");
    for p in &generated {
        let rel = p.strip_prefix(&dir).unwrap();
        assert!(
            read(p) == read(repo().join(rel)),
            "{} differs from the generator's output",
            rel.display()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Targets are meant to be changed in tools/slo.toml: other objectives and an integer latency
/// threshold (the `le="1"` / `le="1.0"` case) must still give rules promtool accepts and
/// generated unit tests that pass.
#[test]
fn generator_output_for_other_targets_passes_promtool() {
    let python = tool("python3", "python3");
    let dir = std::env::temp_dir().join(format!("tower-obs-targets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = read(repo().join("tools/slo.toml"));
    for (from, to) in [
        ("objective = 0.999", "objective = 0.995"),
        ("objective = 0.99\n", "objective = 0.95\n"),
        ("threshold_seconds = 0.5", "threshold_seconds = 1"),
    ] {
        assert!(config.contains(from), "tools/slo.toml has no `{from}`");
        config = config.replacen(from, to, 1);
    }
    let config_path = dir.join("slo.toml");
    std::fs::write(&config_path, config).unwrap();
    run_ok(
        Command::new(&python)
            .arg(repo().join("tools/generate.py"))
            .arg("--config")
            .arg(&config_path)
            .arg("--root")
            .arg(&dir),
    );
    let rules = read(dir.join("alerts/slo.rules.yml"));
    assert!(
        rules.contains(r#"le=~"1(\\.0*)?""#),
        "integer threshold not matched both ways"
    );
    assert!(rules.contains("(14.4 * 0.005)") && rules.contains("(14.4 * 0.05)"));
    run_ok(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(dir.join("alerts/slo.rules.yml"))
            .arg(dir.join("alerts/service.rules.yml")),
    );
    let out = run_ok(
        Command::new(promtool())
            .current_dir(dir.join("tests/rules"))
            .args(["test", "rules", "slo.test.yml"]),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------------ rules

/// `promtool check rules` with every lint on and fatal; Ok only when each file is a clean
/// SUCCESS and promtool says nothing else: no lint finding, no warning, nothing on stderr.
fn promtool_check_rules_clean(files: &[std::path::PathBuf]) -> Result<(), String> {
    let out = Command::new(promtool())
        .args(["check", "rules", "--lint=all", "--lint-fatal"])
        .args(files)
        .output()
        .expect("run promtool check rules");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("--- stdout\n{stdout}--- stderr\n{stderr}");
    if !out.status.success() {
        return Err(format!("promtool exited {}:\n{report}", out.status));
    }
    if !stderr.trim().is_empty() {
        return Err(format!("promtool wrote to stderr:\n{report}"));
    }
    let lower = stdout.to_lowercase();
    for word in ["warn", "lint", "failed", "error"] {
        if lower.contains(word) {
            return Err(format!("promtool reported {word:?}:\n{report}"));
        }
    }
    if stdout.matches("SUCCESS").count() != files.len() {
        return Err(format!("not one SUCCESS per file:\n{report}"));
    }
    Ok(())
}

#[test]
fn rules_pass_promtool_check() {
    if let Err(e) = promtool_check_rules_clean(&rule_files()) {
        panic!("{e}");
    }
}

/// The check above must fail on what promtool only reports as a lint finding (exit 0 without
/// --lint-fatal): a duplicate rule.
#[test]
fn promtool_check_rejects_lint_findings() {
    let path = std::env::temp_dir().join(format!("tower-obs-lint-{}.yml", std::process::id()));
    let rule = "      - record: job:dup:rate5m\n        expr: sum by (job) (rate(up[5m]))\n";
    std::fs::write(
        &path,
        format!("groups:\n  - name: dup\n    rules:\n{rule}{rule}"),
    )
    .unwrap();
    let verdict = promtool_check_rules_clean(std::slice::from_ref(&path));
    std::fs::remove_file(&path).unwrap();
    let err = verdict.expect_err("a duplicate rule passed the check");
    assert!(err.contains("duplicate"), "{err}");
}

#[test]
fn rule_unit_tests_pass_promtool() {
    let dir = repo().join("tests/rules");
    let files: Vec<_> = rule_unit_tests()
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    let out = run_ok(
        Command::new(promtool())
            .current_dir(&dir)
            .arg("test")
            .arg("rules")
            .args(&files),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("SUCCESS").count(), files.len(), "{text}");
}

/// The unit tests have teeth: each deliberate break of a rule must make `promtool test rules`
/// fail (mutation testing on a copy of alerts/ and tests/rules/; each mutation is applied to
/// every occurrence).
#[test]
fn rule_unit_tests_fail_on_broken_rules() {
    let mutations: &[(&str, &str, &str, &str)] = &[
        ("slo.rules.yml", ">= 1/60", ">= 0", "no low-traffic guard"),
        (
            "slo.rules.yml",
            "count{error_type!=\"\",error_type!=\"cancelled\"}[1h]",
            "count{error_type!=\"\"}[1h]",
            "client cancellations counted as errors",
        ),
        (
            "slo.rules.yml",
            "count{error_type!=\"cancelled\"}[6h]",
            "count[6h]",
            "cancellations in the denominator",
        ),
        (
            "slo.rules.yml",
            "severity: critical",
            "severity: warning",
            "wrong severity",
        ),
        (
            "service.rules.yml",
            "panics_total offset 15m) * 1",
            "panics_total offset 15m) * 0",
            "first panic of a process missed",
        ),
        (
            "service.rules.yml",
            "(up == 0)",
            "(up == 0) or (up == 0)",
            "foreign targets alerted on",
        ),
        (
            "service.rules.yml",
            "present_over_time(tower_observability_panics_total[1d])",
            "present_over_time(target_info[1d])",
            "services selected by target_info (OpenTelemetry SDKs alerted on)",
        ),
        (
            "service.rules.yml",
            "rate(rpc_server_call_duration_seconds_count{error_type!=\"cancelled\"}[10m])",
            "rate(rpc_server_call_duration_seconds_count[10m])",
            "cancelled gRPC calls in the denominator",
        ),
        (
            "slo.rules.yml",
            "unless on (job, instance)",
            "unless on (job)",
            "threshold bucket checked per job: one instance with it hides one without",
        ),
    ];
    for (i, (file, from, to, why)) in mutations.iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("tower-obs-mutant-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("alerts")).unwrap();
        std::fs::create_dir_all(dir.join("tests/rules")).unwrap();
        for f in rule_files() {
            let mut text = read(&f);
            if f.file_name().unwrap() == *file {
                assert!(
                    text.contains(from),
                    "mutation `{why}`: {file} has no {from:?}"
                );
                text = text.replace(from, to);
            }
            std::fs::write(dir.join("alerts").join(f.file_name().unwrap()), text).unwrap();
        }
        for f in rule_unit_tests() {
            std::fs::copy(&f, dir.join("tests/rules").join(f.file_name().unwrap())).unwrap();
        }
        // The mutant must still be valid rules, so a failure below is a failing unit test.
        run_ok(
            Command::new(promtool())
                .args(["check", "rules"])
                .arg(dir.join("alerts").join(file)),
        );
        // Only the unit tests of the mutated file: slo.rules.yml -> slo.test.yml.
        let tests = file.replace(".rules.yml", ".test.yml");
        let out = Command::new(promtool())
            .current_dir(dir.join("tests/rules"))
            .args(["test", "rules", &tests])
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            !out.status.success(),
            "the rule unit tests still pass with {why} ({file}: {from:?} -> {to:?})"
        );
    }
}

// ------------------------------------------------------------------ unit-test coverage

/// Why a unit-test case expects an alert to stay silent, read from the series it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    /// The alert fires, with labels and every annotation checked.
    Fires,
    /// None of the metrics the alert reads (recording rules followed) exist.
    MissingData,
    /// Its metrics exist for the alert's labels, but below the alert's volume guard.
    LowTraffic,
    /// All its metrics exist, at or above the guard, for longer than its `for`, in a test where
    /// no alert of its family (same `slo` label, else itself) fires: a healthy service.
    Healthy,
}

/// Alerts on a ratio that must stay silent below a minimum volume: the series whose rates
/// make up that volume, and whether cancelled requests are left out of it.
fn volume_guard_series(alert: &str) -> Option<(Vec<String>, bool)> {
    use tower_observability::metrics::names as n;
    let http = format!("{}_count", n::HTTP_SERVER_REQUEST_DURATION);
    let rpc = format!("{}_count", n::RPC_SERVER_CALL_DURATION);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    Some(match alert {
        a if a.starts_with("AvailabilityBudgetBurn") || a.starts_with("LatencyBudgetBurn") => {
            (vec![http], true)
        }
        "SpansDropped" => (s(&[n::SPANS_DROPPED, n::SPANS_EXPORTED]), false),
        "SentryEventsDropped" => (s(&[n::SENTRY_EVENTS_DROPPED, n::SENTRY_EVENTS_SENT]), false),
        "CorsRefusalsHigh" => (s(&[n::CORS_REFUSED]), false),
        "GrpcServerErrorRatioHigh" => (vec![rpc], true),
        _ => return None,
    })
}

/// An alert on a ratio of rates: it needs a volume guard.
fn is_ratio_alert(expr: &str) -> bool {
    expr.contains("ratio_rate") || (expr.contains("rate(") && expr.contains('/'))
}

/// The `>= X` minimum(s) in an alert's expression: (text as written, value). All must agree.
fn volume_guards(expr: &str) -> Result<(Vec<String>, f64), String> {
    let mut texts = Vec::new();
    for part in expr.split(">= ").skip(1) {
        let token: String = part
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ')')
            .collect();
        texts.push(token);
    }
    let values: Vec<f64> = texts
        .iter()
        .map(|t| monitoring::rule_tests::number(t))
        .collect::<Result<_, _>>()?;
    match values.first() {
        None => Err("no `>= minimum` volume guard".into()),
        Some(v) if values.iter().any(|x| x != v) => Err(format!("guards disagree: {texts:?}")),
        Some(v) => Ok((texts, *v)),
    }
}

struct AlertInfo {
    expr: String,
    for_seconds: f64,
    static_labels: BTreeSet<String>,
    family: String,
    /// Metrics the alert reads, recording rules followed to the raw series.
    deps: BTreeSet<String>,
    /// (series making up the volume, cancelled left out, minimum per second)
    guard: Option<(Vec<String>, bool, f64)>,
}

fn alert_infos() -> BTreeMap<String, AlertInfo> {
    let recorded: BTreeMap<String, String> = rules()
        .iter()
        .filter_map(|r| Some((r.str("record")?.to_string(), r.str("expr")?.to_string())))
        .collect();
    fn raw(expr: &str, recorded: &BTreeMap<String, String>, out: &mut BTreeSet<String>) {
        for m in monitoring::promql::names(expr).unwrap().metrics {
            match recorded.get(&m) {
                Some(inner) => raw(inner, recorded, out),
                None => {
                    out.insert(m);
                }
            }
        }
    }
    let own: BTreeSet<&str> = PROMETHEUS_SERIES.iter().map(|(n, _)| *n).collect();
    alerts()
        .iter()
        .map(|a| {
            let name = a.str("alert").unwrap().to_string();
            let expr = a.str("expr").unwrap().to_string();
            let labels = a.get("labels").cloned().unwrap_or(Yaml::Map(vec![]));
            let mut deps = BTreeSet::new();
            raw(&expr, &recorded, &mut deps);
            deps.retain(|m| !own.contains(m.as_str()));
            let guard = volume_guard_series(&name).map(|(series, skip_cancelled)| {
                let min = volume_guards(&expr).map(|(_, v)| v).unwrap_or(f64::NAN);
                (series, skip_cancelled, min)
            });
            let info = AlertInfo {
                for_seconds: a
                    .str("for")
                    .map(|f| monitoring::rule_tests::seconds(f).unwrap())
                    .unwrap_or(0.0),
                static_labels: labels.entries().iter().map(|(k, _)| k.clone()).collect(),
                family: labels.str("slo").unwrap_or(&name).to_string(),
                deps,
                guard,
                expr,
            };
            (name, info)
        })
        .collect()
}

/// Every unit-test case of every alert, classified; problems with the cases themselves.
struct Coverage {
    seen: BTreeMap<(String, Case), Vec<(std::path::PathBuf, String)>>,
    problems: Vec<String>,
}

fn unit_test_coverage(files: &[(std::path::PathBuf, Yaml)]) -> Coverage {
    use monitoring::rule_tests::{seconds, Series};
    let infos = alert_infos();
    let mut cov = Coverage {
        seen: BTreeMap::new(),
        problems: Vec::new(),
    };
    // The labels that tell one alert instance from another, from the tests that fire it.
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, doc) in files {
        for test in doc.seq("tests") {
            for case in test.seq("alert_rule_test") {
                let name = case.str("alertname").unwrap_or_default();
                let Some(info) = infos.get(name) else {
                    continue;
                };
                for a in case.seq("exp_alerts") {
                    let labels = a.get("exp_labels").map(|l| l.entries()).unwrap_or(&[]);
                    keys.entry(name.to_string()).or_default().extend(
                        labels
                            .iter()
                            .map(|(k, _)| k.clone())
                            .filter(|k| !info.static_labels.contains(k)),
                    );
                }
            }
        }
    }
    for (file, doc) in files {
        let default_step = doc.str("evaluation_interval").unwrap_or("1m");
        for test in doc.seq("tests") {
            let test_name = test.str("name").unwrap_or_default().to_string();
            let where_ = format!("{} / {test_name}", file.display());
            let step = seconds(test.str("interval").unwrap_or(default_step)).unwrap();
            let series: Vec<Series> = test
                .seq("input_series")
                .iter()
                .map(|s| {
                    Series::parse(s.str("series").unwrap_or(""), s.str("values").unwrap_or(""))
                        .unwrap_or_else(|e| panic!("{where_}: {e}"))
                })
                .collect();
            let firing_families: BTreeSet<String> = test
                .seq("alert_rule_test")
                .iter()
                .filter(|c| !c.seq("exp_alerts").is_empty())
                .filter_map(|c| infos.get(c.str("alertname")?))
                .map(|i| i.family.clone())
                .collect();
            for case in test.seq("alert_rule_test") {
                let name = case.str("alertname").unwrap_or_default().to_string();
                let Some(info) = infos.get(&name) else {
                    cov.problems
                        .push(format!("{where_}: tests {name:?}, which no rule defines"));
                    continue;
                };
                let at = seconds(case.str("eval_time").unwrap_or("0s")).unwrap();
                let exp = case.seq("exp_alerts");
                let observe = |c: Case, cov: &mut Coverage| {
                    cov.seen
                        .entry((name.clone(), c))
                        .or_default()
                        .push((file.clone(), test_name.clone()));
                };
                for a in exp {
                    let ann = a
                        .get("exp_annotations")
                        .map(|m| m.entries().len())
                        .unwrap_or(0);
                    if ann != 3 {
                        cov.problems.push(format!(
                            "{where_}: {name} fires without checking summary, description and runbook_url"
                        ));
                    }
                    if a.get("exp_labels")
                        .and_then(|l| l.str("severity"))
                        .is_none()
                    {
                        cov.problems.push(format!(
                            "{where_}: {name} fires without checking its severity"
                        ));
                    }
                }
                if !exp.is_empty() {
                    observe(Case::Fires, &mut cov);
                }
                let data: Vec<&Series> = series
                    .iter()
                    .filter(|s| info.deps.contains(&s.name))
                    .collect();
                if data.is_empty() {
                    if exp.is_empty() {
                        observe(Case::MissingData, &mut cov);
                    }
                    continue;
                }
                // Silent observations: every instance of the alert the input holds that the
                // case does not expect to fire, once its `for` has passed.
                if at < info.for_seconds + 60.0 {
                    continue;
                }
                let key_labels = keys
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| ["job".to_string()].into());
                let key_of = |labels: &BTreeMap<String, String>| -> Option<Vec<String>> {
                    key_labels.iter().map(|k| labels.get(k).cloned()).collect()
                };
                let present: BTreeSet<Vec<String>> =
                    data.iter().filter_map(|s| key_of(&s.labels)).collect();
                let fired: BTreeSet<Vec<String>> = exp
                    .iter()
                    .filter_map(|a| {
                        let l = a.get("exp_labels")?;
                        key_labels
                            .iter()
                            .map(|k| l.str(k).map(String::from))
                            .collect()
                    })
                    .collect();
                for key in present.difference(&fired) {
                    let enough = match &info.guard {
                        None => true,
                        Some((volume, skip_cancelled, min)) => {
                            let per_second: f64 = series
                                .iter()
                                .filter(|s| volume.contains(&s.name))
                                .filter(|s| key_of(&s.labels).as_ref() == Some(key))
                                .filter(|s| {
                                    !(*skip_cancelled
                                        && s.labels.get("error_type").map(String::as_str)
                                            == Some("cancelled"))
                                })
                                .map(|s| s.per_second(step))
                                .sum();
                            per_second >= *min
                        }
                    };
                    // Healthy needs all of the alert's data for this instance, not some.
                    let complete = info.deps.iter().all(|d| {
                        data.iter()
                            .any(|s| &s.name == d && key_of(&s.labels).as_ref() == Some(key))
                    });
                    if !enough {
                        observe(Case::LowTraffic, &mut cov);
                    } else if complete && !firing_families.contains(&info.family) {
                        observe(Case::Healthy, &mut cov);
                    }
                }
            }
        }
    }
    cov
}

/// What the coverage lacks: every alert fires in a test and stays silent on missing data and
/// on a healthy service; every alert with a volume guard also stays silent on low traffic.
fn coverage_gaps(cov: &Coverage) -> Vec<String> {
    let mut gaps = cov.problems.clone();
    for (name, info) in alert_infos() {
        let mut need = vec![
            (Case::Fires, "no test shows it firing"),
            (Case::MissingData, "no test shows it silent on missing data"),
            (
                Case::Healthy,
                "no test shows it silent on a healthy service (data past its `for`, nothing of its family firing)",
            ),
        ];
        if info.guard.is_some() {
            need.push((Case::LowTraffic, "no test shows it silent on low traffic"));
        }
        for (case, why) in need {
            if !cov.seen.contains_key(&(name.clone(), case)) {
                gaps.push(format!("{name}: {why}"));
            }
        }
    }
    gaps
}

fn unit_test_docs() -> Vec<(std::path::PathBuf, Yaml)> {
    rule_unit_tests()
        .into_iter()
        .map(|f| {
            let doc = parse_yaml_file(&f);
            (f, doc)
        })
        .collect()
}

/// promtool's unit tests are only as good as their coverage: every alert must be shown firing
/// (with labels and every annotation), and silent on missing data, on a healthy service and,
/// for alerts on a ratio, on low traffic. Cases are classified by the series they feed, not by
/// their names.
#[test]
fn every_alert_has_firing_and_silent_unit_tests() {
    let gaps = coverage_gaps(&unit_test_coverage(&unit_test_docs()));
    assert!(gaps.is_empty(), "{gaps:#?}");
}

/// The coverage check must be able to fail: without the low-traffic, healthy or missing-data
/// tests of the SLO alerts, or without the span alerts' low-volume test, it says so.
#[test]
fn unit_test_coverage_check_notices_missing_cases() {
    let docs = unit_test_docs();
    let without = |drop: &dyn Fn(&str) -> bool| -> Vec<String> {
        let docs: Vec<_> = docs
            .iter()
            .map(|(f, d)| {
                let mut d = d.clone();
                if let Yaml::Map(entries) = &mut d {
                    for (k, v) in entries.iter_mut() {
                        if let (true, Yaml::Seq(tests)) = (k == "tests", v) {
                            tests.retain(|t| !drop(t.str("name").unwrap_or_default()));
                        }
                    }
                }
                (f.clone(), d)
            })
            .collect();
        coverage_gaps(&unit_test_coverage(&docs))
    };
    for (drop, expected) in [
        (
            "availability: every request bad but below",
            "AvailabilityBudgetBurn1h5m: no test shows it silent on low traffic",
        ),
        (
            "availability: healthy traffic",
            "AvailabilityBudgetBurn1h5m: no test shows it silent on a healthy service",
        ),
        (
            "availability: no request metrics",
            "AvailabilityBudgetBurn1h5m: no test shows it silent on missing data",
        ),
        (
            "SpansDropped: one dropped span",
            "SpansDropped: no test shows it silent on low traffic",
        ),
        (
            "Healthy service",
            "ServiceInstanceDown: no test shows it silent on a healthy service",
        ),
    ] {
        let gaps = without(&|name: &str| name.starts_with(drop));
        assert!(
            gaps.iter().any(|g| g.starts_with(expected)),
            "dropping {drop:?} went unnoticed: {gaps:#?}"
        );
    }
}

/// Item of DESIGN: "SLI ratios guard low traffic". Every alert on a ratio of rates carries a
/// `>= minimum` guard and is listed with the series that make up its volume.
#[test]
fn ratio_alerts_have_a_volume_guard() {
    let mut problems = Vec::new();
    for a in alerts() {
        let name = a.str("alert").unwrap();
        let expr = a.str("expr").unwrap();
        if !is_ratio_alert(expr) {
            continue;
        }
        if volume_guard_series(name).is_none() {
            problems.push(format!(
                "{name}: a ratio alert this test does not know the volume of"
            ));
        }
        if let Err(e) = volume_guards(expr) {
            problems.push(format!("{name}: {e}"));
        }
    }
    for must in [
        "SpansDropped",
        "SentryEventsDropped",
        "GrpcServerErrorRatioHigh",
        "AvailabilityBudgetBurn1h5m",
    ] {
        let a = alerts()
            .into_iter()
            .find(|a| a.str("alert") == Some(must))
            .unwrap();
        assert!(
            is_ratio_alert(a.str("expr").unwrap()),
            "{must} not seen as a ratio"
        );
    }
    assert!(
        volume_guards("a / b > 0.01").is_err(),
        "an unguarded ratio passed"
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Each volume guard has teeth of its own: with only that alert's guard removed, the
/// low-traffic unit tests found for it must fail.
#[test]
fn each_volume_guard_keeps_its_low_traffic_tests_silent() {
    let docs = unit_test_docs();
    let cov = unit_test_coverage(&docs);
    let infos = alert_infos();
    let mut checked = 0;
    for (name, info) in &infos {
        if info.guard.is_none() {
            continue;
        }
        let (texts, _) = volume_guards(&info.expr).unwrap();
        let tests = cov
            .seen
            .get(&(name.clone(), Case::LowTraffic))
            .unwrap_or_else(|| panic!("{name}: no low-traffic test"));
        let dir =
            std::env::temp_dir().join(format!("tower-obs-guard-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("alerts")).unwrap();
        std::fs::create_dir_all(dir.join("tests/rules")).unwrap();
        for f in rule_files() {
            let mut json = parse_yaml_file(&f).to_json();
            for group in json["groups"].as_array_mut().unwrap() {
                for rule in group["rules"].as_array_mut().unwrap() {
                    if rule["alert"] == name.as_str() {
                        let mut expr = rule["expr"].as_str().unwrap().to_string();
                        for t in &texts {
                            expr = expr.replace(&format!(">= {t}"), ">= 0");
                        }
                        rule["expr"] = expr.into();
                    }
                }
            }
            std::fs::write(
                dir.join("alerts").join(f.file_name().unwrap()),
                json.to_string(),
            )
            .unwrap();
        }
        let mut files = Vec::new();
        for (file, doc) in &docs {
            let mut json = doc.to_json();
            let keep: BTreeSet<String> = tests
                .iter()
                .filter(|(f, _)| f == file)
                .map(|(_, t)| t.clone())
                .collect();
            if keep.is_empty() {
                continue;
            }
            json["tests"]
                .as_array_mut()
                .unwrap()
                .retain(|t| keep.contains(t["name"].as_str().unwrap()));
            let file_name = file.file_name().unwrap().to_owned();
            std::fs::write(dir.join("tests/rules").join(&file_name), json.to_string()).unwrap();
            files.push(file_name);
        }
        let out = Command::new(promtool())
            .current_dir(dir.join("tests/rules"))
            .args(["test", "rules"])
            .args(&files)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            !out.status.success(),
            "{name}: its low-traffic tests {tests:?} still pass without its volume guard"
        );
        // ... and fail on this alert's expectations, not on a broken copy.
        let report = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            report.contains(&format!("alertname: {name},")),
            "{name}: promtool failed for another reason:\n{report}"
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} guarded alerts");
}

#[test]
fn every_alert_is_named_labelled_annotated_and_has_a_runbook_section() {
    let runbook = read(repo().join("docs/runbooks.md"));
    let sections = runbook_sections(&runbook);
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for a in alerts() {
        let name = a.str("alert").unwrap().to_string();
        let p = |m: &str| format!("{name}: {m}");
        if !names.insert(name.clone()) {
            problems.push(p("defined twice"));
        }
        if !name.chars().next().unwrap().is_ascii_uppercase()
            || !name.chars().all(|c| c.is_ascii_alphanumeric())
        {
            problems.push(p("not CamelCase"));
        }
        let labels = a.get("labels").cloned().unwrap_or(Yaml::Map(vec![]));
        match labels.str("severity") {
            Some(s) if SEVERITIES.contains(&s) => {}
            other => problems.push(p(&format!(
                "severity {other:?} is not one of {SEVERITIES:?}"
            ))),
        }
        let ann = a.get("annotations").cloned().unwrap_or(Yaml::Map(vec![]));
        for key in ["summary", "description", "runbook_url"] {
            if ann.str(key).map(str::trim).unwrap_or("").is_empty() {
                problems.push(p(&format!("no {key}")));
            }
        }
        let description = ann.str("description").unwrap_or("");
        if !description.contains("{{ $value") && !description.contains("{{ $labels") {
            problems.push(p("description shows no value or label"));
        }
        let anchor = name.to_lowercase();
        let url = ann.str("runbook_url").unwrap_or("");
        if !url.ends_with(&format!("docs/runbooks.md#{anchor}")) {
            problems.push(p(&format!(
                "runbook_url {url} does not point at docs/runbooks.md#{anchor}"
            )));
        }
        match sections.get(&anchor) {
            None => problems.push(p("no `## {name}` section in docs/runbooks.md")),
            Some(body) => {
                for part in [
                    "**Meaning.**",
                    "**Confirm.**",
                    "**What to do.**",
                    "**Escalate.**",
                ] {
                    if !body.contains(part) {
                        problems.push(p(&format!("runbook section lacks {part}")));
                    }
                }
            }
        }
        if a.get("keep_firing_for").is_some() {
            problems.push(p(
                "keep_firing_for needs Prometheus 2.42+; DESIGN keeps to 2.42",
            ));
        }
    }
    for anchor in sections.keys() {
        if !names.iter().any(|n| n.to_lowercase() == *anchor) {
            problems.push(format!("docs/runbooks.md section #{anchor} has no alert"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `## Title` sections of a markdown file by GitHub anchor.
fn runbook_sections(md: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in md.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            if let Some((k, v)) = current.take() {
                out.insert(k, v);
            }
            let anchor: String = title
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            current = Some((anchor, String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((k, v)) = current {
        out.insert(k, v);
    }
    out
}

#[test]
fn recording_rules_are_level_metric_operation_over_every_sli_window() {
    let recorded = recorded_names();
    for name in &recorded {
        let parts: Vec<_> = name.split(':').collect();
        assert!(
            parts.len() == 3
                && parts.iter().all(|p| !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')),
            "{name} is not level:metric:operation"
        );
    }
    for sli in [
        "job:http_server_requests:rate",
        "job:http_server_request_errors:rate",
        "job:http_server_request_errors:ratio_rate",
        "job:http_server_requests_fast:rate",
        "job:http_server_requests_slow:ratio_rate",
    ] {
        for w in SLI_WINDOWS {
            assert!(
                recorded.contains(&format!("{sli}{w}")),
                "no recording rule {sli}{w}"
            );
        }
    }
}

/// The burn-rate alerts follow DESIGN.md: windows, factors, `for`, severity, traffic guard,
/// and a latency threshold `le` matcher that survives Prometheus 3's normalisation.
#[test]
fn burn_rate_alerts_follow_the_design() {
    let alerts = alerts();
    for slo in ["Availability", "Latency"] {
        for (long, short, factor, for_, severity) in BURN_RATES {
            let name = format!("{slo}BudgetBurn{long}{short}");
            let a = alerts
                .iter()
                .find(|a| a.str("alert") == Some(&name))
                .unwrap_or_else(|| panic!("no alert {name}"));
            let expr = a.str("expr").unwrap();
            assert_eq!(a.str("for"), Some(*for_), "{name}: for");
            assert_eq!(
                a.get("labels").and_then(|l| l.str("severity")),
                Some(*severity),
                "{name}: severity"
            );
            assert!(
                expr.contains(&format!("({factor} * ")),
                "{name}: factor {factor} not in {expr}"
            );
            for w in [long, short] {
                assert!(
                    expr.contains(&format!("ratio_rate{w} > ")),
                    "{name}: window {w} not compared in {expr}"
                );
                assert!(
                    expr.contains(&format!("job:http_server_requests:rate{w} >= ")),
                    "{name}: no low-traffic guard on {w}"
                );
            }
        }
    }
    let fast = rules()
        .into_iter()
        .find(|r| r.str("record") == Some("job:http_server_requests_fast:rate5m"))
        .expect("fast-requests recording rule");
    let expr = fast.str("expr").unwrap();
    let le = expr
        .split("le=~\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("an le=~ matcher");
    let re = le.replace("\\\\", "\\");
    // Both spellings of the boundary must match: Prometheus 2 (`1`) and 3 (`1.0`).
    let boundary = re
        .trim_end_matches("0*")
        .trim_end_matches("(\\.0*)?")
        .replace("\\.", ".");
    let normalised = if boundary.contains('.') {
        boundary.clone()
    } else {
        format!("{boundary}.0")
    };
    for spelling in [&boundary, &normalised] {
        assert!(
            regex_lite_match(&re, spelling),
            "le matcher {re:?} misses {spelling:?}"
        );
    }
    assert!(
        !expr.contains("le=\""),
        "an exact le= match breaks under Prometheus 3: {expr}"
    );
}

/// The two regex shapes the generator writes: `0\.50*` and `1(\.0*)?`, fully anchored.
fn regex_lite_match(re: &str, s: &str) -> bool {
    if let Some(int) = re.strip_suffix("(\\.0*)?") {
        let rest = s.strip_prefix(int).unwrap_or("x");
        return rest.is_empty() || (rest.starts_with('.') && rest[1..].chars().all(|c| c == '0'));
    }
    if let Some(dec) = re.strip_suffix("0*") {
        let dec = dec.replace("\\.", ".");
        return s
            .strip_prefix(&dec)
            .is_some_and(|r| r.chars().all(|c| c == '0'));
    }
    false
}

// ------------------------------------------------------------------ one source of truth

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

/// The generator checks the latency threshold against its copy of the crate's default
/// buckets: that copy, and the list in tools/slo.toml's comment, must be the crate's.
#[test]
fn generator_buckets_are_the_crates_default_duration_buckets() {
    let crate_buckets = tower_observability::DEFAULT_DURATION_BUCKETS.to_vec();
    let python: Vec<f64> = python_value("rules", "rules.DEFAULT_BUCKETS")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(
        python, crate_buckets,
        "tools/rules.py DEFAULT_BUCKETS differs from DEFAULT_DURATION_BUCKETS (src/metrics/mod.rs)"
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

// ------------------------------------------------------------------ names

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
                && ![
                    "sum",
                    "min",
                    "max",
                    "avg",
                    "group",
                    "stddev",
                    "stdvar",
                    "count",
                    "count_values",
                    "bottomk",
                    "topk",
                    "quantile",
                ]
                .contains(&f.as_str())
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
            "http_server_request_duration_seconds",
            "histogram base name is not a series",
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

// ------------------------------------------------------------------ dashboards

#[test]
fn dashboards_are_importable_and_provisionable() {
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let dashboards = dashboards();
    assert!(
        dashboards.len() >= 6,
        "expected the five dashboards of issue 6 and a gRPC one"
    );
    for (path, d) in &dashboards {
        let f = path.file_name().unwrap().to_string_lossy().to_string();
        let p = |m: String| format!("{f}: {m}");
        let uid = d["uid"].as_str().unwrap_or_default();
        if uid.is_empty() || uid.len() > 40 || !uids.insert(uid.to_string()) {
            problems.push(p(format!("uid {uid:?} missing, too long or not unique")));
        }
        if !titles.insert(d["title"].as_str().unwrap_or_default().to_string()) {
            problems.push(p("title not unique".into()));
        }
        if d["id"].is_number() {
            problems.push(p(
                "a fixed numeric id breaks import into another Grafana".into()
            ));
        }
        let inputs = d["__inputs"].as_array().cloned().unwrap_or_default();
        if !inputs
            .iter()
            .any(|i| i["type"] == "datasource" && i["pluginId"] == "prometheus")
        {
            problems.push(p("no Prometheus datasource in __inputs".into()));
        }
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
        match var("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => problems.push(p(
                "no `datasource` variable of type datasource for prometheus".into(),
            )),
        }
        for name in ["job", "instance"] {
            match var(name) {
                Some(v)
                    if v["multi"] == true && v["includeAll"] == true && v["allValue"] == ".+" =>
                {
                    if v["datasource"]["uid"] != "${datasource}" {
                        problems.push(p(format!("variable {name} does not use ${{datasource}}")));
                    }
                }
                _ => problems.push(p(format!(
                    "variable {name} is not multi-select with allValue .+"
                ))),
            }
        }
        problems.extend(datasource_input_problems(d).into_iter().map(&p));
        let mut ids = BTreeSet::new();
        for panel in panels(d) {
            let title = panel["title"].as_str().unwrap_or_default();
            let pp = |m: &str| p(format!("panel {title:?}: {m}"));
            if !ids.insert(panel["id"].as_i64().unwrap_or(-1)) {
                problems.push(pp("id missing or repeated"));
            }
            if panel["datasource"]["uid"] != "${datasource}"
                || panel["datasource"]["type"] != "prometheus"
            {
                problems.push(pp("datasource is not ${datasource}"));
            }
            let unit = panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default();
            if unit.is_empty() {
                problems.push(pp("no unit"));
            }
            let desc = panel["description"].as_str().unwrap_or_default();
            if desc.trim().is_empty() || desc.contains('\n') || desc.len() > 200 {
                problems.push(pp("description missing or not one line"));
            }
            let gp = &panel["gridPos"];
            if !(gp["w"].is_number()
                && gp["h"].is_number()
                && gp["x"].is_number()
                && gp["y"].is_number())
                || gp["x"].as_i64().unwrap_or(0) + gp["w"].as_i64().unwrap_or(0) > 24
            {
                problems.push(pp("gridPos missing or wider than the grid"));
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(pp("no queries"));
            }
            let mut refs = BTreeSet::new();
            for t in targets {
                if t["datasource"]["uid"] != "${datasource}" {
                    problems.push(pp("a target does not use ${datasource}"));
                }
                if !refs.insert(t["refId"].as_str().unwrap_or_default().to_string()) {
                    problems.push(pp("refId missing or repeated"));
                }
                let expr = t["expr"].as_str().unwrap_or_default();
                problems.extend(range_problems(expr).into_iter().map(|m| pp(&m)));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every string in a JSON document, with its path.
fn json_strings<'a>(v: &'a serde_json::Value, path: &str, out: &mut Vec<(String, &'a str)>) {
    match v {
        serde_json::Value::String(s) => out.push((path.to_string(), s)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                json_strings(item, &format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                json_strings(item, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// Grafana's import: each `${NAME}` of an `__inputs` entry is replaced, in every string of the
/// dashboard, by what the import form picked (a data source's uid), and `__inputs` is dropped
/// (grafana/grafana pkg/services/dashboardimport/utils/dash_template_evaluator.go).
fn simulate_import(d: &serde_json::Value, picks: &BTreeMap<String, String>) -> serde_json::Value {
    fn eval(v: &serde_json::Value, vars: &BTreeMap<String, String>) -> serde_json::Value {
        match v {
            serde_json::Value::String(s) => {
                let mut s = s.clone();
                for (k, val) in vars {
                    s = s.replace(k, val);
                }
                s.into()
            }
            serde_json::Value::Array(items) => items.iter().map(|i| eval(i, vars)).collect(),
            serde_json::Value::Object(map) => map
                .iter()
                .filter(|(k, _)| *k != "__inputs")
                .map(|(k, i)| (k.clone(), eval(i, vars)))
                .collect(),
            other => other.clone(),
        }
    }
    let vars = picks
        .iter()
        .map(|(k, v)| (format!("${{{k}}}"), v.clone()))
        .collect();
    eval(d, &vars)
}

/// How Grafana settles a single-value `datasource` variable among the data sources of its
/// plugin type (uid, name): the current value by uid (Grafana 11's scenes), else the current
/// text by name, else the first data source.
fn resolve_datasource_variable(var: &serde_json::Value, sources: &[(&str, &str)]) -> String {
    let value = var["current"]["value"].as_str().unwrap_or_default();
    let text = var["current"]["text"].as_str().unwrap_or_default();
    sources
        .iter()
        .find(|(uid, _)| *uid == value)
        .or_else(|| sources.iter().find(|(_, name)| *name == text))
        .or(sources.first())
        .map(|(uid, _)| uid.to_string())
        .unwrap_or_default()
}

/// The `__inputs` data source must reach the panels on import (through the `datasource`
/// variable), and file provisioning, which leaves placeholders as they are, must still work:
/// the placeholder sits only in that variable's current value, with `default` as its text.
fn datasource_input_problems(d: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    let inputs: Vec<String> = d["__inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "datasource")
        .filter_map(|i| i["name"].as_str().map(String::from))
        .collect();
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(at) = vars.iter().position(|v| v["name"] == "datasource") else {
        return vec!["no `datasource` variable".into()];
    };
    let allowed = format!(".templating.list[{at}].current.value");
    let mut strings = Vec::new();
    json_strings(d, "", &mut strings);
    for (path, text) in &strings {
        if text.contains("${DS_") && *path != allowed {
            problems.push(format!(
                "__inputs placeholder {text:?} at {path}, which file provisioning leaves unresolved"
            ));
        }
    }
    for name in &inputs {
        let placeholder = format!("${{{name}}}");
        if !strings.iter().any(|(_, t)| t.contains(&placeholder)) {
            problems.push(format!(
                "__inputs asks for {name} but nothing uses it: the data source picked on import is ignored"
            ));
        }
    }
    let picked = "picked-on-import";
    let sources = [
        ("first-prometheus", "A Prometheus"),
        (picked, "Z Prometheus"),
    ];
    let picks = inputs
        .iter()
        .map(|n| (n.clone(), picked.to_string()))
        .collect();
    let imported = simulate_import(d, &picks);
    let var = &imported["templating"]["list"][at];
    if resolve_datasource_variable(var, &sources) != picked {
        problems.push(format!(
            "after import the datasource variable ({}) does not select the data source picked in the import form",
            var["current"]
        ));
    }
    if serde_json::to_string(&imported).unwrap().contains("${DS_") {
        problems.push("an __inputs placeholder survives the import".into());
    }
    // Provisioned as is: no data source has the placeholder's uid, so Grafana 10's variables
    // fall back by text, and `default` names the default data source.
    if vars[at]["current"]["text"] != "default" {
        problems.push(format!(
            "datasource variable's current text is {}, not `default`: provisioned copies would not start on the default data source",
            vars[at]["current"]["text"]
        ));
    }
    problems
}

#[test]
fn datasource_checks_reject_an_ignored_or_leaking_import_input() {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(p, _)| p.ends_with("overview.json"))
        .unwrap();
    assert!(datasource_input_problems(&d).is_empty());
    let at = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .position(|v| v["name"] == "datasource")
        .unwrap();
    // The dashboards as they were: __inputs asked, nothing used it.
    let mut ignored = d.clone();
    ignored["templating"]["list"][at]["current"] = serde_json::json!({});
    let problems = datasource_input_problems(&ignored);
    assert!(
        problems.iter().any(|p| p.contains("nothing uses it"))
            && problems.iter().any(|p| p.contains("does not select")),
        "{problems:#?}"
    );
    // A panel naming the placeholder breaks provisioning.
    let mut leaking = d.clone();
    leaking["panels"][0]["datasource"]["uid"] = "${DS_PROMETHEUS}".into();
    let problems = datasource_input_problems(&leaking);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("provisioning leaves unresolved")),
        "{problems:#?}"
    );
}

/// rate(), irate() and increase() in dashboards must use `$__rate_interval`.
fn range_problems(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["rate(", "irate(", "increase("] {
        let mut rest = expr;
        while let Some(at) = rest.find(f) {
            let before = rest[..at].chars().last();
            rest = &rest[at + f.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // e.g. `irate(` inside `rate(` matching, or a longer name
            }
            let window = rest
                .find('[')
                .map(|s| &rest[s..])
                .and_then(|s| s.find(']').map(|e| &s[..=e]));
            if window != Some("[$__rate_interval]") {
                out.push(format!("{f}..) with {window:?}, not [$__rate_interval]"));
            }
        }
    }
    out
}

/// Every dashboard query, with its variables substituted, is PromQL that Prometheus 2.42
/// parses: written into a throwaway rule file and run through `promtool check rules`.
#[test]
fn every_dashboard_query_parses_with_promtool() {
    let mut groups = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut n = 0;
    for q in dashboard_queries() {
        let expr = substitute(&q.expr, GRAFANA_VARS);
        groups.push_str(&format!(
            "      - record: dashboard_query_{n}\n        expr: |\n"
        ));
        for line in expr.lines() {
            groups.push_str(&format!("          {line}\n"));
        }
        n += 1;
    }
    let path = std::env::temp_dir().join(format!(
        "tower-obs-dashboard-queries-{}.yml",
        std::process::id()
    ));
    std::fs::write(&path, groups).unwrap();
    let out = run_ok(
        Command::new(promtool())
            .arg("check")
            .arg("rules")
            .arg(&path),
    );
    std::fs::remove_file(&path).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{n} rules found")));
}

/// A panel the issue requires: on the dashboard with `uid`, a panel (of `kind`, if given)
/// with, for each entry of `queries`, a query holding all of that entry's fragments (a
/// fragment starting with `^` must start the query), and every value of `thresholds` among
/// its threshold steps.
struct RequiredPanel {
    uid: &'static str,
    what: &'static str,
    kind: Option<&'static str>,
    queries: Vec<Vec<String>>,
    thresholds: Vec<f64>,
}

fn required_panels() -> Vec<RequiredPanel> {
    use tower_observability::metrics::names as n;
    let q = |frags: &[&str]| frags.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    let need = |uid, what, kind, queries: Vec<Vec<String>>| RequiredPanel {
        uid,
        what,
        kind,
        queries,
        thresholds: vec![],
    };
    let count = format!("{}_count", n::HTTP_SERVER_REQUEST_DURATION);
    let bucket = format!("{}_bucket", n::HTTP_SERVER_REQUEST_DURATION);
    let rpc = format!("{}_count", n::RPC_SERVER_CALL_DURATION);
    let server_error = r#"error_type!="",error_type!="cancelled""#;
    let one_route = r#"http_route="$route""#;
    let budget =
        1.0 - monitoring::rule_tests::number(&slo_toml("availability", "objective")).unwrap();
    let period = format!("[{}d]", slo_toml("availability", "period_days"));
    let factors: Vec<f64> = BURN_RATES.iter().map(|b| b.2.parse().unwrap()).collect();
    let windows: BTreeSet<&str> = BURN_RATES.iter().flat_map(|b| [b.0, b.1]).collect();
    let burn = |ratio: &str| -> Vec<Vec<String>> {
        windows
            .iter()
            .map(|w| vec![format!("{ratio}{w}{{")])
            .collect()
    };
    let burn_alerts: Vec<String> = ["Availability", "Latency"]
        .iter()
        .flat_map(|s| {
            BURN_RATES
                .iter()
                .map(move |b| format!("{s}BudgetBurn{}{}", b.0, b.1))
        })
        .collect();
    let mut alerts_query = vec!["^ALERTS{".to_string()];
    alerts_query.extend(burn_alerts);
    let (o, r, s, sat, t, g) = (
        "tower-obs-overview",
        "tower-obs-route",
        "tower-obs-slo",
        "tower-obs-saturation",
        "tower-obs-telemetry",
        "tower-obs-grpc",
    );
    vec![
        // 1. Service overview (RED)
        need(
            o,
            "request rate by status class",
            Some("timeseries"),
            vec![q(&[
                "label_replace(",
                &count,
                "http_response_status_code",
                "sum by (status_class)",
            ])],
        ),
        RequiredPanel {
            thresholds: vec![budget],
            ..need(
                o,
                "error ratio against the SLO",
                Some("timeseries"),
                vec![q(&[&count, server_error, "\n/\n"])],
            )
        },
        need(
            o,
            "p50/p90/p99 latency",
            None,
            vec![
                q(&["^histogram_quantile(0.5,", &bucket]),
                q(&["^histogram_quantile(0.9,", &bucket]),
                q(&["^histogram_quantile(0.99,", &bucket]),
            ],
        ),
        need(
            o,
            "active requests",
            None,
            vec![q(&[n::HTTP_SERVER_ACTIVE_REQUESTS])],
        ),
        need(
            o,
            "top routes by rate",
            None,
            vec![q(&["^topk(", "sum by (http_route) (rate(", &count])],
        ),
        need(
            o,
            "top routes by errors",
            None,
            vec![q(&[
                "^topk(",
                "sum by (http_route) (rate(",
                &count,
                server_error,
            ])],
        ),
        need(
            o,
            "top routes by p99",
            None,
            vec![q(&[
                "^topk(",
                "histogram_quantile(0.99,",
                "by (http_route, le)",
                &bucket,
            ])],
        ),
        need(
            o,
            "status-code breakdown",
            None,
            vec![q(&["by (http_response_status_code)", &count])],
        ),
        need(
            o,
            "version and instance from target_info",
            Some("table"),
            vec![q(&[n::TARGET_INFO, "instance", n::LABEL_SERVICE_VERSION])],
        ),
        // 2. Route detail
        need(
            r,
            "latency heatmap from the buckets",
            Some("heatmap"),
            vec![q(&["sum by (le)", &bucket, one_route])],
        ),
        need(
            r,
            "latency quantiles",
            None,
            vec![
                q(&["^histogram_quantile(0.5,", &bucket, one_route]),
                q(&["^histogram_quantile(0.99,", &bucket, one_route]),
            ],
        ),
        need(
            r,
            "rate by status",
            None,
            vec![q(&["by (http_response_status_code)", &count, one_route])],
        ),
        need(
            r,
            "request sizes",
            None,
            vec![q(&[n::HTTP_SERVER_REQUEST_BODY_SIZE, one_route])],
        ),
        need(
            r,
            "response sizes",
            None,
            vec![q(&[n::HTTP_SERVER_RESPONSE_BODY_SIZE, one_route])],
        ),
        need(
            r,
            "error types",
            None,
            vec![q(&["by (error_type)", &count, one_route])],
        ),
        // 3. SLO and error budget
        need(
            s,
            "availability SLI",
            None,
            vec![q(&["^1 - job:http_server_request_errors:ratio_rate"])],
        ),
        need(
            s,
            "latency SLI",
            None,
            vec![q(&["^1 - job:http_server_requests_slow:ratio_rate"])],
        ),
        need(
            s,
            "availability budget remaining over the period",
            None,
            vec![q(&[
                "^1 - (",
                "job:http_server_request_errors:rate5m",
                &period,
                ") / ",
            ])],
        ),
        need(
            s,
            "latency budget remaining over the period",
            None,
            vec![q(&[
                "^1 - (1 - ",
                "job:http_server_requests_fast:rate5m",
                &period,
                ") / ",
            ])],
        ),
        RequiredPanel {
            thresholds: factors.clone(),
            ..need(
                s,
                "availability burn rate for every alert window",
                Some("timeseries"),
                burn("job:http_server_request_errors:ratio_rate"),
            )
        },
        RequiredPanel {
            thresholds: factors.clone(),
            ..need(
                s,
                "latency burn rate for every alert window",
                Some("timeseries"),
                burn("job:http_server_requests_slow:ratio_rate"),
            )
        },
        need(s, "burn-rate alerts firing", None, vec![alerts_query]),
        // 4. Saturation
        need(
            sat,
            "CPU",
            None,
            vec![q(&[&format!("rate({}", n::PROCESS_CPU_SECONDS)])],
        ),
        need(
            sat,
            "resident memory",
            None,
            vec![q(&[&format!("({}{{", n::PROCESS_RESIDENT_MEMORY)])],
        ),
        need(
            sat,
            "open fds against the limit",
            None,
            vec![q(&[n::PROCESS_OPEN_FDS]), q(&[n::PROCESS_MAX_FDS])],
        ),
        need(
            sat,
            "in-flight requests",
            None,
            vec![q(&[n::HTTP_SERVER_ACTIVE_REQUESTS])],
        ),
        need(
            sat,
            "restarts",
            None,
            vec![q(&[&format!("changes({}", n::PROCESS_START_TIME)])],
        ),
        // 5. Telemetry health
        need(
            t,
            "spans exported and dropped",
            None,
            vec![q(&[n::SPANS_EXPORTED]), q(&[n::SPANS_DROPPED])],
        ),
        need(
            t,
            "Sentry events dropped",
            None,
            vec![q(&[n::SENTRY_EVENTS_DROPPED])],
        ),
        need(
            t,
            "routes folded into overflow",
            None,
            vec![q(&[n::ROUTES_OVERFLOWED])],
        ),
        need(t, "CORS refusals", None, vec![q(&[n::CORS_REFUSED])]),
        need(
            t,
            "panics",
            None,
            vec![q(&[&format!("rate({}", n::PANICS)])],
        ),
        // gRPC
        need(
            g,
            "gRPC calls by status code",
            None,
            vec![q(&["by (rpc_grpc_status_code)", &rpc])],
        ),
        need(
            g,
            "gRPC server faults by code",
            None,
            vec![q(&["by (error_type)", &rpc, server_error])],
        ),
        need(
            g,
            "gRPC error ratio by method",
            None,
            vec![q(&["by (rpc_method)", &rpc, server_error, "/"])],
        ),
    ]
}

/// The panels of `required` that no panel of `dashboards` provides.
fn missing_panels(
    dashboards: &[(std::path::PathBuf, serde_json::Value)],
    required: &[RequiredPanel],
) -> Vec<String> {
    let satisfies = |panel: &serde_json::Value, need: &RequiredPanel| -> bool {
        if need.kind.is_some_and(|k| panel["type"] != k) {
            return false;
        }
        let exprs: Vec<&str> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect();
        let query_ok = |frags: &Vec<String>| {
            exprs.iter().any(|e| {
                frags.iter().all(|f| match f.strip_prefix('^') {
                    Some(start) => e.starts_with(start),
                    None => e.contains(f.as_str()),
                })
            })
        };
        let steps: Vec<f64> = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["value"].as_f64())
            .collect();
        need.queries.iter().all(query_ok)
            && need
                .thresholds
                .iter()
                .all(|t| steps.iter().any(|s| (s - t).abs() < 1e-9))
    };
    required
        .iter()
        .filter(|need| {
            !dashboards
                .iter()
                .filter(|(_, d)| d["uid"] == need.uid)
                .any(|(_, d)| panels(d).iter().any(|p| satisfies(p, need)))
        })
        .map(|need| format!("{}: no panel shows {}", need.uid, need.what))
        .collect()
}

/// Issue 6 lists what each dashboard must show; each required panel is found by the
/// metric and expression it queries, not by its title.
#[test]
fn dashboards_have_the_panels_the_issue_requires() {
    let missing = missing_panels(&dashboards(), &required_panels());
    assert!(missing.is_empty(), "{missing:#?}");
    let route = dashboards()
        .into_iter()
        .find(|(_, d)| d["uid"] == "tower-obs-route")
        .unwrap()
        .1;
    let vars = route["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["name"] == "route" && v["multi"] == false),
        "route detail needs a single-value `route` variable"
    );
}

/// The check must fail when a panel goes: drop each required panel in turn.
#[test]
fn required_panel_check_notices_a_missing_panel() {
    let required = required_panels();
    let boards = dashboards();
    let mut seen = 0;
    for (i, (_, d)) in boards.iter().enumerate() {
        let count = d["panels"].as_array().unwrap().len();
        for p in 0..count {
            let mut mutant = boards.clone();
            mutant[i].1["panels"].as_array_mut().unwrap().remove(p);
            // Only panels some requirement rests on alone count; the rest may go.
            if !missing_panels(&mutant, &required).is_empty() {
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 25,
        "only {seen} panels are required by the check; it would miss removed panels"
    );
    // And one that everybody relies on: the overview's latency percentiles.
    let mut mutant = boards.clone();
    let o = mutant
        .iter()
        .position(|(_, d)| d["uid"] == "tower-obs-overview")
        .unwrap();
    mutant[o].1["panels"].as_array_mut().unwrap().retain(|p| {
        !p["title"]
            .as_str()
            .unwrap_or_default()
            .contains("percentiles")
    });
    let missing = missing_panels(&mutant, &required);
    assert!(
        missing.iter().any(|m| m.contains("p50/p90/p99")),
        "{missing:#?}"
    );
}

#[test]
fn dashboard_checks_reject_a_broken_dashboard() {
    assert!(!range_problems("rate(x[5m])").is_empty());
    assert!(!range_problems("sum(increase(x[1h]))").is_empty());
    assert!(range_problems("sum(rate(x{a=\"b\"}[$__rate_interval]))").is_empty());
}

// ------------------------------------------------------------------ Alertmanager

#[test]
fn alertmanager_example_passes_amtool() {
    let config = repo().join("alerts/alertmanager.example.yml");
    let out = run_ok(Command::new(amtool()).arg("check-config").arg(&config));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SUCCESS") && text.contains("1 inhibit rules"),
        "{text}"
    );
}

/// `amtool config routes test`: does an alert with `labels` reach `receiver` under `config`?
fn amtool_routes_to(config: &std::path::Path, labels: &[&str], receiver: &str) -> bool {
    Command::new(amtool())
        .args(["config", "routes", "test"])
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--verify.receivers={receiver}"))
        .args(labels)
        .output()
        .expect("run amtool")
        .status
        .success()
}

const SEVERITY_RECEIVERS: &[(&str, &str)] = &[
    ("critical", "pager"),
    ("warning", "ticket"),
    ("info", "low-noise"),
];

#[test]
fn alertmanager_routes_each_severity_to_its_receiver() {
    let config = repo().join("alerts/alertmanager.example.yml");
    for (severity, receiver) in SEVERITY_RECEIVERS {
        let severity = format!("severity={severity}");
        assert!(
            amtool_routes_to(
                &config,
                &[&severity, "alertname=ServiceDown", "job=checkout"],
                receiver
            ),
            "{severity} does not reach {receiver}"
        );
    }
    // The root receiver catches what no severity route claims, and is none of the three: so
    // each severity reaching its receiver proves its own route, not the fallback.
    let am = parse_yaml_file(&config);
    let root = am.get("route").and_then(|r| r.str("receiver")).unwrap();
    assert!(
        SEVERITY_RECEIVERS.iter().all(|(_, r)| *r != root),
        "the root receiver {root} is also a severity's receiver"
    );
    for labels in [
        &["alertname=NoSeverity", "job=checkout"][..],
        &["severity=page", "job=checkout"],
    ] {
        assert!(
            amtool_routes_to(&config, labels, root),
            "{labels:?} does not reach {root}"
        );
    }
    assert!(
        !amtool_routes_to(&config, &["severity=warning"], "pager"),
        "amtool accepted warning -> pager"
    );
}

/// The Alertmanager example without the child route that matches `severity="<severity>"`
/// (the route's lines removed from the text).
fn without_severity_route(text: &str, severity: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let matcher = lines
        .iter()
        .position(|l| l.trim() == format!("- severity=\"{severity}\""))
        .unwrap_or_else(|| panic!("no route matches severity {severity}"));
    let start = (0..matcher)
        .rev()
        .find(|&i| lines[i].trim_start().starts_with("- receiver:"))
        .unwrap();
    let indent = lines[start].len() - lines[start].trim_start().len();
    let end = (start + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent
        })
        .unwrap_or(lines.len());
    let mut out: Vec<&str> = lines[..start].to_vec();
    out.extend(&lines[end..]);
    out.join("\n") + "\n"
}

/// With a severity's route deleted, the routing test above must fail for it.
#[test]
fn alertmanager_routes_test_fails_without_a_severity_route() {
    let text = read(repo().join("alerts/alertmanager.example.yml"));
    for (severity, receiver) in SEVERITY_RECEIVERS {
        let mutant = without_severity_route(&text, severity);
        let matcher = format!("severity=\"{severity}\"");
        assert_eq!(
            mutant.matches(&matcher).count() + 1,
            text.matches(&matcher).count()
        );
        let path = std::env::temp_dir().join(format!(
            "tower-obs-am-{severity}-{}.yml",
            std::process::id()
        ));
        std::fs::write(&path, mutant).unwrap();
        let valid = Command::new(amtool())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        let still = amtool_routes_to(&path, &[&format!("severity={severity}")], receiver);
        std::fs::remove_file(&path).unwrap();
        assert!(valid.status.success(), "the mutant is not a valid config");
        assert!(
            !still,
            "{severity} still reaches {receiver} without its route"
        );
    }
}

#[test]
fn alertmanager_inhibits_warnings_of_the_same_job_while_critical_fires() {
    let am = parse_yaml_file(&repo().join("alerts/alertmanager.example.yml"));
    let rules = am.seq("inhibit_rules");
    let found = rules.iter().any(|r| {
        let s: Vec<_> = r
            .seq("source_matchers")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let t: Vec<_> = r
            .seq("target_matchers")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let eq: Vec<_> = r.seq("equal").iter().filter_map(Yaml::as_str).collect();
        s == ["severity=\"critical\""] && t == ["severity=\"warning\""] && eq == ["job"]
    });
    assert!(
        found,
        "no inhibit rule critical -> warning equal [job]: {rules:?}"
    );
}

// ------------------------------------------------------------------ stack and manifests

#[test]
fn stack_prometheus_config_passes_promtool_with_the_rules() {
    let stack = repo().join("examples/monitoring/prometheus/prometheus.yml");
    run_ok(
        Command::new(promtool())
            .arg("check")
            .arg("config")
            .arg(&stack),
    );
    // Again with the rule glob pointing where compose mounts alerts/ from, so the rules it
    // loads are checked as part of the config.
    let text = read(&stack);
    assert!(text.contains("/etc/prometheus/rules/*.rules.yml"));
    let local = text.replace(
        "/etc/prometheus/rules/",
        &format!("{}/", repo().join("alerts").display()),
    );
    let path =
        std::env::temp_dir().join(format!("tower-obs-prometheus-{}.yml", std::process::id()));
    std::fs::write(&path, local).unwrap();
    let out = run_ok(
        Command::new(promtool())
            .arg("check")
            .arg("config")
            .arg(&path),
    );
    std::fs::remove_file(&path).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for f in rule_files() {
        assert!(
            text.contains(&*f.file_name().unwrap().to_string_lossy()),
            "rule file {} not checked:\n{text}",
            f.display()
        );
    }
}

#[test]
fn prometheus_rule_manifest_holds_the_same_rules_as_alerts() {
    let manifest =
        parse_yaml_file(&repo().join("examples/monitoring/kubernetes/prometheusrule.yaml"));
    assert_eq!(manifest.str("apiVersion"), Some("monitoring.coreos.com/v1"));
    assert_eq!(manifest.str("kind"), Some("PrometheusRule"));
    let in_manifest = manifest
        .get("spec")
        .map(|s| s.seq("groups").to_vec())
        .unwrap_or_default();
    let in_alerts = rule_groups();
    assert_eq!(in_manifest.len(), in_alerts.len(), "group count differs");
    for (m, a) in in_manifest.iter().zip(&in_alerts) {
        assert_eq!(
            m,
            a,
            "group {:?} differs between the manifest and alerts/",
            a.str("name")
        );
    }
}

#[test]
fn stack_files_exist_and_agree() {
    let dir = repo().join("examples/monitoring");
    let compose = parse_yaml_file(&dir.join("docker-compose.yml"));
    let services = compose.get("services").expect("services");
    for s in [
        "prometheus",
        "alertmanager",
        "grafana",
        "otel-collector",
        "jaeger",
    ] {
        let svc = services.get(s).unwrap_or_else(|| panic!("no {s} service"));
        assert!(
            svc.str("image")
                .is_some_and(|i| i.contains(':') && !i.ends_with(":latest")),
            "{s}: pin the image"
        );
        for v in svc.seq("volumes").iter().filter_map(Yaml::as_str) {
            let source = v.split(':').next().unwrap();
            assert!(
                dir.join(source).exists(),
                "{s}: volume source {source} does not exist"
            );
        }
        for p in svc.seq("ports").iter().filter_map(Yaml::as_str) {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{s}: port {p} is not bound to loopback"
            );
        }
    }
    // Prometheus loads the repository's rules, Grafana the repository's dashboards.
    let volumes = |s: &str| -> Vec<String> {
        services
            .get(s)
            .unwrap()
            .seq("volumes")
            .iter()
            .filter_map(Yaml::as_str)
            .map(String::from)
            .collect()
    };
    assert!(volumes("prometheus")
        .iter()
        .any(|v| v.starts_with("../../alerts:/etc/prometheus/rules")));
    let dash_mount = volumes("grafana")
        .into_iter()
        .find(|v| v.starts_with("../../dashboards:"))
        .expect("grafana mounts ../../dashboards");
    let target = dash_mount.split(':').nth(1).unwrap();
    let provider =
        parse_yaml_file(&dir.join("grafana/provisioning/dashboards/tower-observability.yml"));
    let path = provider.seq("providers")[0]
        .get("options")
        .and_then(|o| o.str("path"));
    assert_eq!(
        path,
        Some(target),
        "the dashboard provider reads where compose mounts the dashboards"
    );
    let ds = parse_yaml_file(&dir.join("grafana/provisioning/datasources/datasources.yml"));
    let prom = ds
        .seq("datasources")
        .iter()
        .find(|d| d.str("type") == Some("prometheus"))
        .expect("a prometheus datasource");
    assert_eq!(
        prom.str("isDefault"),
        Some("true"),
        "dashboards start on the default data source"
    );
    // The collector's pipeline names only components it defines.
    let otel = parse_yaml_file(&dir.join("otel-collector/config.yaml"));
    for (_, pipeline) in otel
        .get("service")
        .and_then(|s| s.get("pipelines"))
        .expect("pipelines")
        .entries()
    {
        for kind in ["receivers", "processors", "exporters"] {
            for c in pipeline.seq(kind).iter().filter_map(Yaml::as_str) {
                assert!(
                    otel.get(kind).and_then(|k| k.get(c)).is_some(),
                    "pipeline uses undefined {kind} {c}"
                );
            }
        }
    }
    let k8s = yaml::parse_all(&read(dir.join("kubernetes/servicemonitor.yaml"))).unwrap();
    let sm = k8s
        .iter()
        .find(|d| d.str("kind") == Some("ServiceMonitor"))
        .expect("a ServiceMonitor");
    let svc = k8s
        .iter()
        .find(|d| d.str("kind") == Some("Service"))
        .expect("a Service");
    let port = sm.get("spec").unwrap().seq("endpoints")[0]
        .str("port")
        .unwrap();
    assert!(
        svc.get("spec")
            .unwrap()
            .seq("ports")
            .iter()
            .any(|p| p.str("name") == Some(port)),
        "endpoint port {port} not on the Service"
    );
    assert_eq!(
        sm.get("spec").unwrap().seq("endpoints")[0].str("path"),
        Some("/metrics")
    );
}

#[test]
fn yaml_reader_reads_what_the_generator_writes() {
    let doc = yaml::parse(
        "# c\na:\n  - b: \"x\\\"y\"\n    c: |\n      one\n        two\n  - 'it''s'\nd: []\ne: [x, y]\nf: plain # note\n",
    )
    .unwrap();
    let a = doc.seq("a");
    assert_eq!(a[0].str("b"), Some("x\"y"));
    assert_eq!(a[0].str("c"), Some("one\n  two\n"));
    assert_eq!(a[1].as_str(), Some("it's"));
    assert_eq!(doc.seq("d").len(), 0);
    assert_eq!(doc.seq("e").len(), 2);
    assert_eq!(doc.str("f"), Some("plain"));
    assert!(yaml::parse("a: &anchor x\n").is_err());
}
