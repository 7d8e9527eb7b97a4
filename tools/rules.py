"""Prometheus recording and alert rules for services that use tower-observability.

Every rule is built from the metric contract in src/metrics/names.rs and the targets in
tools/slo.toml. Recording rules are named `level:metric:operation`; alerts are CamelCase and
carry `severity`, `summary`, `description` and `runbook_url`.
"""

import contract

# The crate's default histogram buckets, read from src/metrics/mod.rs: a latency threshold
# must be one of them.
DEFAULT_BUCKETS = [int(b) if b == int(b) else b for b in contract.DEFAULT_DURATION_BUCKETS]

DURATION = contract.NAMES["HTTP_SERVER_REQUEST_DURATION"]
# Client cancellations (499) are neither good nor bad: the client left, the server did not fail.
NOT_CANCELLED = 'error_type!="cancelled"'
SERVER_ERROR = 'error_type!="",error_type!="cancelled"'
# A series only a process running tower-observability exposes, registered at start-up in every
# build (value 0 until a panic is caught). `target_info` is no such marker: every OpenTelemetry
# SDK and the OpenTelemetry Collector expose it too. Service-down and saturation alerts and the
# dashboards' `job`/`instance` variables select the crate's services by this series.
CRATE_MARKER = contract.NAMES["PANICS"]


def num(value):
    """A number as a short, stable literal: 0.001 rather than 0.0010000000000000009."""
    text = "%.10g" % value
    return text


def pct(ratio):
    return num(ratio * 100) + "%"


def le_regex(threshold):
    """A regex on `le` that survives Prometheus 3 normalising `le="1"` to `le="1.0"`."""
    if float(threshold) not in [float(b) for b in DEFAULT_BUCKETS]:
        raise SystemExit(
            f"latency threshold {threshold} is not a bucket boundary of the crate's histogram: "
            f"pick one of {DEFAULT_BUCKETS}"
        )
    text = repr(float(threshold))
    if text.endswith(".0"):
        return text[:-2] + "(\\\\.0*)?"
    return text.replace(".", "\\\\.") + "0*"


def duration_text(seconds):
    return f"{num(seconds * 1000)}ms" if seconds < 1 else f"{num(seconds)}s"


def runbook(cfg, alert):
    return f"{cfg['runbook_url']}#{alert.lower()}"


def alert(cfg, name, expr, severity, summary, description, for_=None, extra_labels=None):
    rule = {"alert": name, "expr": expr + "\n"}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, **(extra_labels or {})}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": runbook(cfg, name),
    }
    return rule


def record(name, expr):
    return {"record": name, "expr": expr + "\n"}


def _sli_recordings(cfg):
    le = le_regex(cfg["latency"]["threshold_seconds"])
    rules = []
    for w in contract.sli_windows(cfg):
        requests = f"job:http_server_requests:rate{w}"
        errors = f"job:http_server_request_errors:rate{w}"
        fast = f"job:http_server_requests_fast:rate{w}"
        rules += [
            record(requests, f"sum by (job) (rate({DURATION}_count{{{NOT_CANCELLED}}}[{w}]))"),
            # `or 0 * requests` so a service without a single error records 0, not nothing.
            record(errors, f"sum by (job) (rate({DURATION}_count{{{SERVER_ERROR}}}[{w}]))\nor\n0 * {requests}"),
            record(f"job:http_server_request_errors:ratio_rate{w}", f"{errors}\n/\n{requests}"),
            record(fast, f'sum by (job) (rate({DURATION}_bucket{{le=~"{le}",{NOT_CANCELLED}}}[{w}]))'),
            record(f"job:http_server_requests_slow:ratio_rate{w}", f"1 - {fast}\n/\n{requests}"),
        ]
    return rules


def burn_rate_alerts(cfg):
    min_rate = cfg["traffic"]["min_requests_per_second"]
    period = cfg["availability"]["period_days"]
    slos = [
        ("Availability", "availability", cfg["availability"]["objective"],
         "job:http_server_request_errors:ratio_rate",
         "failed"),
        ("Latency", "latency", cfg["latency"]["objective"],
         "job:http_server_requests_slow:ratio_rate",
         f"took longer than {duration_text(cfg['latency']['threshold_seconds'])}"),
    ]
    rules = []
    for title, slo, objective, ratio, what in slos:
        budget = 1 - objective
        for b in cfg["burn_rate"]:
            long, short, factor = b["long"], b["short"], b["factor"]
            if factor * budget >= 1:
                raise SystemExit(f"{slo}: burn rate {factor}x of a {pct(budget)} budget is 100% bad or more: it can never fire")
            threshold = f"({num(factor)} * {num(budget)})"
            name = f"{title}BudgetBurn{long}{short}"
            expr = (
                f"{ratio}{long} > {threshold}\n"
                f"and on (job)\n{ratio}{short} > {threshold}\n"
                f"and on (job)\njob:http_server_requests:rate{long} >= {min_rate}\n"
                f"and on (job)\njob:http_server_requests:rate{short} >= {min_rate}"
            )
            days_left = num(round(period / factor, 1))
            rules.append(alert(
                cfg, name, expr, b["severity"],
                summary=f"{{{{ $labels.job }}}} is burning its {slo} error budget {num(factor)}x too fast",
                description=(
                    f"{{{{ $value | humanizePercentage }}}} of {{{{ $labels.job }}}} requests {what} "
                    f"over the last {long}, and more than {pct(factor * budget)} over the last {short} "
                    f"(objective {pct(objective)} over {period}d). At this rate the {period}-day "
                    f"error budget lasts {days_left} days."
                ),
                for_=b["for"],
                extra_labels={"slo": slo},
            ))
    return rules


