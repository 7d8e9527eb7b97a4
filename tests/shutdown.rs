//! Graceful shutdown with real processes and real signals: this binary starts itself as a
//! child service (the `main` a user writes: `axum::serve(..).with_graceful_shutdown(
//! obs.shutdown_signal())`), loads it, sends `kill -TERM` / `kill -INT`, and counts what
//! reached an OTLP receiver and a Sentry endpoint on 127.0.0.1 before the child exited.
//!
//! `cargo test --test shutdown [scenario]`; `SHUTDOWN_RUNS` (default 20) sets how many
//! times each signal is tried.

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use support::sentry_endpoint::{Answer, SentryEndpoint};
use support::{client, hanging_endpoint, send};
use tokio::io::{AsyncBufReadExt, BufReader};
use tower_observability::logging::{self, LogFormat};
use tower_observability::Observability;

/// Set in the child's environment: run as the service.
const CHILD: &str = "SHUTDOWN_TEST_CHILD";
/// Set in the child's environment: listen for signals, then take this long to start.
const STARTUP_MS: &str = "SHUTDOWN_TEST_STARTUP_MS";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        if let Err(e) = child() {
            eprintln!("child failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scenarios: [(&str, MakeScenario); 5] = [
        ("nothing_queued_is_lost_on_sigterm_or_sigint", || {
            Box::pin(nothing_queued_is_lost_on_sigterm_or_sigint())
        }),
        (
            "a_hanging_collector_delays_exit_by_the_timeout_at_most",
            || Box::pin(a_hanging_collector_delays_exit_by_the_timeout_at_most()),
        ),
        ("a_second_signal_exits_without_waiting_for_requests", || {
            Box::pin(a_second_signal_exits_without_waiting_for_requests())
        }),
        (
            "a_signal_during_start_up_ends_the_server_as_it_starts",
            || Box::pin(a_signal_during_start_up_ends_the_server_as_it_starts()),
        ),
        ("a_sentry_host_that_does_not_resolve_ends_cleanly", || {
            Box::pin(a_sentry_host_that_does_not_resolve_ends_cleanly())
        }),
    ];
    let mut ran = 0;
    for (name, scenario) in scenarios {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        runtime.block_on(scenario());
        println!("test {name} ... ok");
        ran += 1;
    }
    println!("\ntest result: ok. {ran} passed");
}

type Scenario = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
type MakeScenario = fn() -> Scenario;

// ---------------------------------------------------------------- the child: a user's main

#[tokio::main]
async fn child() -> Result<(), Box<dyn std::error::Error>> {
    logging::init(LogFormat::Text)?;
    let obs = Observability::from_env("shutdown-child")?.build()?;
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/fail",
            get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .route("/slow", get(slow))
        .layer(obs.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin = obs.serve_admin("127.0.0.1:0")?;
    let announce = || {
        println!(
            "listening on http://{} admin http://{}",
            listener.local_addr().unwrap(),
            admin.local_addr()
        )
    };
    match std::env::var(STARTUP_MS) {
        // A service that takes its time to start listens for signals first.
        Ok(ms) => {
            let signal = obs.shutdown_signal();
            println!("starting");
            tokio::time::sleep(Duration::from_millis(ms.parse()?)).await;
            announce();
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await?;
        }
        // The one line the README shows.
        Err(_) => {
            announce();
            axum::serve(listener, app)
                .with_graceful_shutdown(obs.shutdown_signal())
                .await?;
        }
    }
    println!("served");
    Ok(())
}

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

async fn slow(Query(Slow { ms }): Query<Slow>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow"
}

// ---------------------------------------------------------------- the parent's parts

/// An HTTP/protobuf OTLP receiver counting the spans it gets; returns its endpoint.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<String>>>);

impl Spans {
    async fn start(&self) -> String {
        let spans = self.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let spans = spans.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).unwrap();
                    let names = req
                        .resource_spans
                        .into_iter()
                        .flat_map(|rs| rs.scope_spans)
                        .flat_map(|ss| ss.spans)
                        .map(|span| span.name);
                    spans.0.lock().unwrap().extend(names);
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        format!("http://{}", support::serve(app).await)
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn named(&self, name: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|n| *n == name).count()
    }
}

/// The child service, its addresses and everything it printed.
struct Child {
    process: tokio::process::Child,
    app: String,
    admin: String,
    output: Arc<Mutex<String>>,
}

