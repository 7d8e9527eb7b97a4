//! End to end: a real Prometheus (Debian package `prometheus`) on 127.0.0.1 loads the rules
//! in alerts/, scrapes the quickstart example under mixed traffic, and then:
//! - every rule is healthy and every recording rule produces series;
//! - every query of every dashboard panel, annotation and variable, with its variables
//!   substituted as Grafana would, runs without error, and returns data whenever the
//!   metrics it reads exist (gRPC, span and Sentry panels may be empty: the quickstart
//!   serves no gRPC and exports no traces);
//! - with the error rate forced high, AvailabilityBudgetBurn1h5m (the real rule, not a
//!   shortened copy: pending is reached as soon as both windows exceed 14.4x) becomes
//!   pending or firing, and HandlerPanics fires after the /panic route;
//! - a second quickstart whose duration buckets lack the latency SLO threshold has no latency
//!   SLI, and LatencySLIBucketMissing says so for it (and only for it);
//! - both examples expose the crate's marker series, so the dashboards' `job` variable lists
//!   them.
//!
//! Every wait is bounded; the quickstart and Prometheus are killed on every path (Drop).

mod monitoring;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use monitoring::*;
use serde_json::Value;

const JOB: &str = "quickstart";
/// The quickstart again, with duration buckets that lack the latency SLO threshold.
const COARSE_JOB: &str = "quickstart-coarse";
/// The gRPC example's job: its calls give the gRPC dashboard series.
const GRPC_JOB: &str = "greeter";
/// Grafana's `$__rate_interval` for a 1s scrape interval and a short time range.
const RATE_INTERVAL: &str = "15s";

/// A child process killed and reaped when the guard drops, panics included.
struct Running {
    name: &'static str,
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("stopped {}", self.name);
    }
}

/// A temporary directory removed when the guard drops.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 exchange (no chunking, the server closes): (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {target} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    addr: SocketAddr,
}

impl Prometheus {
    /// GET an API path; Err carries Prometheus' error for a failed query.
    fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let (status, body) =
            http(self.addr, "GET", path_and_query, b"").map_err(|e| e.to_string())?;
        let v: Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("HTTP {status}: {} {}", v["errorType"], v["error"]));
        }
        Ok(v["data"].clone())
    }

    fn instant(&self, expr: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/query?query={}", urlencode(expr)))
    }

    fn range(&self, expr: &str, seconds: u64) -> Result<Value, String> {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.api(&format!(
            "/api/v1/query_range?query={}&start={}&end={end}&step=2",
            urlencode(expr),
            end - seconds
        ))
    }

    /// Series (or the scalar) an instant or range result holds.
    fn count(data: &Value) -> usize {
        match data["resultType"].as_str() {
            Some("scalar") | Some("string") => 1,
            _ => data["result"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter(|s| {
                            s.get("value").is_some()
                                || s["values"].as_array().is_some_and(|v| !v.is_empty())
                        })
                        .count()
                })
                .unwrap_or(0),
        }
    }

    fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut ok: impl FnMut(&Self) -> Result<bool, String>,
    ) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match ok(self) {
                Ok(true) => return,
                Ok(false) => last = "not yet".into(),
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(500));
        }
        panic!("timed out after {timeout:?} waiting for {what}: {last}");
    }
}

/// Builds an example (or takes TOWER_OBS_<NAME>_BIN) and returns its executable.
fn example_binary(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(format!("TOWER_OBS_{}_BIN", name.to_uppercase())) {
        return PathBuf::from(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The gRPC example needs the examples' `grpc` feature (tonic).
    let features: &[&str] = if name == "grpc" {
        &["--features", "grpc"]
    } else {
        &[]
    };
    let out = Command::new(cargo)
        .current_dir(repo())
        .args(["build", "--example", name, "--message-format=json"])
        .args(features)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(out.status.success(), "cargo build --example {name} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .unwrap_or_else(|| panic!("cargo reported no {name} executable"))
}

/// Starts an example on ephemeral ports and waits (bounded) for the stdout line holding
/// `marker` (in any case); returns the guard and that line, lowercased.
fn start_example(
    name: &'static str,
    env: &[(&str, &str)],
    marker: &'static str,
) -> (Running, String) {
    let mut cmd = Command::new(example_binary(name));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("SENTRY_DSN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start the {name} example: {e}"));
    let stdout = child.stdout.take().unwrap();
    let guard = Running { name, child };
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Case-insensitive ("metrics on" / "Metrics on"); the line goes on lowercased,
            // which leaves the addresses in it as they are.
            let line = line.to_lowercase();
            if line.contains(&marker.to_lowercase()) {
                let _ = tx.send(line);
            }
            // keep draining so the child never blocks on a full pipe
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!("the {name} example printed no line with {marker:?} within 60s")
        });
    (guard, line)
}

