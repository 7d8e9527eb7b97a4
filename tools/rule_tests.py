"""`promtool test rules` cases for the generated burn-rate alerts.

Derived from the same targets as the rules, so changing tools/slo.toml keeps them valid. For
each burn-rate window pair: a constant error ratio between its factor and the next one up
must fire exactly the alerts whose factor it exceeds and whose `for` has elapsed, with the
right labels and rendered annotations. Healthy traffic, low traffic and missing data must
stay silent. Client cancellations and 4xx ride along at high volume and must not count.
"""

import math

from rules import DEFAULT_BUCKETS, burn_rate_alerts, latency_bucket_alert, slo_groups

JOB = "checkout"
INSTANCE = "10.0.0.1:9464"
REQUESTS_PER_MINUTE = 1000


def _minutes(duration):
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"m": 1, "h": 60, "d": 1440}[unit]


def _rate_literal(text):
    """The value of `min_requests_per_second`, written as a number or `a/b`."""
    if "/" in text:
        a, b = text.split("/")
        return float(a) / float(b)
    return float(text)


def _two_digits(x):
    digits = 1 - int(math.floor(math.log10(abs(x))))
    return round(x, digits)


def _fmt(x):
    return "%.10g" % x


def _series(name, labels):
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def _http(status, error_type=None, route="/users/{id}"):
    labels = {"job": JOB, "instance": INSTANCE, "http_request_method": "GET",
              "http_route": route, "http_response_status_code": status}
    if error_type:
        labels["error_type"] = error_type
    return labels


def _render(template, value, instance=INSTANCE):
    text = template.replace("{{ $labels.job }}", JOB)
    text = text.replace("{{ $labels.instance }}", instance)
    text = text.replace("{{ $value | humanizePercentage }}", "%.4g%%" % (value * 100))
    if "{{" in text:
        raise SystemExit(f"rule_tests cannot render this annotation yet: {template}")
    return text


def _availability_series(bad_ratio, per_minute, minutes):
    good = per_minute * (1 - bad_ratio)
    bad = per_minute * bad_ratio
    count = "http_server_request_duration_seconds_count"
    series = [
        # 4xx are the client's fault: good requests as far as the server is concerned.
        (_series(count, _http("200")), good * 0.8),
        (_series(count, _http("404")), good * 0.2),
        (_series(count, _http("500", "500")), bad),
        # Must count on neither side: 499 is a client that went away.
        (_series(count, _http("499", "cancelled")), per_minute * 3),
    ]
    return [{"series": s, "values": f"0+{_fmt(v)}x{minutes}"} for s, v in series]


def _latency_series(slow_ratio, per_minute, minutes, threshold, le_text):
    fast = per_minute * (1 - slow_ratio)
    name = "http_server_request_duration_seconds"
    smaller = [b for b in DEFAULT_BUCKETS if b < threshold]
    lower = max(smaller) if smaller else None
    ok = _http("200")
    cancelled = _http("499", "cancelled")
    series = [
        (_series(name + "_count", ok), per_minute),
        (_series(name + "_bucket", {**ok, "le": le_text}), fast),
        (_series(name + "_bucket", {**ok, "le": "+Inf"}), per_minute),
        # Cancelled requests are slow by nature (the client gave up): they must not count.
        (_series(name + "_count", cancelled), per_minute * 3),
        (_series(name + "_bucket", {**cancelled, "le": le_text}), 0),
        (_series(name + "_bucket", {**cancelled, "le": "+Inf"}), per_minute * 3),
    ]
    if lower is not None:
        # A smaller bucket the threshold's `le` matcher must not pick up as well.
        series.append((_series(name + "_bucket", {**ok, "le": _fmt(lower)}), fast * 0.5))
    return [{"series": s, "values": f"0+{_fmt(v)}x{minutes}"} for s, v in series]


