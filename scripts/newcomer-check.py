#!/usr/bin/env python3
"""Follows the README's steps as a newcomer would, from a clean clone and a clean target
directory, and checks that a running service's /metrics, a trace at a local OTLP receiver and
a Sentry event at a local envelope endpoint all arrive.

    python3 scripts/newcomer-check.py            # the committed HEAD; takes minutes

The README marks the blocks it runs with `<!-- newcomer-check: NAME -->`:
  demo     `cargo run --example quickstart`, then its curl lines;
  signals  the local receiver, the quickstart with `--features otlp,sentry`, a failing request;
  service  a new crate made of the README's Cargo.toml lines and src/main.rs, `cargo run`.
Commands run as written, with two liberties, both the README's own: every fixed port
(3000, 9464, 4318, 9000) becomes a free one, moved with the variables the README names
(QUICKSTART_ADDR, ADDR, ...) and rewritten in the URLs; and the new crate takes
`tower-observability` from the clone (the Cargo.toml line's version, as a path).
Servers are started in the background (the README says "in another terminal"), each
bounded: a build may take 15 minutes, an answer 30 seconds."""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                      cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout.strip()
BUILD_LIMIT = 15 * 60
ANSWER_LIMIT = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORTS = {port: free_port() for port in (3000, 9464, 4318, 9000)}


def moved(text):
    """The text with every fixed port of the README replaced by its free one."""
    return re.sub(r"(?<=:)(3000|9464|4318|9000)\b", lambda m: str(PORTS[int(m.group(1))]), text)


def blocks(readme):
    """{name: [command lines]} of the marked sh blocks; `\\` continuations joined."""
    found = {}
    for name, body in re.findall(r"<!-- newcomer-check: (\w+) -->\n```sh\n(.*?)```", readme, re.S):
        lines = body.replace("\\\n", " ").splitlines()
        found[name] = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return found


class Background:
    """A command run in its own process group, its output collected line by line."""

    def __init__(self, name, command, cwd, env):
        self.name, self.lines, self.started = name, [], time.monotonic()
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern, limit):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for line in self.lines:
                if re.search(pattern, line):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = "\n  ".join(self.lines[-30:])
        fail(f"{self.name}: no line matching {pattern!r} within {limit} s:\n  {tail}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C, as the README says
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


RUNNING = []


def fail(message):
    print(f"FAIL: {message}", flush=True)
    for proc in RUNNING:
        proc.stop()
    sys.exit(1)


def say(message):
    print(message, flush=True)


def run_block(lines, cwd, env, server_ready):
    """Runs a block's lines: `export` sets variables, `... &` and `cargo run` start in the
    background (the latter waited for until it serves), anything else runs to completion.
    Returns {line: output} of the foreground commands."""
    outputs = {}
    for line in lines:
        line = moved(line.split(" #")[0].strip())
        if line.startswith("export "):
            for assignment in shlex.split(line[len("export "):]):
                key, _, value = assignment.partition("=")
                env[key] = value
        elif line.endswith("&"):
            proc = Background(line, line[:-1], cwd, env)
            RUNNING.append(proc)
            proc.wait_for(r"\S", ANSWER_LIMIT)
        elif line.startswith("cargo run"):
            proc = Background(line, line, cwd, env)
            RUNNING.append(proc)
            ready = proc.wait_for(server_ready, BUILD_LIMIT)
            compiled = sum(1 for l in proc.lines if l.lstrip().startswith("Compiling "))
            say(f"  {line}: serving after {time.monotonic() - proc.started:.0f} s "
                f"({compiled} crates compiled): {ready.strip()}")
        else:
            out = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                                 text=True, timeout=ANSWER_LIMIT)
            if out.returncode != 0:
                fail(f"`{line}` exited with {out.returncode}: {out.stderr}")
            outputs[line] = out.stdout
            say(f"  {line}: {len(out.stdout)} bytes")
    return outputs


