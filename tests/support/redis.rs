//! A real `redis-server` (Debian package `redis-server`) on 127.0.0.1 and an ephemeral
//! port, with no persistence; killed when dropped, and restartable on the same port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::processes::{free_port, Guard};
use super::tool;

pub struct Redis {
    guard: Option<Guard>,
    pub addr: SocketAddr,
}

impl Redis {
    /// Starts a server and waits (at most 10 s) until it answers `PING`.
    pub fn start() -> Redis {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut redis = Redis { guard: None, addr };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new(tool("redis-server", "redis-server"))
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.guard = Some(Guard {
            child,
            name: "redis-server",
        });
        let start = Instant::now();
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Kills the server (SIGKILL): connections drop, the port refuses.
    pub fn kill(&mut self) {
        self.guard = None;
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends one inline command; the raw reply, or `None` if the server is not there.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut conn = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        conn.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).ok()?;
            reply.extend_from_slice(&buf[..n]);
            if n == 0 || complete(&reply) {
                break;
            }
        }
        Some(String::from_utf8_lossy(&reply).trim_end().to_owned())
    }

    /// Calls of `command` (lower case, e.g. `evalsha`) since the server started.
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.command("INFO commandstats").unwrap_or_default();
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// Whether a reply is whole: a simple line, or a bulk string with all its bytes.
fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    match text.strip_prefix('$') {
        Some(rest) => rest
            .split_once("\r\n")
            .and_then(|(len, body)| len.parse::<usize>().ok().map(|len| body.len() >= len + 2))
            .unwrap_or(false),
        None => text.ends_with("\r\n"),
    }
}
