//! What the README, the docs pages and the examples tell a newcomer is true: the README's
//! quickstart is an example that runs as written, every command names an example that exists
//! with the features it needs, every link resolves, every example says where it listens and
//! answers a taken port with one line naming the variable, and the monitoring stack's
//! commands agree with the stack's files.
//!
//! `scripts/newcomer-check.py` goes further (a clean clone, a clean target directory, the
//! README's commands run as written); it takes minutes, so it is run by hand.

#[path = "monitoring/mod.rs"]
mod monitoring;
// For the Redis server the replicas example shares; monitoring/ takes support/tools.rs by
// path as well, which is the same code compiled twice, not two helpers.
#[allow(clippy::duplicate_mod)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use monitoring::yaml::Yaml;
use monitoring::{addr_after, parse_yaml_file, read, repo};

/// Every example: its listen-address variables, as its output and docs name them.
const EXAMPLES: &[(&str, &[&str])] = &[
    ("minimal", &["ADDR", "ADMIN_ADDR"]),
    ("quickstart", &["QUICKSTART_ADDR", "QUICKSTART_ADMIN_ADDR"]),
    ("distributed", &["FRONTEND_ADDR", "BACKEND_ADDR"]),
    ("sentry", &["SENTRY_EXAMPLE_ADDR"]),
    ("cors", &["CORS_ADDR", "CORS_ADMIN_ADDR"]),
    ("grpc", &["GRPC_ADDR", "GRPC_ADMIN_ADDR"]),
    // Its replicas listen on free ports: nothing to move, nothing to find taken.
    ("rate_limit_replicas", &[]),
];

/// The pages a newcomer reads.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = [
        "README.md",
        "examples/README.md",
        "examples/monitoring/README.md",
        "alerts/README.md",
        "dashboards/README.md",
    ]
    .iter()
    .map(|p| repo().join(p))
    .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The fenced blocks of a markdown text: (info string, body).
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// `[[example]]` entries of examples/Cargo.toml: name -> (path, required features).
fn declared_examples() -> BTreeMap<String, (String, Vec<String>)> {
    let manifest = read(repo().join("examples/Cargo.toml"));
    let mut out = BTreeMap::new();
    for entry in manifest.split("[[example]]").skip(1) {
        let value = |key: &str| {
            entry
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().strip_prefix('=').map(str::trim))
                .map(str::to_owned)
        };
        let unquote = |v: String| v.trim_matches('"').to_owned();
        let name = unquote(value("name").expect("an example without a name"));
        let path = unquote(value("path").unwrap_or_else(|| panic!("{name}: no path")));
        let features = value("required-features")
            .map(|v| {
                v.trim_matches(['[', ']'])
                    .split(',')
                    .map(|f| f.trim().trim_matches('"').to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name, (path, features));
    }
    out
}

/// The example's executable. Every example is built once per run, with every feature, as
/// `cargo test --all-features` builds them (a no-op then): a binary left by an older build
/// must not stand in for the example's current source.
fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .current_dir(repo())
            .args(["build", "--examples", "--all-features"])
            .status()
            .unwrap();
        assert!(status.success(), "could not build the examples");
    });
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// Kills the child on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts an example with `env`, and returns it with the stdout lines read until one
/// contains `until` (bounded: 60 s, the first run of an example may build it).
fn start(name: &str, env: &[(&str, String)], until: &str) -> (Running, Vec<String>) {
    let mut cmd = Command::new(example(name));
    cmd.envs(env.iter().map(|(k, v)| (*k, v)))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("SENTRY_DSN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break; // the test is done; the child's pipe closes with it
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("{name} printed no line with {until:?} in 60 s: {lines:#?}")
            });
        let done = line.contains(until);
        lines.push(line);
        if done {
            // Keep draining, so a full pipe never blocks the example.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (running, lines);
        }
    }
}

/// A blocking HTTP/1.1 GET: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

#[test]
fn the_readme_quickstart_is_the_minimal_example_as_written() {
    let readme = read(repo().join("README.md"));
    let source = read(repo().join("examples/minimal.rs"));
    // The example is the README's block below its own header comment.
    let code = source
        .split_once("\n\n")
        .filter(|(header, _)| header.lines().all(|l| l.starts_with("//!")))
        .map(|(_, code)| code)
        .expect("examples/minimal.rs starts with a //! header, then a blank line");
    let blocks: Vec<String> = fenced_blocks(&readme)
        .into_iter()
        .filter(|(info, _)| info.starts_with("rust") && info.contains("no_run"))
        .map(|(_, body)| body)
        .collect();
    assert!(
        blocks.iter().any(|b| b == code),
        "no `rust,no_run` block of README.md is examples/minimal.rs (below its header) byte for byte"
    );
}

