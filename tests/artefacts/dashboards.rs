//! Dashboards: importable, provisionable, every query valid, every required panel present.

use super::*;

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
    let scratch = Scratch::new("dashboard-queries");
    let path = scratch.write("queries.yml", groups);
    let out = run_ok(Command::new(promtool()).args(["check", "rules"]).arg(&path));
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
    let factors: Vec<f64> = BURN_RATES.iter().map(|b| b[2].parse().unwrap()).collect();
    let windows: BTreeSet<&str> = BURN_RATES
        .iter()
        .flat_map(|b| [b[0].as_str(), b[1].as_str()])
        .collect();
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
                .map(move |b| format!("{s}BudgetBurn{}{}", b[0], b[1]))
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
        // Issue 19: the native-histogram quantile beside the classic one.
        need(
            r,
            "p99 from the native histogram",
            Some("timeseries"),
            vec![q(&[
                &format!(
                    "^histogram_quantile(0.99, sum(rate({}{{",
                    n::HTTP_SERVER_REQUEST_DURATION
                ),
                one_route,
            ])],
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

/// Issue 19: every latency time series (a quantile of a duration histogram) shows exemplars
/// and links each to its trace through the dashboard's `tracing` data-source variable.
#[test]
fn latency_panels_show_exemplars_linked_to_the_tracing_data_source() {
    use tower_observability::metrics::names as n;
    let mut latency_panels = 0;
    let mut problems = Vec::new();
    for (path, d) in dashboards() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let has_tracing = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| {
                v["name"] == "tracing"
                    && v["type"] == "datasource"
                    && ["tempo", "jaeger"].contains(&v["query"].as_str().unwrap_or_default())
            });
        for panel in panels(&d) {
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            let latency = panel["type"] == "timeseries"
                && targets.iter().any(|t| {
                    let e = t["expr"].as_str().unwrap_or_default();
                    e.starts_with("histogram_quantile(")
                        && (e.contains(n::HTTP_SERVER_REQUEST_DURATION)
                            || e.contains(n::RPC_SERVER_CALL_DURATION))
                });
            if !latency {
                continue;
            }
            latency_panels += 1;
            let title = format!("{name} / {}", panel["title"]);
            if !targets.iter().all(|t| t["exemplar"] == true) {
                problems.push(format!("{title}: a query does not fetch exemplars"));
            }
            let links = panel["fieldConfig"]["defaults"]["links"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let to_trace = links.iter().any(|l| {
                let url = l["url"].as_str().unwrap_or_default();
                url.starts_with("/explore?")
                    && url.contains("${tracing}")
                    && url.contains("${__data.fields.trace_id}")
            });
            if !to_trace {
                problems.push(format!("{title}: no link from an exemplar to its trace"));
            }
            if !has_tracing {
                problems.push(format!(
                    "{title}: the dashboard has no `tracing` data-source variable"
                ));
            }
        }
        // The tracing backend is optional: never an import input.
        let inputs = d["__inputs"].as_array().cloned().unwrap_or_default();
        if inputs.iter().any(|i| i["pluginId"] != "prometheus") {
            problems.push(format!("{name}: an import input other than Prometheus"));
        }
    }
    assert!(latency_panels >= 4, "only {latency_panels} latency panels");
    assert!(problems.is_empty(), "{problems:#?}");
}
