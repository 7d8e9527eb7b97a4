"""The crate's metric contract, read from the Rust source it lives in: metric and label
names (`pub const NAME: &str = "...";` in src/metrics/names.rs) and the default duration
buckets (DEFAULT_DURATION_BUCKETS in src/metrics/mod.rs). Nothing is copied here, so the
generated rules and dashboards cannot drift from what the crate emits.

    import contract
    contract.NAMES["HTTP_SERVER_REQUEST_DURATION"]  # "http_server_request_duration_seconds"
    contract.DEFAULT_DURATION_BUCKETS                # [0.005, 0.01, ...]
"""

import pathlib
import re

_SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "metrics"


def _names():
    text = (_SRC / "names.rs").read_text(encoding="utf-8")
    found = dict(re.findall(r'pub const ([A-Z0-9_]+): &str = "([^"]+)";', text))
    if "HTTP_SERVER_REQUEST_DURATION" not in found:
        raise SystemExit("src/metrics/names.rs: no metric names found")
    return found


def _buckets(constant):
    text = (_SRC / "mod.rs").read_text(encoding="utf-8")
    match = re.search(rf"pub const {constant}: &\[f64\] = &\[(.*?)\];", text, re.S)
    if not match:
        raise SystemExit(f"src/metrics/mod.rs: {constant} not found")
    return [float(b) for b in match.group(1).replace("\n", " ").split(",") if b.strip()]


NAMES = _names()
DEFAULT_DURATION_BUCKETS = _buckets("DEFAULT_DURATION_BUCKETS")


def sli_windows(cfg):
    """Every window a burn-rate alert reads (tools/slo.toml's [[burn_rate]]), shortest first."""
    units = {"m": 60, "h": 3600, "d": 86400}
    windows = {w for rate in cfg["burn_rate"] for w in (rate["long"], rate["short"])}
    return sorted(windows, key=lambda w: int(w[:-1]) * units[w[-1]])
