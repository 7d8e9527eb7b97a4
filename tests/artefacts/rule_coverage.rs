//! Every alert has unit tests that fire it and keep it silent (missing data, low traffic,
//! healthy).

use super::*;

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
        "RateLimitRefusalsHigh" => (s(&[n::RATE_LIMITED]), false),
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