def output_of(outputs, fragment):
    for line, out in outputs.items():
        if fragment in line:
            return out
    fail(f"no command with {fragment!r} ran")


def stop_all():
    while RUNNING:
        RUNNING.pop().stop()


def main():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                      text=True).stdout.strip():
        say("note: uncommitted changes are not checked (a clean clone of HEAD is)")
    work = tempfile.mkdtemp(prefix="newcomer-check-")
    try:
        checkout = os.path.join(work, "tower-observability")
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", REPO, checkout], check=True)
        subprocess.run(["git", "checkout", "--quiet", head], cwd=checkout, check=True)
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(work, "target"),
                   QUICKSTART_ADDR=f"127.0.0.1:{PORTS[3000]}",
                   QUICKSTART_ADMIN_ADDR=f"127.0.0.1:{PORTS[9464]}",
                   ADDR=f"127.0.0.1:{PORTS[3000]}", ADMIN_ADDR=f"127.0.0.1:{PORTS[9464]}")
        for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "SENTRY_DSN", "CARGO_BUILD_TARGET_DIR", "RUSTFLAGS"):
            env.pop(var, None)
        readme = open(os.path.join(checkout, "README.md")).read()
        steps = blocks(readme)
        say(f"clean clone of {head[:12]} in {checkout}, empty target directory, ports {PORTS}")

        say("demo:")
        out = run_block(steps["demo"], checkout, dict(env), r"admin on http://")
        metrics = output_of(out, "/metrics")
        if 'http_route="/users/{id}"' not in metrics:
            fail(f"/metrics has no series for /users/{{id}}:\n{metrics[:2000]}")
        say("  /metrics holds the request, under its route")
        stop_all()

        say("signals:")
        run_block(steps["signals"], checkout, dict(env), r"admin on http://")
        sink = RUNNING[0]
        span = sink.wait_for(r"^span .*'GET /fail' kind=server status=error", ANSWER_LIMIT)
        event = sink.wait_for(r"^event .*'GET /fail responded 500", ANSWER_LIMIT)
        trace = re.search(r"trace_id=(\w+)", span).group(1)
        if f"trace_id={trace}" not in event:
            fail(f"the span and the event are in different traces:\n  {span}\n  {event}")
        say(f"  the receiver got the span: {span}")
        say(f"  and the Sentry event:      {event}")
        stop_all()

        say("service (a new crate from the README's Cargo.toml lines and src/main.rs):")
        crate = os.path.join(work, "myservice")
        subprocess.run(["cargo", "new", "--quiet", "--vcs", "none", crate], check=True, env=env)
        toml = re.search(r"`Cargo.toml`:\n\n```toml\n(.*?)```", readme, re.S).group(1)
        main_rs = re.search(r"`src/main.rs`[^\n]*\n\n```rust[^\n]*\n(.*?)```", readme, re.S).group(1)
        toml = re.sub(r'^tower-observability = "[^"]+"',
                      f'tower-observability = {{ path = "{checkout}" }}', toml, flags=re.M)
        manifest = open(os.path.join(crate, "Cargo.toml")).read()
        manifest = manifest.replace("[dependencies]\n", toml)
        open(os.path.join(crate, "Cargo.toml"), "w").write(manifest)
        open(os.path.join(crate, "src", "main.rs"), "w").write(main_rs)
        # The clone's versions, as its CI tested them; cargo drops what this crate does not use.
        shutil.copy(os.path.join(checkout, "Cargo.lock"), os.path.join(crate, "Cargo.lock"))
        out = run_block(steps["service"], crate, dict(env), r"serving on http://")
        if output_of(out, "/users/7").strip() != "hello":
            fail(f"/users/7 answered {output_of(out, '/users/7')!r}")
        if 'http_route="/users/{id}"' not in output_of(out, "/metrics"):
            fail("the new service's /metrics has no series for /users/{id}")
        say("  the new service answers and its /metrics holds the request")
        stop_all()
        say("PASS: metrics, a trace and a Sentry event arrived, following the README")
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