/// The quickstart: (guard, app address, admin address). `duration_buckets`, if given,
/// replaces the crate's default buckets (OBSERVABILITY_DURATION_BUCKETS).
fn start_quickstart(duration_buckets: Option<&str>) -> (Running, SocketAddr, SocketAddr) {
    let mut env = vec![
        ("QUICKSTART_ADDR", "127.0.0.1:0"),
        ("QUICKSTART_ADMIN_ADDR", "127.0.0.1:0"),
        ("OTEL_SERVICE_NAME", "quickstart"),
    ];
    if let Some(b) = duration_buckets {
        env.push(("OBSERVABILITY_DURATION_BUCKETS", b));
    }
    let (guard, line) = start_example("quickstart", &env, "admin on http://");
    // "quickstart: service on http://127.0.0.1:41919, admin on http://127.0.0.1:46623"
    let app = addr_after(&line, "service on http://");
    let admin = addr_after(&line, "admin on http://");
    (guard, app, admin)
}

/// The gRPC example: a tonic server that calls itself once per status it demonstrates,
/// so the gRPC dashboard has series. Returns (guard, admin address).
fn start_grpc_example() -> (Running, SocketAddr) {
    let (guard, line) = start_example(
        "grpc",
        &[
            ("GRPC_ADDR", "127.0.0.1:0"),
            ("GRPC_ADMIN_ADDR", "127.0.0.1:0"),
        ],
        "metrics on http://",
    );
    // "gRPC server on http://127.0.0.1:50051; metrics on http://127.0.0.1:9465/metrics"
    (guard, addr_after(&line, "metrics on http://"))
}

fn start_prometheus(dir: &Path, targets: &[(&str, SocketAddr)]) -> (Running, Prometheus) {
    let prometheus = tool("prometheus", "prometheus");
    let rule_files: Vec<String> = rule_files()
        .iter()
        .map(|p| format!("  - {}\n", p.display()))
        .collect();
    let scrape_configs: Vec<String> = targets
        .iter()
        .map(|(job, addr)| {
            format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n")
        })
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n{}scrape_configs:\n{}",
        rule_files.concat(),
        scrape_configs.concat()
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let port = free_port();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let guard = Running {
        name: "prometheus",
        child,
    };
    let prom = Prometheus {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if matches!(http(prom.addr, "GET", "/-/ready", b""), Ok((200, _))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready within 30s:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(200));
    }
    (guard, prom)
}