#[test]
fn the_minimal_example_serves_metrics_and_health_as_the_readme_says() {
    let env = [
        ("ADDR", "127.0.0.1:0".to_owned()),
        ("ADMIN_ADDR", "127.0.0.1:0".to_owned()),
    ];
    let (_running, lines) = start("minimal", &env, "serving on http://");
    let line = lines.last().unwrap();
    let (app, admin) = (
        addr_after(line, "serving on http://"),
        addr_after(line, "metrics on http://"),
    );
    assert_eq!(get(app, "/users/7"), (200, "hello".to_owned()));
    let (status, metrics) = get(admin, "/metrics");
    assert_eq!(status, 200);
    // The line the README says /metrics holds.
    let series = r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200"} 1"#;
    assert!(metrics.contains(series), "{metrics}");
    assert!(read(repo().join("README.md")).contains(
        r#"`http_server_request_duration_seconds_count{http_request_method="GET",
http_route="/users/{id}",http_response_status_code="200"} 1`"#
    ));
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(admin, "/readyz").0, 200);
}

#[test]
fn the_readme_is_a_guide_with_the_two_commands_first() {
    let readme = read(repo().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines < 200,
        "README.md has {lines} lines: move reference text to docs/"
    );
    let (_, first) = fenced_blocks(&readme).into_iter().next().unwrap();
    assert!(
        first.contains("cargo run --example quickstart") && first.contains("scripts/test-all.sh"),
        "the README's first block is not the two commands: {first}"
    );
    let ci = read(repo().join(".ci/run"));
    assert!(
        ci.contains("scripts/test-all.sh"),
        ".ci/run no longer calls the test command"
    );
    // Every Cargo feature of the crate is in the README's table.
    let manifest = read(repo().join("Cargo.toml"));
    let features = manifest
        .split("[features]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    for line in features.lines() {
        let Some((name, _)) = line.split_once(" = ") else {
            continue;
        };
        if name != "default" && !name.starts_with('#') {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "the feature {name} is not in the README's table"
            );
        }
    }
}

#[test]
fn every_relative_link_of_the_guide_resolves() {
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let target = &target[..target.find(')').unwrap()];
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            assert!(
                dir.join(file).exists(),
                "{}: the link {target} points at nothing",
                page.display()
            );
        }
    }
}

/// Every variable the crate reads, in the files of `dir` and below.
fn variables_read(dir: &std::path::Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            variables_read(&path, found);
            continue;
        }
        let text = read(&path);
        for (i, _) in text.match_indices('"') {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let quoted = text[i + 1 + name.len()..].starts_with('"');
            let ours = ["OTEL_", "OBSERVABILITY_", "SENTRY_"]
                .iter()
                .any(|prefix| name.starts_with(prefix) && name.len() > prefix.len());
            if quoted && ours {
                found.insert(name);
            }
        }
    }
}

#[test]
fn the_configuration_page_names_every_variable_the_crate_reads() {
    let mut read_by_the_crate = BTreeSet::new();
    variables_read(&repo().join("src"), &mut read_by_the_crate);
    assert!(
        read_by_the_crate.len() > 40 && read_by_the_crate.contains("OTEL_SERVICE_NAME"),
        "the variables were not found where they are read: {read_by_the_crate:?}"
    );
    let page = read(repo().join("docs/configuration.md"));
    let missing: Vec<_> = read_by_the_crate
        .iter()
        .filter(|name| !page.contains(&format!("`{name}`")) && !page.contains(&format!("`{name}=")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not name {missing:?}"
    );
}

/// A word of a command without the backticks, quotes or punctuation of the prose around it.
fn bare(word: &str) -> &str {
    word.trim_matches(|c: char| !(c.is_alphanumeric() || "_-".contains(c)))
}