impl Child {
    /// Starts the child with `vars` (and nothing else from this environment); returns once
    /// it printed `until` (a line starting with it).
    async fn start(vars: &[(&str, String)], until: &str) -> Child {
        let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
        command
            .env_clear()
            .env(CHILD, "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in vars {
            command.env(k, v);
        }
        let mut process = command.spawn().expect("the child starts");
        let output = Arc::new(Mutex::new(String::new()));
        let (first_tx, mut first_rx) = tokio::sync::mpsc::unbounded_channel();
        let stdout = BufReader::new(process.stdout.take().unwrap());
        let stderr = BufReader::new(process.stderr.take().unwrap());
        for mut lines in [
            Box::pin(stdout) as std::pin::Pin<Box<dyn tokio::io::AsyncBufRead + Send>>,
            Box::pin(stderr),
        ]
        .map(|r| r.lines())
        {
            let output = output.clone();
            let first_tx = first_tx.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lock().unwrap().push_str(&line);
                    output.lock().unwrap().push('\n');
                    let _ = first_tx.send(line);
                }
            });
        }
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = first_rx.recv().await {
                if line.starts_with(until) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        let line = match found {
            Ok(Some(line)) => line,
            _ => panic!(
                "the child did not print {until:?}; it printed:\n{}",
                output.lock().unwrap()
            ),
        };
        let urls: Vec<String> = line
            .split_whitespace()
            .filter(|w| w.starts_with("http://"))
            .map(str::to_owned)
            .collect();
        Child {
            process,
            app: urls.first().cloned().unwrap_or_default(),
            admin: urls.get(1).cloned().unwrap_or_default(),
            output,
        }
    }

    /// Sends `signal` (`TERM`, `INT`) with `kill`, as an orchestrator would.
    fn kill(&self, signal: &str) {
        let pid = self.process.id().expect("the child runs").to_string();
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&pid)
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the child to exit (at most `limit`): its exit code.
    async fn exit(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.process.wait()).await {
            Ok(status) => status.unwrap().code(),
            Err(_) => panic!(
                "the child did not exit within {limit:?}; it printed:\n{}",
                self.output()
            ),
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits (at most 5 s) until `/readyz` answers `status`.
    async fn readyz_becomes(&self, status: u16) {
        let client = client();
        let url = format!("{}/readyz", self.admin);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if send(&client, "GET", &url, b"").await.0 == status {
                return;
            }
            assert!(Instant::now() < deadline, "/readyz never answered {status}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `n` sequential GETs of `path`, each answered with `status`.
async fn load(child: &Child, path: &str, n: usize, status: u16) {
    let client = client();
    let url = format!("{}{path}", child.app);
    for _ in 0..n {
        assert_eq!(send(&client, "GET", &url, b"").await.0, status, "{url}");
    }
}

/// The environment of a child exporting to `otlp` and reporting to `dsn`. The spans wait
/// for a schedule longer than the test: only the shutdown sends them.
fn exporting(otlp: &str, dsn: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".into()),
        ("SENTRY_DSN", dsn.into()),
    ]
}

// ---------------------------------------------------------------- the scenarios

/// 300 spans (fewer than a batch: they wait for the schedule) and 30 Sentry events (the
/// endpoint takes 10 ms an event, so most are still queued) are all delivered before the
/// process exits, and a request in flight at the signal finishes, for SIGTERM and SIGINT.
async fn nothing_queued_is_lost_on_sigterm_or_sigint() {
    let runs: usize = std::env::var("SHUTDOWN_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let mut tally: HashMap<&str, (usize, Vec<Duration>)> = HashMap::new();
    for run in 0..runs {
        for signal in ["TERM", "INT"] {
            let spans = Spans::default();
            let otlp = spans.start().await;
            let sentry = SentryEndpoint::start_answering(Answer {
                delay: Duration::from_millis(10),
                ..Answer::default()
            })
            .await;
            let mut child = Child::start(&exporting(&otlp, &sentry.dsn()), "listening").await;
            load(&child, "/ok", 270, 200).await;
            load(&child, "/fail", 30, 500).await;
            let in_flight = {
                let url = format!("{}/slow?ms=400", child.app);
                tokio::spawn(async move { send(&client(), "GET", &url, b"").await.0 })
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            let signalled = Instant::now();
            child.kill(signal);
            child.readyz_becomes(503).await;
            assert_eq!(
                in_flight.await.unwrap(),
                200,
                "the request in flight finishes"
            );
            let code = child.exit(Duration::from_secs(10)).await;
            let took = signalled.elapsed();
            let output = child.output();
            assert_eq!(code, Some(0), "SIG{signal} run {run}:\n{output}");
            assert!(
                output.contains(&format!("SIG{signal} received")),
                "no log line for the signal:\n{output}"
            );
            let (sent_spans, events) = (spans.count(), sentry.events().len());
            println!(
                "  run {run:>2} SIG{signal:<4}: {sent_spans}/301 spans, {events}/30 events, \
                 exit {took:?} after the signal"
            );
            assert_eq!(
                spans.named("GET /slow"),
                1,
                "the span of the request in flight"
            );
            let entry = tally.entry(signal).or_default();
            entry.1.push(took);
            if sent_spans == 301 && events == 30 {
                entry.0 += 1;
            }
        }
    }
    for (signal, (whole, took)) in &tally {
        let slowest = took.iter().max().unwrap();
        println!(
            "  SIG{signal}: everything arrived in {whole} of {runs} runs; slowest exit {slowest:?}"
        );
        assert_eq!(*whole, runs, "SIG{signal} lost telemetry");
    }
}

/// A collector and a Sentry that accept connections and never answer: the exit waits for
/// them no longer than the shutdown timeout, and says what was left.
async fn a_hanging_collector_delays_exit_by_the_timeout_at_most() {
    let otlp = format!("http://{}", hanging_endpoint().await);
    let dsn = format!("http://public@{}/1", hanging_endpoint().await);
    let mut vars = exporting(&otlp, &dsn);
    vars.push(("OBSERVABILITY_SHUTDOWN_TIMEOUT", "2".into()));
    let mut child = Child::start(&vars, "listening").await;
    load(&child, "/ok", 20, 200).await;
    load(&child, "/fail", 3, 500).await;
    let signalled = Instant::now();
    child.kill("TERM");
    let code = child.exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    let output = child.output();
    println!("  hanging endpoints, timeout 2 s: exit {took:?} after SIGTERM");
    assert_eq!(code, Some(0), "{output}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(3000),
        "exit {took:?} after the signal, with a 2 s timeout:\n{output}"
    );
    assert!(
        output.contains("shutdown timeout"),
        "no line says telemetry was left behind:\n{output}"
    );
}

/// A second signal while a request is still in flight: the child flushes what is queued
/// and exits at once with 128 + 15, without waiting for the request.
async fn a_second_signal_exits_without_waiting_for_requests() {
    let spans = Spans::default();
    let otlp = spans.start().await;
    let sentry = SentryEndpoint::start().await;
    let mut child = Child::start(&exporting(&otlp, &sentry.dsn()), "listening").await;
    load(&child, "/ok", 20, 200).await;
    load(&child, "/fail", 2, 500).await;
    let url = format!("{}/slow?ms=60000", child.app);
    // Cut when the child exits: its answer never comes.
    let _stuck = tokio::spawn(async move { client().get(url.parse().unwrap()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    child.kill("TERM");
    child.readyz_becomes(503).await;
    let signalled = Instant::now();
    child.kill("TERM");
    let code = child.exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    let output = child.output();
    println!("  second SIGTERM: exit {took:?} after it, code {code:?}");
    assert_eq!(code, Some(128 + 15), "{output}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(output.contains("received again"), "{output}");
    assert!(
        !output.contains("served"),
        "the server did not return:\n{output}"
    );
    assert_eq!(spans.count(), 22, "the finished requests' spans are sent");
    assert_eq!(sentry.events().len(), 2, "and their events");
}

/// SIGTERM while the service is still starting (it listens for signals first): the
/// server returns as soon as it starts, and the process exits cleanly.
async fn a_signal_during_start_up_ends_the_server_as_it_starts() {
    let mut vars = exporting(
        &format!("http://{}", support::closed_port()),
        &format!("http://public@{}/1", support::closed_port()),
    );
    vars.push((STARTUP_MS, "1500".into()));
    let mut child = Child::start(&vars, "starting").await;
    let signalled = Instant::now();
    child.kill("TERM");
    let code = child.exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    let output = child.output();
    println!("  SIGTERM during start-up: exit {took:?} after it");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("SIGTERM received"), "{output}");
    assert!(
        output.contains("listening") && output.contains("served"),
        "{output}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// A Sentry DSN whose host does not resolve (a 64-character label: glibc refuses the name
/// without asking a DNS server, so nothing leaves this machine): events fail, the failure is
/// logged once naming the endpoint, and the shutdown ends within the timeout.
async fn a_sentry_host_that_does_not_resolve_ends_cleanly() {
    let spans = Spans::default();
    let otlp = spans.start().await;
    let host = format!("{}.invalid", "a".repeat(64));
    let mut vars = exporting(&otlp, &format!("http://public@{host}/1"));
    vars.push(("OBSERVABILITY_SHUTDOWN_TIMEOUT", "2".into()));
    let mut child = Child::start(&vars, "listening").await;
    load(&child, "/fail", 10, 500).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    child.kill("TERM");
    let code = child.exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    let output = child.output();
    println!("  unresolvable Sentry host: exit {took:?} after SIGTERM");
    assert_eq!(code, Some(0), "{output}");
    assert!(took < Duration::from_millis(2500), "{took:?}\n{output}");
    let failures: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&host))
        .collect();
    assert_eq!(
        failures.len(),
        1,
        "one warning names the endpoint:\n{output}"
    );
    assert!(
        !failures[0].contains("public"),
        "no key in the log: {}",
        failures[0]
    );
    assert_eq!(spans.count(), 10, "the spans still arrive");
}