def latency_bucket_alert(cfg):
    """The latency SLI reads one bucket: without it the SLI, its burn-rate alerts and the SLO
    dashboard would go quiet (no bucket anywhere) or count every request as slow (some
    instances without it). Say so instead, per instance."""
    threshold = cfg["latency"]["threshold_seconds"]
    le = le_regex(threshold)
    text = duration_text(threshold)
    return alert(
        cfg, "LatencySLIBucketMissing",
        (
            f"count by (job, instance) ({DURATION}_count)\n"
            f"unless on (job, instance)\n"
            f'count by (job, instance) ({DURATION}_bucket{{le=~"{le}"}})'
        ),
        "warning",
        summary="{{ $labels.instance }} of {{ $labels.job }} has no latency bucket at the SLO threshold",
        description=(
            "{{ $labels.instance }} ({{ $labels.job }}) records requests but exposes no "
            f"{DURATION}_bucket with le={num(threshold)}, the latency SLO threshold of {text}: "
            "the latency SLI cannot be computed from this instance, so its burn-rate alerts "
            "are blind (no instance has the bucket) or count its requests as slow (some have it). "
            f"Add {num(threshold)} to the duration buckets or pick a threshold among them."
        ),
        for_="15m",
        extra_labels={"slo": "latency"},
    )


def _new_or_increase(metric, window):
    # A counter the crate creates on its first increment appears with value >= 1 and no
    # earlier sample, which increase() cannot see: count a series that is new in the window
    # at its full value, every other one by increase().
    return (
        f"sum by (job) (\n"
        f"  ({metric} unless {metric} offset {window}) * 1\n"
        f"  or\n"
        f"  increase({metric}[{window}])\n"
        f")"
    )


def _dropped_ratio(dropped, delivered, window, threshold, min_rate):
    d = f"sum by (job) (rate({dropped}[{window}]))"
    ok = f"sum by (job) (rate({delivered}[{window}]))"
    # The delivered counter may not exist yet (everything dropped): count it as 0 then.
    total = f"({d} + ({ok} or 0 * {d}))"
    # Like the SLIs, a ratio needs volume: one dropped event and none sent is 100%, but says
    # nothing. Below `min_rate` events per second (dropped + delivered) it stays silent.
    return f"{d}\n/\n{total}\n> {threshold}\nand on (job)\n{total} >= {min_rate}"