#[test]
fn every_cargo_run_command_names_an_example_with_the_features_it_needs() {
    let declared = declared_examples();
    let mut sources: Vec<PathBuf> = pages();
    for (_, (path, _)) in declared.iter() {
        sources.push(repo().join("examples").join(path));
    }
    sources.push(repo().join("examples/monitoring/docker-compose.yml"));
    let mut seen = BTreeSet::new();
    for source in sources {
        let text = read(&source).replace("\\\n", " ");
        for line in text.lines() {
            let Some(at) = line.find("cargo run --example ") else {
                continue;
            };
            let words: Vec<&str> = line[at..].split_whitespace().collect();
            let name = bare(words[3]);
            let Some((_, required)) = declared.get(name) else {
                panic!(
                    "{}: `{line}` runs an example that does not exist",
                    source.display()
                )
            };
            seen.insert(name.to_owned());
            let given: Vec<&str> = words
                .iter()
                .position(|w| *w == "--features")
                .map(|i| bare(words[i + 1]).split(',').collect())
                .unwrap_or_default();
            let mut needed: Vec<&str> = required.iter().map(String::as_str).collect();
            // A variable for a signal does nothing without its feature.
            if line.contains("OTEL_EXPORTER_OTLP") {
                needed.push("otlp");
            }
            if line.contains("SENTRY_DSN") {
                needed.push("sentry");
            }
            for feature in needed {
                assert!(
                    given.contains(&feature),
                    "{}: `{}` lacks --features {feature}",
                    source.display(),
                    line.trim()
                );
            }
        }
    }
    for (name, _) in EXAMPLES {
        assert!(
            seen.contains(*name),
            "no page shows how to run the {name} example"
        );
    }
}

#[test]
fn every_example_file_is_declared_and_listed() {
    let declared = declared_examples();
    let listed: BTreeSet<&str> = EXAMPLES.iter().map(|(name, _)| *name).collect();
    let index = read(repo().join("examples/README.md"));
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let file = path.file_name().unwrap().to_str().unwrap();
            let name = file.trim_end_matches(".rs");
            assert_eq!(
                declared.get(name).map(|(p, _)| p.as_str()),
                Some(file),
                "examples/{file} is not an [[example]] of examples/Cargo.toml: it is never built"
            );
            assert!(
                listed.contains(name),
                "examples/{file} is not in this test's EXAMPLES"
            );
            assert!(
                index.contains(&format!("`{name}`")),
                "examples/README.md does not list {name}"
            );
            let first = read(&path).lines().next().unwrap_or_default().to_owned();
            assert!(
                first.starts_with("//! "),
                "examples/{file}: the first line must say what it teaches"
            );
        }
    }
}

/// Runs every example with its addresses on ephemeral ports: it prints them with the
/// variables that move them, its `curl` lines quote their URLs (zsh expands `?`), and a
/// SIGTERM ends it cleanly (`obs.shutdown_signal()`), in bounded time.
#[test]
fn every_example_prints_its_addresses_and_quoted_curl_lines_and_stops_on_sigterm() {
    for (name, vars) in EXAMPLES {
        let mut env: Vec<(&str, String)> = vars
            .iter()
            .map(|v| (*v, "127.0.0.1:0".to_owned()))
            .collect();
        // The replicas share their limit through a real Redis.
        let redis = (*name == "rate_limit_replicas").then(support::redis::Redis::start);
        if let Some(redis) = &redis {
            env.push(("REDIS_URL", redis.url()));
        }
        let until = if *name == "minimal" {
            "serving on"
        } else {
            "Ctrl-C"
        };
        let (mut running, lines) = start(name, &env, until);
        let output = lines.join("\n");
        if *name != "minimal" {
            for var in *vars {
                assert!(output.contains(var), "{name} does not name {var}: {output}");
            }
        }
        for line in lines.iter().filter(|l| l.contains("curl ")) {
            for (i, _) in line.match_indices("http://") {
                assert!(
                    line[..i].ends_with('\''),
                    "{name}: an unquoted URL in `{line}`"
                );
            }
        }
        assert!(
            !output.contains(":0/") && !output.contains(":0,"),
            "{name} prints port 0: {output}"
        );
        let pid = running.0.id().to_string();
        // The example prints before it hands `shutdown_signal()` to the server, which is
        // when the handler is installed: wait until the kernel says SIGTERM is caught.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !catches_sigterm(&pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} does not catch SIGTERM 15 s after it started serving"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = running.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} still runs 15 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{name} ended with {status} on SIGTERM");
    }
}

/// Whether the process has a handler for SIGTERM (the `SigCgt` mask of /proc/PID/status).
fn catches_sigterm(pid: &str) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
}

#[test]
fn every_example_answers_a_taken_port_with_one_line_naming_the_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    for (name, vars) in EXAMPLES {
        for var in *vars {
            let exe = example(name);
            let mut cmd = Command::new(&exe);
            for other in *vars {
                cmd.env(other, "127.0.0.1:0");
            }
            let mut child = cmd
                .env(var, &taken_addr)
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env_remove("SENTRY_DSN")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stderr = child.stderr.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                let _ = tx.send(text);
            });
            let running = Running(child);
            let stderr = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{name} with {var} taken did not exit in 30 s"));
            let mut running = running;
            let status = running.0.wait().unwrap();
            assert!(
                !status.success(),
                "{name} with {var} taken exited with success"
            );
            // Warnings of other parts (e.g. SENTRY_DSN unset) may come first: the last line
            // is the answer, and it is the only one about the port.
            let last = stderr.lines().last().unwrap_or_default();
            assert!(
                last.contains(&taken_addr) && last.contains(&format!("set {var}")),
                "{name} with {var} taken: {stderr:?}"
            );
            assert_eq!(
                stderr.lines().filter(|l| l.contains(&taken_addr)).count(),
                1,
                "{name} with {var} taken: {stderr:?}"
            );
        }
    }
}

