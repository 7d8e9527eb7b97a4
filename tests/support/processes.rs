//! Real programs started by the tests: the quickstart example and a Prometheus server,
//! each on 127.0.0.1 and killed when its guard drops (also when the test fails).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tool;

/// Kills the child process on drop.
pub struct Guard {
    pub child: Child,
    pub name: &'static str,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/examples/<name>`, built with cargo if it is not there yet.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "could not build example {name}");
    }
    path
}

/// The quickstart example on ephemeral ports: (guard, app address, admin address).
pub fn quickstart() -> (Guard, SocketAddr, SocketAddr) {
    let mut child = Command::new(example_binary("quickstart"))
        .env("QUICKSTART_ADDR", "127.0.0.1:0")
        .env("QUICKSTART_ADMIN_ADDR", "127.0.0.1:0")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("quickstart starts");
    let stdout = child.stdout.take().unwrap();
    let guard = Guard {
        child,
        name: "quickstart",
    };
    // First line: "quickstart: service on http://A, admin on http://B"
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    // Keep draining: a closed pipe would make the example's next println! fail.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addrs: Vec<SocketAddr> = line
        .split("http://")
        .skip(1)
        .map(|s| {
            s.trim_end_matches(|c: char| c == ',' || c.is_whitespace())
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(addrs.len(), 2, "unexpected first line: {line:?}");
    (guard, addrs[0], addrs[1])
}

/// A free port on 127.0.0.1 (bound then released; the race is harmless in tests).
/// Runs `command` with `input` on its stdin; what it printed and how it ended.
pub fn run_with_input(command: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus server with `config` (YAML) in a temporary directory, listening on
/// 127.0.0.1. Returns once `/-/ready` answers, within 30 s.
pub struct Prometheus {
    _guard: Guard,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Prometheus {
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Prometheus {
        Self::start_with_flags(config, files, &[]).await
    }

    /// [`start`](Self::start) with extra command-line flags (`--enable-feature=...`).
    pub async fn start_with_flags(
        config: &str,
        files: &[(&str, &str)],
        flags: &[&str],
    ) -> Prometheus {
        let binary = tool("prometheus", "prometheus");
        let dir = std::env::temp_dir().join(format!(
            "tower-observability-prom-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            _guard: Guard {
                child,
                name: "prometheus",
            },
            addr,
            dir,
        };
        let client = super::client();
        let start = Instant::now();
        loop {
            let ready = client
                .get(format!("http://{addr}/-/ready").parse().unwrap())
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                return prometheus;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus not ready after 30 s; log: {}",
                std::fs::read_to_string(prometheus.dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs an instant query; returns the `data.result` array, or the error Prometheus gave.
    pub async fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("query", &[("query", promql)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// GETs `/api/v1/{path}` with `params`; returns `data`, or the error Prometheus gave.
    pub async fn api(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let mut url = format!("http://{}/api/v1/{path}?", self.addr);
        for (i, (key, value)) in params.iter().enumerate() {
            if i > 0 {
                url.push('&');
            }
            url.push_str(key);
            url.push('=');
            for b in value.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    url.push(b as char);
                } else {
                    url.push_str(&format!("%{b:02X}"));
                }
            }
        }
        let (_, body) = super::send(&super::client(), "GET", &url, b"").await;
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if json["status"] != "success" {
            return Err(json.to_string());
        }
        Ok(json["data"].clone())
    }

    /// What Prometheus logged so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
