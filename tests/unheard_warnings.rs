//! The crate's warnings reach an application that installed no `tracing` subscriber, as the
//! README's minimal service does not: every case runs in a process of its own (this test
//! binary, started again in the case's role) with the environment a user would set, and its
//! stderr is read.
//!
//! What a build warns about depends on its features: a variable for a feature that is not
//! compiled in (default and no-default builds), a collector that refuses (with `otlp`).

use std::process::Command;

/// Set in a child process: the case it plays.
const CASE: &str = "UNHEARD_WARNINGS_CASE";

fn main() {
    match std::env::var(CASE) {
        Ok(case) => play(&case),
        Err(_) => {
            let mut ran = 0;
            for (name, check) in cases() {
                check();
                println!("test {name} ... ok");
                ran += 1;
            }
            println!("\ntest result: ok. {ran} passed");
        }
    }
}

type Case = (&'static str, fn());

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = vec![(
        "a_warning_is_not_written_twice_when_a_subscriber_is_installed",
        with_a_subscriber_stderr_gets_only_the_subscribers_line,
    )];
    if cfg!(not(feature = "sentry")) {
        cases.push((
            "a_sentry_dsn_without_the_feature_is_said_on_stderr",
            a_sentry_dsn_without_the_feature_is_said_on_stderr,
        ));
    }
    if cfg!(not(feature = "otlp")) {
        cases.push((
            "an_otlp_endpoint_without_the_feature_is_said_on_stderr",
            an_otlp_endpoint_without_the_feature_is_said_on_stderr,
        ));
    }
    if cfg!(feature = "otlp") {
        cases.push((
            "a_collector_that_refuses_is_said_on_stderr",
            a_collector_that_refuses_is_said_on_stderr,
        ));
    }
    cases
}

/// Runs `case` in a child process with `vars` set; its stderr.
fn stderr_of(case: &str, vars: &[(&str, String)]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CASE, case)
        .env_remove("RUST_LOG")
        .envs(vars.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{case} failed: {stderr}");
    stderr
}

/// The part the child plays: what a service does at start and under its first request.
fn play(case: &str) {
    use tower_observability::{MetricsBackend, Observability};
    if case == "subscriber" {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::stdout)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    }
    let obs = Observability::from_env("unheard")
        .unwrap()
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
        .build()
        .unwrap();
    if case == "request" {
        one_request(&obs);
    }
    obs.shutdown(std::time::Duration::from_secs(2));
}

/// One request through the layer, so there is a span to export.
fn one_request(obs: &tower_observability::Observability) {
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::{ServiceBuilder, ServiceExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let svc = ServiceBuilder::new()
            .layer(obs.layer())
            .service(tower::service_fn(|_req: http::Request<_>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
            }));
        let response = svc
            .oneshot(
                http::Request::get("/")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });
}

fn a_sentry_dsn_without_the_feature_is_said_on_stderr() {
    let stderr = stderr_of(
        "build",
        &[("SENTRY_DSN", "http://secret@127.0.0.1:9/1".to_owned())],
    );
    let said: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("SENTRY_DSN") && l.contains("`sentry` cargo feature"))
        .collect();
    assert_eq!(
        said.len(),
        1,
        "one line names the variable and the feature: {stderr}"
    );
    assert!(
        !stderr.contains("secret@"),
        "the DSN is not repeated: {stderr}"
    );
}

fn an_otlp_endpoint_without_the_feature_is_said_on_stderr() {
    let stderr = stderr_of(
        "build",
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318".to_owned(),
        )],
    );
    let said = stderr
        .lines()
        .filter(|l| l.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && l.contains("`otlp`"))
        .count();
    assert_eq!(said, 1, "{stderr}");
}

fn a_collector_that_refuses_is_said_on_stderr() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let stderr = stderr_of(
        "request",
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "10".to_owned()),
        ],
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("WARN ")
            && l.contains(&format!("127.0.0.1:{port}"))
            && l.contains("failed")),
        "no line names the collector that refused: {stderr}"
    );
}

fn with_a_subscriber_stderr_gets_only_the_subscribers_line() {
    // A warning every build gives: a variable for a feature that is off, or gzip, which
    // the built-in exporter does not do.
    let vars = if cfg!(feature = "otlp") {
        [("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned())]
    } else {
        [(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318".to_owned(),
        )]
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CASE, "subscriber")
        .env_remove("RUST_LOG")
        .envs(vars.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("WARN") && stdout.contains(vars[0].0),
        "the subscriber got the warning: {stdout}"
    );
    assert!(!stderr.contains(vars[0].0), "and stderr did not: {stderr}");
}