/// Requests from `paths` round-robin on `threads` threads until `duration` has passed.
fn drive(
    app: SocketAddr,
    paths: &'static [(&'static str, &'static str)],
    threads: usize,
    duration: Duration,
) -> usize {
    let sent = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + duration;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let sent = sent.clone();
            thread::spawn(move || {
                let mut i = t;
                while Instant::now() < deadline {
                    let (method, path) = paths[i % paths.len()];
                    if path == "CANCEL" {
                        // A client that gives up: the server records 499 / cancelled.
                        if let Ok(mut s) = TcpStream::connect(app) {
                            let _ = write!(s, "GET /slow?ms=2000 HTTP/1.0\r\nHost: {app}\r\n\r\n");
                            thread::sleep(Duration::from_millis(50));
                        }
                    } else {
                        let body: &[u8] = if method == "POST" {
                            b"hello from the e2e test"
                        } else {
                            b""
                        };
                        if http(app, method, path, body).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    sent.load(Ordering::Relaxed)
}

const MIXED: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/users/42"),
    ("GET", "/users/0"),
    ("GET", "/api/v1/items/7"),
    ("POST", "/echo"),
    ("GET", "/fail"),
    ("GET", "/"),
    ("GET", "/no/such/path"),
    ("GET", "/slow?ms=600"),
    ("GET", "/users/7"),
    ("GET", "/stream"),
    ("GET", "/panic"),
    ("GET", "CANCEL"),
];
const ERRORS: &[(&str, &str)] = &[
    ("GET", "/fail"),
    ("GET", "/fail"),
    ("GET", "/fail"),
    ("GET", "/"),
];

#[test]
fn dashboards_and_rules_work_against_a_real_prometheus_scraping_the_quickstart() {
    let dir = TempDir(std::env::temp_dir().join(format!("tower-obs-e2e-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (_quickstart, app, admin) = start_quickstart(None);
    let (_grpc, grpc_admin) = start_grpc_example();
    // The default buckets without the latency SLO threshold.
    let threshold: f64 = slo_toml("latency", "threshold_seconds").parse().unwrap();
    let coarse_buckets: Vec<String> = tower_observability::DEFAULT_DURATION_BUCKETS
        .iter()
        .filter(|b| **b != threshold)
        .map(|b| b.to_string())
        .collect();
    assert_eq!(
        coarse_buckets.len() + 1,
        tower_observability::DEFAULT_DURATION_BUCKETS.len(),
        "the latency threshold {threshold} is not a default bucket"
    );
    let (_coarse, coarse_app, coarse_admin) = start_quickstart(Some(&coarse_buckets.join(",")));
    let (_prometheus, prom) = start_prometheus(
        &dir.0,
        &[
            (JOB, admin),
            (GRPC_JOB, grpc_admin),
            (COARSE_JOB, coarse_admin),
        ],
    );

    prom.wait_until(
        "the three examples to be scraped",
        Duration::from_secs(30),
        |p| Ok(Prometheus::count(&p.instant("up == 1")?) == 3),
    );
    // Services are told apart from other targets by a series only the crate emits, there from
    // start-up before any request: the dashboards' job variable and the service alerts use it.
    let marker = tower_observability::metrics::names::PANICS;
    prom.wait_until(
        "every example to expose the crate's marker series",
        Duration::from_secs(30),
        |p| {
            let jobs: BTreeSet<String> = p.instant(&format!("count by (job) ({marker})"))?
                ["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["metric"]["job"].as_str().map(String::from))
                .collect();
            Ok(jobs
                == [JOB, GRPC_JOB, COARSE_JOB]
                    .iter()
                    .map(|j| j.to_string())
                    .collect())
        },
    );
    let coarse_sent = drive(
        coarse_app,
        &[("GET", "/"), ("GET", "/users/7")],
        1,
        Duration::from_secs(3),
    );
    assert!(
        coarse_sent > 5,
        "only {coarse_sent} requests reached the coarse quickstart"
    );

    // Mixed traffic: successes, 404s, an unmatched path, slow and streamed responses, 500s,
    // panics and a client that gives up.
    let sent = drive(app, MIXED, 4, Duration::from_secs(20));
    assert!(sent > 50, "only {sent} requests succeeded");

    // Every rule loads and evaluates healthy.
    let expected_rules = rules().len();
    prom.wait_until(
        "every rule to evaluate healthy",
        Duration::from_secs(30),
        |p| {
            let data = p.api("/api/v1/rules")?;
            let mut seen = 0;
            for g in data["groups"].as_array().into_iter().flatten() {
                for r in g["rules"].as_array().into_iter().flatten() {
                    seen += 1;
                    if r["health"] != "ok" {
                        return Err(format!(
                            "rule {} health {} {}",
                            r["name"], r["health"], r["lastError"]
                        ));
                    }
                }
            }
            if seen != expected_rules {
                return Err(format!("{seen} rules loaded, alerts/ has {expected_rules}"));
            }
            Ok(true)
        },
    );

    // Every recording rule produces a series for the job.
    let recorded = recorded_names();
    prom.wait_until(
        "every recording rule to produce series",
        Duration::from_secs(30),
        |p| {
            for name in &recorded {
                if Prometheus::count(&p.instant(&format!("{name}{{job=\"{JOB}\"}}"))?) == 0 {
                    return Err(format!("{name} has no series"));
                }
            }
            Ok(true)
        },
    );

    // The coarse quickstart serves requests but its latency SLI cannot be computed: the check
    // notices, for it alone. (Pending: the rule's `for` is longer than this test.)
    prom.wait_until(
        "LatencySLIBucketMissing to be pending for the coarse quickstart",
        Duration::from_secs(30),
        |p| {
            let data = p.api("/api/v1/alerts")?;
            let jobs: BTreeSet<String> = data["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["labels"]["alertname"] == "LatencySLIBucketMissing")
                .filter_map(|a| a["labels"]["job"].as_str().map(String::from))
                .collect();
            if jobs.contains(JOB) || jobs.contains(GRPC_JOB) {
                return Err(format!("fires for a service with the bucket: {jobs:?}"));
            }
            Ok(jobs.contains(COARSE_JOB))
        },
    );
    assert_eq!(
        Prometheus::count(
            &prom
                .instant(&format!(
                    "job:http_server_requests_fast:rate5m{{job=\"{COARSE_JOB}\"}}"
                ))
                .unwrap()
        ),
        0,
        "the coarse quickstart has a latency SLI without the threshold bucket?"
    );

    // Force the error rate high: the page-level availability alert must go pending (its 2m
    // `for` then makes it fire), and the panics from the mixed phase fire HandlerPanics.
    let alert_state = |p: &Prometheus, name: &str| -> Result<Option<String>, String> {
        let data = p.api("/api/v1/alerts")?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["labels"]["alertname"] == name && a["labels"]["job"] == JOB)
            .and_then(|a| a["state"].as_str().map(String::from)))
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        thread::spawn(move || {
            for _ in 0..30 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                drive(app, ERRORS, 3, Duration::from_secs(2));
            }
        })
    };
    prom.wait_until(
        "AvailabilityBudgetBurn1h5m to be pending or firing",
        Duration::from_secs(60),
        |p| {
            Ok(matches!(
                alert_state(p, "AvailabilityBudgetBurn1h5m")?.as_deref(),
                Some("pending" | "firing")
            ))
        },
    );
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    prom.wait_until("HandlerPanics to fire", Duration::from_secs(30), |p| {
        Ok(alert_state(p, "HandlerPanics")?.as_deref() == Some("firing"))
    });
    // The burn-rate alert carries the labels Alertmanager routes and inhibits on.
    let alerts = prom.api("/api/v1/alerts").unwrap();
    let burn = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "AvailabilityBudgetBurn1h5m")
        .unwrap();
    assert_eq!(burn["labels"]["severity"], "critical");
    assert!(burn["annotations"]["description"]
        .as_str()
        .unwrap()
        .contains("of quickstart requests failed over the last 1h"));

    check_every_dashboard_query(&prom);
}

fn check_every_dashboard_query(prom: &Prometheus) {
    // Metric names that exist for the job: a query reading only these must return data.
    let present: BTreeSet<String> = prom
        .instant(&format!(
            "group by (__name__) ({{job=~\"{JOB}|{GRPC_JOB}\"}})"
        ))
        .unwrap()["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str().map(String::from))
        .collect();
    for needed in [
        "http_server_request_duration_seconds_bucket",
        "target_info",
        tower_observability::metrics::names::PANICS,
        "process_open_fds",
        "ALERTS",
        "rpc_server_call_duration_seconds_bucket",
    ] {
        assert!(
            present.contains(needed),
            "{needed} missing from Prometheus: {present:?}"
        );
    }

    // Both jobs selected: Grafana writes a multi-value selection as `(a|b)`.
    let job_regex = format!("({JOB}|{GRPC_JOB})");
    let mut failures = Vec::new();
    let mut with_data = 0;
    let mut may_be_empty = Vec::new();
    let queries = dashboard_queries();
    for q in &queries {
        // Route detail runs for an erroring route (data everywhere) and a templated one.
        let routes: &[&str] = if q.uid == "tower-obs-route" {
            &["/fail", "/users/{id}"]
        } else {
            &[".+"]
        };
        for route in routes {
            let vars = [
                ("__rate_interval", RATE_INTERVAL),
                ("__interval", "2s"),
                ("__range", "5m"),
                ("job", job_regex.as_str()),
                ("instance", ".+"),
                ("route", *route),
                ("method", ".+"),
            ];
            let expr = substitute(&q.expr, &vars);
            let what = format!("{} / {} [route {route}]", q.dashboard, q.panel);
            let names = monitoring::promql::names(&expr).unwrap();
            // Annotations mark events (restarts) that this run does not cause.
            let event = q.panel.starts_with("annotation");
            let expect_data = *route != "/users/{id}"
                && !event
                && names.metrics.iter().all(|m| present.contains(m));

            let result = if let Some((selector, label)) = &q.label_values {
                let selector = substitute(selector, &vars);
                prom.api(&format!(
                    "/api/v1/label/{label}/values?match[]={}",
                    urlencode(&selector)
                ))
                .and_then(|v| {
                    let values: Vec<&str> = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    // The job variable offers every service that runs the crate.
                    if label == "job" && !(values.contains(&JOB) && values.contains(&GRPC_JOB)) {
                        return Err(format!("job variable offers only {values:?}"));
                    }
                    Ok(values.len())
                })
            } else if q.instant {
                prom.instant(&expr).map(|d| Prometheus::count(&d))
            } else {
                prom.range(&expr, 60).map(|d| Prometheus::count(&d))
            };
            match result {
                Err(e) => failures.push(format!("{what}: query failed: {e}\n    {expr}")),
                Ok(0) if expect_data => failures.push(format!(
                    "{what}: no data although its metrics exist\n    {expr}"
                )),
                Ok(0) => may_be_empty.push(what),
                Ok(_) => with_data += 1,
            }
        }
    }
    eprintln!(
        "{} dashboard queries ({} runs): {with_data} returned data, {} empty as allowed:\n  {}",
        queries.len(),
        with_data + may_be_empty.len(),
        may_be_empty.len(),
        may_be_empty.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        with_data > 80,
        "only {with_data} dashboard queries returned data"
    );
    // Only panels about signals the examples do not produce (traces, Sentry, CORS), errors of
    // a route without errors, and restart markers may be empty.
    for what in &may_be_empty {
        assert!(
            ["telemetry-health.json", "route-detail.json"]
                .iter()
                .any(|d| what.starts_with(d))
                || what.contains("annotation \"Restarts\""),
            "unexpectedly empty: {what}"
        );
    }
}