def slo_tests(cfg):
    alerts = burn_rate_alerts(cfg)
    pairs = cfg["burn_rate"]
    factors = sorted(b["factor"] for b in pairs)
    eval_minutes = sorted({_minutes(b["for"]) + 10 for b in pairs})
    horizon = max(eval_minutes) + 10
    min_rate = _rate_literal(cfg["traffic"]["min_requests_per_second"])
    threshold = float(cfg["latency"]["threshold_seconds"])
    slos = [
        ("Availability", 1 - cfg["availability"]["objective"],
         lambda r, pm, prom3=False: _availability_series(r, pm, horizon)),
        ("Latency", 1 - cfg["latency"]["objective"],
         # Prometheus 2 writes le="1", Prometheus 3 le="1.0": the firing tests use the first
         # spelling, the healthy test the second (it would fire if the matcher missed it).
         lambda r, pm, prom3=False: _latency_series(
             r, pm, horizon, threshold, repr(float(threshold)) if prom3 else _fmt(threshold))),
    ]
    tests = []
    for title, budget, make_series in slos:
        mine = [a for a in alerts if a["alert"].startswith(title)]

        def expect(ratio, at_minute):
            cases = []
            for a, b in zip(mine, pairs):
                # The condition holds from the first evaluation with two samples (1m).
                fires = ratio > b["factor"] * budget and at_minute - 1 >= _minutes(b["for"])
                exp = []
                if fires:
                    exp = [{
                        "exp_labels": {"job": JOB, **a["labels"]},
                        "exp_annotations": {k: _render(v, ratio) if k != "runbook_url" else v
                                            for k, v in a["annotations"].items()},
                    }]
                cases.append({"eval_time": f"{at_minute}m", "alertname": a["alert"], "exp_alerts": exp})
            return cases

        for b in sorted(pairs, key=lambda p: p["factor"]):
            higher = [f for f in factors if f > b["factor"]]
            upper = higher[0] if higher else b["factor"] * 2
            low, high = b["factor"] * budget, min(upper * budget, 1.0)
            ratio = _two_digits(math.sqrt(low * high))
            if not low < ratio < high:
                raise SystemExit(f"no bad ratio between {low} and {high} to test {title} {b['long']}/{b['short']}")
            at = _minutes(b["for"]) + 10
            tests.append({
                "name": f"{title.lower()}: {_fmt(ratio * 100)}% bad for {at}m fires {b['long']}/{b['short']} ({_fmt(b['factor'])}x)",
                "interval": "1m",
                "input_series": make_series(ratio, REQUESTS_PER_MINUTE),
                "alert_rule_test": expect(ratio, at),
            })
        healthy = _two_digits(factors[0] * budget * 0.5)
        tests.append({
            "name": f"{title.lower()}: healthy traffic ({_fmt(healthy * 100)}% bad) stays silent",
            "interval": "1m",
            "input_series": make_series(healthy, REQUESTS_PER_MINUTE, True),
            "alert_rule_test": [c for m in eval_minutes for c in expect(healthy, m)],
        })
        low = min_rate * 60 * 0.5
        tests.append({
            "name": f"{title.lower()}: every request bad but below {_fmt(min_rate * 60)} request/min stays silent",
            "interval": "1m",
            "input_series": [s for s in make_series(1.0, low) if "cancelled" not in s["series"]],
            "alert_rule_test": [{"eval_time": f"{m}m", "alertname": a["alert"], "exp_alerts": []}
                                for m in eval_minutes for a in mine],
        })
        tests.append({
            "name": f"{title.lower()}: no request metrics at all stays silent",
            "interval": "1m",
            "input_series": [{"series": f'up{{job="{JOB}",instance="{INSTANCE}"}}', "values": f"1x{horizon}"}],
            "alert_rule_test": [{"eval_time": f"{m}m", "alertname": a["alert"], "exp_alerts": []}
                                for m in eval_minutes for a in mine],
        })
    # The bucket check belongs to the latency SLO: silent whenever the latency SLI has its
    # bucket (healthy and low traffic, both `le` spellings) and when there is no data at all.
    bucket_alert = latency_bucket_alert(cfg)["alert"]
    for t in tests:
        if t["name"].startswith("latency: ") and "fires" not in t["name"]:
            t["alert_rule_test"] += [{"eval_time": f"{m}m", "alertname": bucket_alert, "exp_alerts": []}
                                     for m in eval_minutes]
    tests.append(_bucket_missing_test(cfg, horizon))
    return {
        "rule_files": ["../../alerts/slo.rules.yml"],
        "evaluation_interval": "1m",
        # Recording rules first, as a real Prometheus would have them from the previous round;
        # without an order promtool evaluates groups in random order and the test flakes.
        "group_eval_order": [g["name"] for g in slo_groups(cfg)],
        "tests": tests,
    }


def _bucket_missing_test(cfg, horizon):
    """An instance whose buckets lack the threshold warns; its neighbour with the bucket does
    not. The bucketless instance has buckets on both sides of the threshold, so a matcher that
    picked up a neighbouring boundary would hide it."""
    rule = latency_bucket_alert(cfg)
    threshold = float(cfg["latency"]["threshold_seconds"])
    name = "http_server_request_duration_seconds"
    below = max(b for b in DEFAULT_BUCKETS if b < threshold) if threshold > DEFAULT_BUCKETS[0] else None
    above = min(b for b in DEFAULT_BUCKETS if b > threshold)
    coarse, fine = "10.0.0.2:9464", INSTANCE
    series = []
    for instance, bounds in [(coarse, [b for b in (below, above) if b is not None]),
                             (fine, [threshold])]:
        labels = {**_http("200"), "instance": instance}
        series.append((_series(name + "_count", labels), 100))
        for b in bounds:
            series.append((_series(name + "_bucket", {**labels, "le": _fmt(b)}), 90))
        series.append((_series(name + "_bucket", {**labels, "le": "+Inf"}), 100))
    minutes = _minutes(rule["for"])
    fired = {
        "exp_labels": {"job": JOB, "instance": coarse, **rule["labels"]},
        "exp_annotations": {k: _render(v, 0, coarse) if k != "runbook_url" else v
                            for k, v in rule["annotations"].items()},
    }
    return {
        "name": f"latency: an instance without the {_fmt(threshold)}s bucket warns, its neighbour with it does not",
        "interval": "1m",
        "input_series": [{"series": s, "values": f"0+{_fmt(v)}x{horizon}"} for s, v in series],
        "alert_rule_test": [
            {"eval_time": f"{minutes - 5}m", "alertname": rule["alert"], "exp_alerts": []},
            {"eval_time": f"{minutes + 5}m", "alertname": rule["alert"], "exp_alerts": [fired]},
        ],
    }
