#!/usr/bin/env bash
# The one command that runs every test: installs what the tests need on a fresh Debian
# machine (real Prometheus, promtool, amtool, Chromium, valgrind), then runs the lints,
# the unit, integration and doc tests, and checks that every feature builds on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run for real. Keep in one line: other scripts read it.
APT_PACKAGES="prometheus prometheus-alertmanager python3 python3-prometheus-client valgrind chromium redis-server"

missing=()
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # No daemons are needed: tests start their own servers on 127.0.0.1.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The OpenMetrics parser the exposition tests read with, for a python3 that is not Debian's
# (pyenv, a venv): from PyPI.
python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install --quiet prometheus_client

# The lint components, if this toolchain came without them.
for component in rustfmt clippy; do
  cmd=$([ "$component" = rustfmt ] && echo fmt || echo clippy)
  cargo "$cmd" --version >/dev/null 2>&1 || rustup component add "$component"
done

# The workspace: the crate (.), its examples (examples/) and the benches with their peer
# stack (benches/). Feature checks name the crate (-p): other members' dependencies would
# otherwise lend it features.
crate=tower-observability
echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== clippy, default features (the paths of features that are off)"
cargo clippy -p "$crate" --all-targets -- -D warnings
echo "== default features build alone"; cargo check --quiet -p "$crate"
echo "== no default features";           cargo check --quiet -p "$crate" --no-default-features
echo "== each feature alone"
for feature in axum admin signal otlp logging sentry redis; do
  cargo check --quiet -p "$crate" --no-default-features --features "$feature"
done
# The benches as their scripts build them: alone, with only their own features (in the
# workspace build above, the examples lend the crate features the benches may lack).
echo "== benches build alone"
cargo check --quiet -p tower-observability-benches --benches --features otlp,sentry,redis
echo "== docs (broken intra-doc links are errors)"
RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links -D warnings" cargo doc --quiet --no-deps --all-features -p "$crate"
echo "== tests (the crate and the examples)";  cargo test --all-features
# What a feature that is off does (no-op signals, warnings for its variables) runs too.
echo "== tests, default features"; cargo test -p "$crate" --lib --tests
echo "== tests, no default features"; cargo test -p "$crate" --no-default-features --lib --tests
# The README followed literally from a clean clone and an empty target directory (minutes:
# it compiles the demo twice and a new crate), so on request: NEWCOMER_CHECK=1.
if [ -n "${NEWCOMER_CHECK:-}" ]; then
  echo "== the README's steps from a clean clone"; python3 scripts/newcomer-check.py
fi
