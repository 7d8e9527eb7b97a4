//! Shared by tests/artefacts/ and tests/prometheus_e2e.rs: where the monitoring artefacts
//! live, how to read them, and how to find the real tools (promtool, amtool, prometheus).
#![allow(dead_code)]

pub mod promql;
pub mod rule_tests;
#[path = "../support/tools.rs"]
mod tools;
pub mod yaml;

pub use tools::tool;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use yaml::Yaml;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// promtool, from the Debian package `prometheus`.
pub fn promtool() -> PathBuf {
    tool("promtool", "prometheus")
}

/// amtool, from the Debian package `prometheus-alertmanager`.
pub fn amtool() -> PathBuf {
    tool("amtool", "prometheus-alertmanager")
}

/// `promtool test rules` on these unit-test files of the folder `dir` (a test's
/// `rule_files` are relative to it), to run with [`run_ok`] or [`run_failing`].
pub fn promtool_test_rules(dir: &Path, files: &[impl AsRef<OsStr>]) -> Command {
    let mut cmd = Command::new(promtool());
    cmd.current_dir(dir).args(["test", "rules"]).args(files);
    cmd
}

/// A folder of this process under the system's temp dir, for files a tool reads from disk
/// (a config, rules and their unit tests, mutants of them); removed when dropped, a failing
/// test included.
pub struct Scratch(PathBuf);

impl Scratch {
    /// An empty folder named for `name` and this process.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tower-obs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Scratch(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `relative` in the folder, making its folders; returns its path.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command and returns its output, panicking with the command's stderr on failure.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail (a check that catches a mutant) and returns what it printed,
/// stdout then stderr; `None` when it succeeded.
pub fn run_failing(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (!out.status.success()).then(|| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    })
}

pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn files_in(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// The Prometheus rule files: alerts/*.rules.yml (alertmanager.example.yml is not one).
pub fn rule_files() -> Vec<PathBuf> {
    let files = files_in("alerts", ".rules.yml");
    assert!(!files.is_empty(), "no alerts/*.rules.yml");
    files
}

pub fn rule_unit_tests() -> Vec<PathBuf> {
    let files = files_in("tests/rules", ".test.yml");
    assert!(!files.is_empty(), "no tests/rules/*.test.yml");
    files
}

pub fn dashboard_files() -> Vec<PathBuf> {
    let files = files_in("dashboards", ".json");
    assert!(!files.is_empty(), "no dashboards/*.json");
    files
}

pub fn parse_yaml_file(path: &Path) -> Yaml {
    yaml::parse(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every rule group of alerts/*.rules.yml, in file order.
pub fn rule_groups() -> Vec<Yaml> {
    rule_files()
        .iter()
        .flat_map(|f| parse_yaml_file(f).seq("groups").to_vec())
        .collect()
}

/// Every rule (recording and alerting) of alerts/*.rules.yml.
pub fn rules() -> Vec<Yaml> {
    rule_groups()
        .iter()
        .flat_map(|g| g.seq("rules").to_vec())
        .collect()
}

pub fn alerts() -> Vec<Yaml> {
    rules()
        .into_iter()
        .filter(|r| r.get("alert").is_some())
        .collect()
}

pub fn recorded_names() -> Vec<String> {
    rules()
        .iter()
        .filter_map(|r| r.str("record").map(str::to_string))
        .collect()
}

pub fn dashboards() -> Vec<(PathBuf, Value)> {
    dashboard_files()
        .into_iter()
        .map(|p| {
            let v: Value = serde_json::from_str(&read(&p))
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", p.display()));
            (p, v)
        })
        .collect()
}

/// Panels with queries, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// One query a dashboard runs: a panel target, an annotation or a template variable.
#[derive(Debug, Clone)]
pub struct DashboardQuery {
    pub dashboard: String,
    pub uid: String,
    pub panel: String,
    pub expr: String,
    pub legend: String,
    pub instant: bool,
    /// A `label_values(selector, label)` variable query rather than PromQL.
    pub label_values: Option<(String, String)>,
}

pub fn dashboard_queries() -> Vec<DashboardQuery> {
    let mut out = Vec::new();
    for (path, d) in dashboards() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let uid = d["uid"].as_str().unwrap_or_default().to_string();
        let q = |panel: &str, expr: &str, legend: &str, instant: bool| DashboardQuery {
            dashboard: name.clone(),
            uid: uid.clone(),
            panel: panel.to_string(),
            expr: expr.to_string(),
            legend: legend.to_string(),
            instant,
            label_values: None,
        };
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(q(
                    p["title"].as_str().unwrap_or_default(),
                    t["expr"].as_str().unwrap_or_default(),
                    t["legendFormat"].as_str().unwrap_or_default(),
                    t["instant"] == true,
                ));
            }
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(expr) = a["expr"].as_str() {
                out.push(q(&format!("annotation {}", a["name"]), expr, "", false));
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            let query = v["query"].as_str().unwrap_or_default();
            let mut entry = q(&format!("variable {}", v["name"]), query, "", true);
            if let Some(inner) = query
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
            {
                let (selector, label) = inner
                    .rsplit_once(',')
                    .expect("label_values(selector, label)");
                entry.expr = selector.trim().to_string();
                entry.label_values = Some((selector.trim().to_string(), label.trim().to_string()));
            }
            out.push(entry);
        }
    }
    out
}

/// A value of tools/slo.toml: `key = value` in `[section]` (the first table of that name).
pub fn slo_toml(section: &str, key: &str) -> String {
    let text = read(repo().join("tools/slo.toml"));
    let mut current = String::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if let Some(name) = line.strip_prefix('[') {
            current = name.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if current == section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    return v.trim().trim_matches('"').to_string();
                }
            }
        }
    }
    panic!("tools/slo.toml has no {section}.{key}")
}

/// Replaces Grafana's variables in a query with the given values.
pub fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut out = expr.to_string();
    // Longest names first so `$__rate_interval` is not eaten by a `$__rate` prefix.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in vars {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

/// The `host:port` right after `marker` in `line` (an example's "service on http://..." line).
pub fn addr_after(line: &str, marker: &str) -> std::net::SocketAddr {
    let rest = line
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker:?} in {line:?}"));
    rest.split([',', ' ', '/'])
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("no address after {marker:?} in {line:?}: {e}"))
}