def service_alerts(cfg):
    sat, tel, grpc = cfg["saturation"], cfg["telemetry"], cfg["grpc"]
    # Only targets that exposed the crate's marker within a day: not every target with
    # target_info (OpenTelemetry SDKs, the Collector) and not node exporters or databases.
    crate = f"and on (job, instance)\npresent_over_time({CRATE_MARKER}[1d])"
    min_rate = cfg["traffic"]["min_requests_per_second"]
    min_events = tel["min_events_per_second"]
    service = [
        alert(cfg, "ServiceDown",
              f"count by (job) (present_over_time({CRATE_MARKER}[1d]))\nunless on (job)\n(up == 1)",
              "critical",
              summary="{{ $labels.job }} has no instance up",
              description=(
                  "Prometheus has not scraped any instance of {{ $labels.job }} for 5 minutes, "
                  "though {{ $value }} of its instances exposed tower-observability metrics "
                  "within the last day: the service is down or has vanished from service discovery."
              ),
              for_="5m"),
        alert(cfg, "ServiceInstanceDown",
              f"(up == 0)\n{crate}",
              "warning",
              summary="{{ $labels.instance }} of {{ $labels.job }} is down",
              description=(
                  "Prometheus has failed to scrape {{ $labels.instance }} ({{ $labels.job }}) "
                  "for 5 minutes; the remaining instances carry its traffic."
              ),
              for_="5m"),
    ]
    saturation = [
        alert(cfg, "FileDescriptorsNearLimit",
              f"process_open_fds / process_max_fds > {num(sat['fds_warning_ratio'])}\n{crate}",
              "warning",
              summary="{{ $labels.instance }} of {{ $labels.job }} uses {{ $value | humanizePercentage }} of its file descriptors",
              description=(
                  "{{ $labels.instance }} ({{ $labels.job }}) has {{ $value | humanizePercentage }} "
                  f"of its file descriptor limit open (warning above {pct(sat['fds_warning_ratio'])}); "
                  "at the limit it can no longer accept connections or open files."
              ),
              for_="15m"),
        alert(cfg, "FileDescriptorsExhausted",
              f"process_open_fds / process_max_fds > {num(sat['fds_critical_ratio'])}\n{crate}",
              "critical",
              summary="{{ $labels.instance }} of {{ $labels.job }} is about to run out of file descriptors",
              description=(
                  "{{ $labels.instance }} ({{ $labels.job }}) has {{ $value | humanizePercentage }} "
                  f"of its file descriptor limit open (critical above {pct(sat['fds_critical_ratio'])}); "
                  "new connections are about to be refused."
              ),
              for_="5m"),
        alert(cfg, "MemoryGrowing",
              (
                  f"process_resident_memory_bytes\n"
                  f"  > {num(sat['memory_growth_factor'])} * min_over_time(process_resident_memory_bytes[6h])\n"
                  f"and deriv(process_resident_memory_bytes[1h]) > 0\n"
                  f"and (time() - process_start_time_seconds) > 6 * 3600\n{crate}"
              ),
              "warning",
              summary="{{ $labels.instance }} of {{ $labels.job }} keeps growing its memory",
              description=(
                  "Resident memory of {{ $labels.instance }} ({{ $labels.job }}) is "
                  "{{ $value | humanize1024 }}B, more than "
                  f"{num(sat['memory_growth_factor'])}x its lowest in the last 6h and still rising: "
                  "a leak or an unbounded cache."
              ),
              for_="1h"),
    ]
    telemetry = [
        alert(cfg, "SpansDropped",
              _dropped_ratio(contract.NAMES["SPANS_DROPPED"],
                             contract.NAMES["SPANS_EXPORTED"], "15m",
                             num(tel["dropped_ratio"]), min_events),
              "warning",
              summary="{{ $labels.job }} drops {{ $value | humanizePercentage }} of its spans",
              description=(
                  "{{ $labels.job }} dropped {{ $value | humanizePercentage }} of its spans over "
                  f"the last 15m (threshold {pct(tel['dropped_ratio'])}): the OTLP export queue is "
                  "full or the collector is failing (the reason label of "
                  "tower_observability_spans_dropped_total says which), so traces have gaps."
              ),
              for_="15m"),
        alert(cfg, "SentryEventsDropped",
              _dropped_ratio(contract.NAMES["SENTRY_EVENTS_DROPPED"],
                             contract.NAMES["SENTRY_EVENTS_SENT"], "15m",
                             num(tel["dropped_ratio"]), min_events),
              "warning",
              summary="{{ $labels.job }} drops {{ $value | humanizePercentage }} of its Sentry events",
              description=(
                  "{{ $labels.job }} could not send {{ $value | humanizePercentage }} of its error "
                  f"events to Sentry over the last 15m (threshold {pct(tel['dropped_ratio'])}): "
                  "rate limited, queue full or Sentry failing (the reason label says which), so "
                  "errors go unreported."
              ),
              for_="15m"),
        alert(cfg, "MetricExportsFailing",
              (
                  f"sum by (job) (increase({contract.NAMES['METRIC_EXPORTS_FAILED']}[30m])) > 0\n"
                  f"unless on (job)\n"
                  f"sum by (job) (increase({contract.NAMES['METRIC_EXPORTS']}[30m])) > 0"
              ),
              "warning",
              summary="{{ $labels.job }} has pushed no metrics over OTLP for 30 minutes",
              description=(
                  "Every OTLP metrics export of {{ $labels.job }} failed over the last 30m "
                  "({{ $value | humanize }} failures, none taken): the collector is down, refuses "
                  "or hangs, so the pipeline fed by the push (not this scrape) has a gap."
              )),
        alert(cfg, "RouteCardinalityOverflow",
              _new_or_increase(contract.NAMES["ROUTES_OVERFLOWED"], "15m") + "\n> 0",
              "warning",
              summary="{{ $labels.job }} records requests under http_route=\"overflow\"",
              description=(
                  "{{ $value | humanize }} requests to {{ $labels.job }} in the last 15m were "
                  "recorded under http_route=\"overflow\" because the distinct-route cap was "
                  "reached: per-route dashboards and alerts no longer see them."
              )),
        alert(cfg, "HandlerPanics",
              _new_or_increase(CRATE_MARKER, "15m") + "\n> 0",
              "warning",
              summary="{{ $labels.job }} handlers panicked",
              description=(
                  "{{ $value | humanize }} panics were caught in {{ $labels.job }} handlers or "
                  "response bodies in the last 15m; each became a 500 for its client."
              )),
        alert(cfg, "CorsRefusalsHigh",
              (
                  "sum by (job) (rate(tower_observability_cors_refused_total[15m]))\n/\n"
                  f"sum by (job) (rate({DURATION}_count[15m]))\n> {num(tel['cors_refused_ratio'])}\n"
                  f"and on (job)\nsum by (job) (rate(tower_observability_cors_refused_total[15m])) >= {min_rate}"
              ),
              "info",
              summary="{{ $labels.job }} refuses many cross-origin requests",
              description=(
                  "CORS refusals at {{ $labels.job }} amount to {{ $value | humanizePercentage }} "
                  f"of its requests over the last 15m (threshold {pct(tel['cors_refused_ratio'])}): "
                  "a front end on an origin missing from the allowlist, or a probe."
              ),
              for_="15m"),
    ]
    rl = cfg["rate_limit"]
    limited = contract.NAMES["RATE_LIMITED"]
    fallbacks = contract.NAMES["RATE_LIMIT_FALLBACKS"]
    rate_limit = [
        alert(cfg, "RateLimitRefusalsHigh",
              (
                  f"sum by (job) (rate({limited}{{mode=\"enforce\"}}[15m]))\n/\n"
                  f"sum by (job) (rate({DURATION}_count[15m]))\n> {num(rl['refused_ratio'])}\n"
                  f"and on (job)\nsum by (job) (rate({limited}{{mode=\"enforce\"}}[15m])) >= {min_rate}"
              ),
              "warning",
              summary="{{ $labels.job }} refuses {{ $value | humanizePercentage }} of its requests for their rate limits",
              description=(
                  "{{ $labels.job }} answered {{ $value | humanizePercentage }} of its requests with "
                  f"429 Too Many Requests over the last 15m (threshold {pct(rl['refused_ratio'])}): "
                  "abuse, or a quota too tight for real traffic."
              ),
              for_="15m"),
        alert(cfg, "RateLimitBackendFallingBack",
              f"sum by (job, fallback) (rate({fallbacks}[5m])) > 0",
              "warning",
              summary="{{ $labels.job }} decides rate limits without Redis (fallback {{ $labels.fallback }})",
              description=(
                  "{{ $labels.job }} made {{ $value | humanize }} rate-limit decisions per second "
                  "with its fallback over the last 5m because Redis failed, timed out or its "
                  "circuit breaker is open. Fallback {{ $labels.fallback }}: open admits every "
                  "request, closed refuses every one with a 503, local limits each replica alone."
              ),
              for_="5m"),
    ]
    calls = "rpc_server_call_duration_seconds_count"
    # As for HTTP: calls the client cancelled are neither faults nor calls that count; the
    # gRPC dashboard divides by the same non-cancelled calls.
    served = f"sum by (job, rpc_method) (rate({calls}{{{NOT_CANCELLED}}}[10m]))"
    grpc_rules = [
        alert(cfg, "GrpcServerErrorRatioHigh",
              (
                  f"sum by (job, rpc_method) (rate({calls}{{{SERVER_ERROR}}}[10m]))\n/\n"
                  f"{served}\n> {num(grpc['error_ratio'])}\n"
                  f"and on (job, rpc_method)\n{served} >= {min_rate}"
              ),
              "warning",
              summary="{{ $labels.rpc_method }} on {{ $labels.job }} fails {{ $value | humanizePercentage }} of calls",
              description=(
                  "{{ $value | humanizePercentage }} of gRPC calls to {{ $labels.rpc_method }} on "
                  "{{ $labels.job }} ended in a server-fault status (UNKNOWN, DEADLINE_EXCEEDED, "
                  "UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS) over the last 10m, calls the "
                  f"client cancelled left out (threshold {pct(grpc['error_ratio'])})."
              ),
              for_="10m"),
    ]
    return [
        {"name": "tower-observability-service", "rules": service},
        {"name": "tower-observability-saturation", "rules": saturation},
        {"name": "tower-observability-telemetry", "rules": telemetry},
        {"name": "tower-observability-grpc", "rules": grpc_rules},
        {"name": "tower-observability-rate-limit", "rules": rate_limit},
    ]


def slo_groups(cfg):
    # One group: rules run in order, so each ratio reads the rates recorded just before it.
    return [
        {"name": "tower-observability-sli", "rules": _sli_recordings(cfg)},
        {"name": "tower-observability-slo-alerts",
         "rules": burn_rate_alerts(cfg) + [latency_bucket_alert(cfg)]},
    ]