/// The published port of a docker-compose service for a container port.
fn published(compose: &Yaml, service: &str, container: u16) -> Option<u16> {
    compose
        .get("services")?
        .get(service)?
        .seq("ports")
        .iter()
        .filter_map(Yaml::as_str)
        .find_map(|p| {
            let parts: Vec<&str> = p.split(':').collect();
            (parts.last()?.parse::<u16>().ok()? == container)
                .then(|| parts[parts.len() - 2].parse().ok())?
        })
}

#[test]
fn the_monitoring_stack_commands_agree_with_its_files() {
    let dir = repo().join("examples/monitoring");
    let readme = read(dir.join("README.md"));
    let compose = parse_yaml_file(&dir.join("docker-compose.yml"));
    let collector = parse_yaml_file(&dir.join("otel-collector/config.yaml"));
    let prometheus = parse_yaml_file(&dir.join("prometheus/prometheus.yml"));

    let (_, commands) = fenced_blocks(&readme)
        .into_iter()
        .find(|(info, body)| info == "sh" && body.contains("cargo run --example quickstart"))
        .expect("the README runs the quickstart in a sh block");
    let commands = commands.replace("\\\n", " ");
    let var = |name: &str| -> Option<String> {
        commands
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
    };
    // Spans go to the collector's receiver of the protocol the quickstart uses.
    let endpoint =
        var("OTEL_EXPORTER_OTLP_ENDPOINT").expect("the quickstart is pointed at the collector");
    let port: u16 = endpoint
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let protocol = var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|| "http/protobuf".into());
    let receiver = if protocol == "grpc" { "grpc" } else { "http" };
    let receiving = collector
        .get("receivers")
        .and_then(|r| r.get("otlp"))
        .and_then(|o| o.get("protocols"))
        .and_then(|p| p.get(receiver))
        .and_then(|h| h.str("endpoint"))
        .unwrap_or_else(|| panic!("the collector has no OTLP {receiver} receiver"));
    let container: u16 = receiving.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        published(&compose, "otel-collector", container),
        Some(port),
        "{protocol} spans go to port {port}, the collector receives {receiver} on {container}"
    );
    // Prometheus scrapes the admin port the quickstart is told to listen on.
    let admin = var("QUICKSTART_ADMIN_ADDR").expect("the quickstart's admin port is set");
    assert!(
        admin.starts_with("0.0.0.0:"),
        "containers reach the host's {admin} only on 0.0.0.0"
    );
    let admin_port = admin.rsplit(':').next().unwrap();
    let scraped: Vec<String> = prometheus
        .seq("scrape_configs")
        .iter()
        .filter(|c| c.str("job_name") == Some("quickstart"))
        .flat_map(|c| {
            c.seq("static_configs")
                .iter()
                .flat_map(|s| s.seq("targets").iter())
                .filter_map(Yaml::as_str)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(scraped, [format!("host.docker.internal:{admin_port}")]);
    // Every URL the README opens is a port the stack publishes.
    let mut published_ports = BTreeSet::new();
    for service in [
        "prometheus",
        "alertmanager",
        "grafana",
        "jaeger",
        "otel-collector",
    ] {
        for p in compose
            .get("services")
            .unwrap()
            .get(service)
            .unwrap()
            .seq("ports")
            .iter()
            .filter_map(Yaml::as_str)
        {
            published_ports.insert(p.split(':').nth(1).unwrap().parse::<u16>().unwrap());
        }
    }
    for (i, _) in readme.match_indices("http://127.0.0.1:") {
        let port: u16 = readme[i + 17..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            published_ports.contains(&port),
            "the README opens port {port}, which the stack does not publish"
        );
    }
    // No example listens by default on a port the stack publishes (Grafana is on 3001).
    for (name, _) in EXAMPLES {
        let source = read(repo().join("examples").join(format!("{name}.rs")));
        for host in ["\"127.0.0.1:", "\"0.0.0.0:"] {
            for (i, _) in source.match_indices(host) {
                let digits: String = source[i + host.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let port: u16 = digits.parse().unwrap();
                assert!(
                    !published_ports.contains(&port),
                    "the {name} example listens on {port}, a port of the monitoring stack"
                );
            }
        }
    }
}
