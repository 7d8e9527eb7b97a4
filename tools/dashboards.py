"""Grafana dashboards (classic JSON model) for services that use tower-observability.

Every dashboard: a fixed uid, `__inputs` for the import UI, a `datasource` variable that every
panel and target uses as `${datasource}` (file provisioning does not resolve `__inputs`),
`job`/`instance` multi-select variables with allValue `.+`, `$__rate_interval` in every rate,
and a unit and a one-line description on every panel.

Latency panels show exemplars (the trace of a request kept in the bucket it fell into, from the
OpenMetrics exposition) and link each one to its trace through a second data-source variable,
`tracing` (Tempo by default; Jaeger by changing its type): no import input is asked for it, so
a Grafana without a tracing backend imports the dashboards all the same.

The import input reaches the panels through the `datasource` variable: its current value is
`${DS_PROMETHEUS}`, which Grafana's import replaces (in every string of the JSON) with the uid
of the data source picked in the import form, and the variable then selects that data source.
Provisioned files keep the placeholder, which matches no data source, so Grafana falls back:
to the default data source by the current text `default` (Grafana 10's variables) or to the
first Prometheus data source (Grafana 11's scenes). No panel names the placeholder itself.
"""

import json
from urllib.parse import quote

import contract
from rules import CRATE_MARKER, SERVER_ERROR, NOT_CANCELLED, latency_bucket_alert, le_regex, num, pct, duration_text

DS = {"type": "prometheus", "uid": "${datasource}"}
DS_INPUT = "DS_PROMETHEUS"
TAG = "tower-observability"
RI = "$__rate_interval"

# The crate's names, read from src/metrics/names.rs.
DURATION = contract.NAMES["HTTP_SERVER_REQUEST_DURATION"]
REQ_SIZE = contract.NAMES["HTTP_SERVER_REQUEST_BODY_SIZE"]
RESP_SIZE = contract.NAMES["HTTP_SERVER_RESPONSE_BODY_SIZE"]
RPC = contract.NAMES["RPC_SERVER_CALL_DURATION"]


# --------------------------------------------------------------------------- variables

def _datasource_var():
    return {
        "name": "datasource", "label": "Data source", "type": "datasource",
        "query": "prometheus", "hide": 0, "refresh": 1,
        # Import writes the chosen uid here; see the module docstring for provisioning.
        "current": {"selected": True, "text": "default", "value": "${" + DS_INPUT + "}"},
        "regex": "", "options": [], "skipUrlSync": False,
    }


def _tracing_var():
    """The tracing backend exemplars link to: a data source of type `tempo` (change the type
    to `jaeger` for Jaeger); Grafana settles on the first one, as for provisioned copies."""
    return {
        "name": "tracing", "label": "Traces", "type": "datasource",
        "query": "tempo", "hide": 0, "refresh": 1, "current": {},
        "regex": "", "options": [], "skipUrlSync": False,
    }


TRACING_VAR = _tracing_var()


def _trace_link():
    """A data link on the exemplars of a panel: the trace in Explore on the `tracing` data
    source (the trace id is the query both Tempo and Jaeger take)."""
    pane = {"trace": {"datasource": "${tracing}",
                      "queries": [{"refId": "A", "datasource": {"uid": "${tracing}"},
                                   "query": "${__data.fields.trace_id}"}],
                      "range": {"from": "${__from}", "to": "${__to}"}}}
    panes = json.dumps(pane, separators=(",", ":"), sort_keys=True)
    return {"title": "Trace ${__data.fields.trace_id}", "targetBlank": True,
            "url": "/explore?schemaVersion=1&panes=" + quote(panes, safe="${}:,[]")}


def _query_var(name, label, query, multi=True, all_value=".+"):
    var = {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": query, "definition": query, "refresh": 2, "sort": 1,
        "multi": multi, "includeAll": multi, "current": {}, "options": [],
        "hide": 0, "regex": "", "skipUrlSync": False,
    }
    if multi:
        var["allValue"] = all_value
    return var


# Jobs and instances that run the crate: not every target with target_info (OpenTelemetry SDKs
# and the Collector expose it too).
JOB_VAR = _query_var("job", "Job", f"label_values({CRATE_MARKER}, job)")
INSTANCE_VAR = _query_var("instance", "Instance", f'label_values({CRATE_MARKER}{{job=~"$job"}}, instance)')
ROUTES_VAR = _query_var(
    "route", "Route",
    f'label_values({DURATION}_count{{job=~"$job",instance=~"$instance"}}, http_route)')
ROUTE_VAR = _query_var(
    "route", "Route",
    f'label_values({DURATION}_count{{job=~"$job",instance=~"$instance"}}, http_route)', multi=False)
METHOD_VAR = _query_var(
    "method", "gRPC method",
    f'label_values({RPC}_count{{job=~"$job",instance=~"$instance"}}, rpc_method)')


def sel(*extra):
    """A label selector on the dashboard's job and instance, plus `extra` matchers."""
    return "{" + ",".join(['job=~"$job"', 'instance=~"$instance"', *extra]) + "}"


# --------------------------------------------------------------------------- panels

def _target(expr, legend="", ref="A", instant=False, fmt=None, exemplar=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref,
         "range": not instant, "instant": instant}
    if fmt:
        t["format"] = fmt
    if exemplar:
        t["exemplar"] = True
    return t


def _thresholds(*steps):
    out = [{"color": "green", "value": None}]
    for value, color in steps:
        out.append({"color": color, "value": value})
    return {"mode": "absolute", "steps": out}


def timeseries(title, description, unit, targets, w=12, h=8, stack=False, thresholds=None,
               min_zero=True, exemplars=False):
    """A time series panel; with `exemplars`, its queries fetch exemplars too and each links
    to its trace on the `tracing` data source."""
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
              "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    if thresholds:
        custom["thresholdsStyle"] = {"mode": "line"}
    defaults = {"unit": unit, "custom": custom,
                "thresholds": _thresholds(*(thresholds or []))}
    if min_zero:
        defaults["min"] = 0
    if exemplars:
        defaults["links"] = [_trace_link()]
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["mean", "max", "lastNotNull"], "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": _refs(targets, exemplar=exemplars), "_size": (w, h),
    }


def stat(title, description, unit, targets, w=6, h=4, thresholds=None, decimals=None):
    defaults = {"unit": unit, "thresholds": _thresholds(*(thresholds or [])),
                "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto",
                    "justifyMode": "auto", "orientation": "auto"},
        "targets": _refs(targets), "_size": (w, h),
    }


def table(title, description, unit, targets, columns, w=24, h=8, sort_by=None):
    """Instant queries merged into one row per label set; `columns` maps refId -> (name, unit)."""
    overrides = []
    for ref, (name, col_unit) in columns.items():
        overrides.append({
            "matcher": {"id": "byName", "options": f"Value #{ref}" if len(targets) > 1 else "Value"},
            "properties": [{"id": "displayName", "value": name}, {"id": "unit", "value": col_unit}],
        })
    tgts = []
    for ref, t in zip("ABCDEFGH", targets):
        expr, legend = t if isinstance(t, tuple) else (t, "")
        tgts.append(_target(expr, legend, ref, instant=True, fmt="table"))
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return {
        "type": "table", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"align": "auto"}}, "overrides": overrides},
        "options": options,
        "transformations": [{"id": "merge", "options": {}},
                            {"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        "targets": tgts, "_size": (w, h),
    }


def bargauge(title, description, unit, targets, w=12, h=8):
    """Instant queries as horizontal bars, one per series: "top N" lists."""
    tgts = []
    for ref, t in zip("ABCDEFGH", targets):
        expr, legend = t if isinstance(t, tuple) else (t, "")
        tgts.append(_target(expr, legend, ref, instant=True))
    return {
        "type": "bargauge", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit, "min": 0, "thresholds": _thresholds(),
                                     "color": {"mode": "continuous-GrYlRd"}},
                        "overrides": []},
        "options": {"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                    "valueMode": "color", "namePlacement": "left",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": tgts, "_size": (w, h),
    }


def heatmap(title, description, unit, expr, w=24, h=9):
    return {
        "type": "heatmap", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False}}},
                        "overrides": []},
        "options": {"calculate": False, "cellGap": 1,
                    "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5, "fill": "dark-orange", "reverse": False},
                    "yAxis": {"axisPlacement": "left", "unit": unit},
                    "rowsFrame": {"layout": "auto"}, "filterValues": {"le": 1e-9},
                    "tooltip": {"mode": "single", "yHistogram": True}, "legend": {"show": True}},
        "targets": [_target(expr, "{{le}}", "A", fmt="heatmap")], "_size": (w, h),
    }


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def _refs(targets, exemplar=False):
    out = []
    for ref, t in zip("ABCDEFGHIJ", targets):
        expr, legend = t if isinstance(t, tuple) else (t, "")
        out.append(_target(expr, legend, ref, exemplar=exemplar))
    return out


def _layout(panels):
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_size")
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        p["id"] = i
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        row_h = max(row_h, h)
        if x >= 24:
            x, y, row_h = 0, y + row_h, 0
    return panels


def dashboard(uid, title, description, variables, panels, annotations=()):
    return {
        "__inputs": [{"name": DS_INPUT, "label": "Prometheus", "description": "",
                      "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *[{"type": "panel", "id": t, "name": t, "version": ""}
              for t in sorted({p["type"] for p in panels if p["type"] != "row"})],
        ],
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "refresh": "30s",
        "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": True, "includeVars": True,
                   "keepTime": True, "title": "tower-observability", "icon": "external link"}],
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
             "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
             "name": "Annotations & Alerts", "type": "dashboard"},
            *annotations,
        ]},
        "templating": {"list": [_datasource_var(), *variables]},
        "panels": _layout(panels),
    }


RESTARTS = {"name": "Restarts", "datasource": DS, "enable": True, "iconColor": "orange",
            "expr": 'changes(process_start_time_seconds{job=~"$job",instance=~"$instance"}[2m]) > 0',
            "titleFormat": "Restart", "textFormat": "{{instance}} restarted", "step": "1m"}


# --------------------------------------------------------------------------- queries

def rate(metric, *matchers, by=None):
    inner = f"rate({metric}{sel(*matchers)}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def error_ratio(*matchers, by=None, metric=DURATION + "_count"):
    errs = rate(metric, SERVER_ERROR, *matchers, by=by)
    total = rate(metric, NOT_CANCELLED, *matchers, by=by)
    # `or 0 * total`: no error series yet means a ratio of 0, not "no data".
    return f"({errs} or 0 * {total})\n/\n{total}"


def quantile(q, metric, *matchers, by=None):
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{sel(*matchers)}[{RI}])))"


def native_quantile(q, metric, *matchers):
    """A quantile of the native histogram (Prometheus scraping the protobuf format with
    native histograms on): exact to the native bucket, at any latency."""
    return f"histogram_quantile({q}, sum(rate({metric}{sel(*matchers)}[{RI}])))"


# --------------------------------------------------------------------------- dashboards

def overview(cfg):
    budget = round(1 - cfg["availability"]["objective"], 10)
    threshold = cfg["latency"]["threshold_seconds"]
    le_match = f'le=~"{le_regex(threshold)}"'
    route = 'http_route=~"$route"'
    count = DURATION + "_count"
    top_routes = f"topk(20, {rate(count, route, by='http_route')})"
    panels = [
        stat("Request rate", "Requests per second across the selected instances and routes.", "reqps",
             [rate(count, route)], w=4),
        stat("Error ratio", f"Share of requests that were server errors (5xx, panics, gRPC server faults); the SLO allows {pct(budget)}.",
             "percentunit", [error_ratio(route)], w=4, thresholds=[(budget, "red")], decimals=3),
        stat("p99 latency", "99th percentile of request duration, to the last byte of the response body.", "s",
             [quantile(0.99, DURATION, route)], w=4, thresholds=[(threshold, "red")]),
        stat(f"Within {duration_text(threshold)}", f"Share of requests that completed within the latency SLO threshold of {duration_text(threshold)}.",
             "percentunit", [f'sum(rate({DURATION}_bucket{sel(route, le_match, NOT_CANCELLED)}[{RI}]))\n/\n'
                             f"sum(rate({count}{sel(route, NOT_CANCELLED)}[{RI}]))"],
             w=4, decimals=2),
        stat("Active requests", "Requests in flight right now, including responses still streaming.", "short",
             [f"sum(http_server_active_requests{sel()})"], w=4),
        stat("Instances up", "Instances Prometheus scraped successfully on the last attempt.", "short",
             [f"sum(up{sel()})"], w=4),
        timeseries("Request rate by status class", "Requests per second by HTTP status class (2xx, 3xx, 4xx, 5xx).", "reqps",
                   [(f'sum by (status_class) (label_replace(rate({count}{sel(route)}[{RI}]), "status_class", "${{1}}xx", "http_response_status_code", "([1-5]).."))',
                     "{{status_class}}")], stack=True),
        timeseries("Error ratio against the SLO", f"Server-error ratio per job; the line is the {pct(budget)} the availability SLO allows.",
                   "percentunit", [(error_ratio(route, by="job"), "{{job}}")], thresholds=[(budget, "red")]),
        timeseries("Latency percentiles", "p50, p90 and p99 request duration, to the last body byte; dots are exemplars, each a link to its trace.", "s",
                   [(quantile(0.5, DURATION, route), "p50"), (quantile(0.9, DURATION, route), "p90"),
                    (quantile(0.99, DURATION, route), "p99")], thresholds=[(threshold, "red")],
                   exemplars=True),
        timeseries("Active requests by method", "Requests in flight by HTTP method.", "short",
                   [(f"sum by (http_request_method) (http_server_active_requests{sel()})", "{{http_request_method}}")]),
        table("Routes", "The 20 busiest routes: request rate, server-error ratio and p99 latency; sort by any column.", "reqps",
              [(top_routes, ""),
               (f"({error_ratio(route, by='http_route')})\nand on (http_route)\n{top_routes}", ""),
               (f"{quantile(0.99, DURATION, route, by='http_route')}\nand on (http_route)\n{top_routes}", "")],
              {"A": ("Requests/s", "reqps"), "B": ("Error ratio", "percentunit"), "C": ("p99", "s")},
              sort_by="Requests/s"),
        bargauge("Top routes by errors", "The 10 routes with the most server errors per second (5xx, panics, gRPC server faults).", "reqps",
                 [(f"topk(10, {rate(count, route, SERVER_ERROR, by='http_route')})", "{{http_route}}")]),
        bargauge("Top routes by p99 latency", "The 10 routes with the slowest 99th percentile, to the last body byte.", "s",
                 [(f"topk(10, {quantile(0.99, DURATION, route, by='http_route')})", "{{http_route}}")]),
        timeseries("Responses by status code", "Requests per second by exact HTTP status code (499 = client went away).", "reqps",
                   [(rate(count, route, by="http_response_status_code"), "{{http_response_status_code}}")]),
        timeseries("Errors by type", "Errored requests per second by error_type; cancelled (499) is the client leaving and not in the SLO.", "reqps",
                   [(rate(count, route, 'error_type!=""', by="error_type"), "{{error_type}}")]),
        table("Versions and instances", "What is running where, from target_info: service name, version and environment per instance.",
              "none", [(f"max by (job, instance, service_name, service_version, deployment_environment) (target_info{sel()})", "")],
              {"A": ("Up", "none")}),
    ]
    return dashboard("tower-obs-overview", "Service overview (RED)",
                     "Rate, errors and duration of HTTP services instrumented with tower-observability.",
                     [JOB_VAR, INSTANCE_VAR, ROUTES_VAR, TRACING_VAR], panels, [RESTARTS])


def route_detail(cfg):
    threshold = cfg["latency"]["threshold_seconds"]
    r = 'http_route="$route"'
    count = DURATION + "_count"
    panels = [
        stat("Request rate", "Requests per second to this route.", "reqps", [rate(count, r)], w=6),
        stat("Error ratio", "Share of this route's requests that were server errors.", "percentunit",
             [error_ratio(r)], w=6, decimals=3),
        stat("p99 latency", "99th percentile duration of this route, to the last body byte.", "s",
             [quantile(0.99, DURATION, r)], w=6, thresholds=[(threshold, "red")]),
        stat("Mean latency", "Average duration of this route's requests.", "s",
             [f"sum(rate({DURATION}_sum{sel(r)}[{RI}]))\n/\nsum(rate({count}{sel(r)}[{RI}]))"], w=6),
        heatmap("Latency distribution", "Requests per second in each duration bucket of the histogram.", "s",
                f"sum by (le) (rate({DURATION}_bucket{sel(r)}[{RI}]))"),
        timeseries("Latency percentiles", "p50, p90, p99 and p99.9 of this route's duration; dots are exemplars, each a link to its trace.", "s",
                   [(quantile(q, DURATION, r), f"p{num(q * 100)}") for q in (0.5, 0.9, 0.99, 0.999)],
                   thresholds=[(threshold, "red")], exemplars=True),
        timeseries("Latency percentiles (native histograms)", "The same percentiles from the native histogram, exact to 9 %; empty unless Prometheus scrapes native histograms.", "s",
                   [(native_quantile(q, DURATION, r), f"p{num(q * 100)}") for q in (0.5, 0.9, 0.99, 0.999)],
                   thresholds=[(threshold, "red")], exemplars=True),
        timeseries("Rate by status code", "Requests per second to this route by HTTP status code.", "reqps",
                   [(rate(count, r, by="http_response_status_code"), "{{http_response_status_code}}")], stack=True),
        timeseries("Errors by type", "Errored requests per second by error_type (500..599, panic, service_error, body_error, cancelled, gRPC codes).",
                   "reqps", [(rate(count, r, 'error_type!=""', by="error_type"), "{{error_type}}")]),
        timeseries("Rate by method", "Requests per second to this route by HTTP method.", "reqps",
                   [(rate(count, r, by="http_request_method"), "{{http_request_method}}")]),
        timeseries("Request body size", "p50 and p99 of request body bytes read by the service.", "bytes",
                   [(quantile(q, REQ_SIZE, r), f"p{num(q * 100)}") for q in (0.5, 0.99)]),
        timeseries("Response body size", "p50 and p99 of response body bytes sent by the service.", "bytes",
                   [(quantile(q, RESP_SIZE, r), f"p{num(q * 100)}") for q in (0.5, 0.99)]),
        timeseries("Body throughput", "Bytes per second read from requests and written to responses on this route.", "Bps",
                   [(f"sum(rate({REQ_SIZE}_sum{sel(r)}[{RI}]))", "request"),
                    (f"sum(rate({RESP_SIZE}_sum{sel(r)}[{RI}]))", "response")], w=24),
    ]
    return dashboard("tower-obs-route", "Route detail",
                     "Latency distribution, status, errors and body sizes of one route.",
                     [JOB_VAR, INSTANCE_VAR, ROUTE_VAR, TRACING_VAR], panels, [RESTARTS])


def slo(cfg):
    a_obj, l_obj = cfg["availability"]["objective"], cfg["latency"]["objective"]
    a_budget, l_budget = round(1 - a_obj, 10), round(1 - l_obj, 10)
    days = cfg["availability"]["period_days"]
    period = f"{days}d"
    threshold = duration_text(cfg["latency"]["threshold_seconds"])
    j = '{job=~"$job"}'
    errors = f"sum_over_time(job:http_server_request_errors:rate5m{j}[{period}])"
    fast = f"sum_over_time(job:http_server_requests_fast:rate5m{j}[{period}])"
    total = f"sum_over_time(job:http_server_requests:rate5m{j}[{period}])"
    windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    factors = [(b["factor"], "orange" if b["severity"] == "warning" else "red") for b in cfg["burn_rate"]]
    burn_names = "|".join([f"{t}BudgetBurn{b['long']}{b['short']}" for t in ("Availability", "Latency") for b in cfg["burn_rate"]]
                          + [latency_bucket_alert(cfg)["alert"]])
    panels = [
        stat(f"Availability over {period}", f"Share of requests that were not server errors over the SLO period; objective {pct(a_obj)}.",
             "percentunit", [(f"1 - {errors}\n/\n{total}", "{{job}}")], decimals=3,
             thresholds=[]),
        stat("Availability budget left", f"Share of the {period} availability error budget ({pct(a_budget)} of requests) not yet spent.",
             "percentunit", [(f"1 - ({errors}\n/\n{total}) / {num(a_budget)}", "{{job}}")],
             thresholds=[], decimals=1),
        stat(f"Within {threshold} over {period}", f"Share of requests faster than {threshold} over the SLO period; objective {pct(l_obj)}.",
             "percentunit", [(f"{fast}\n/\n{total}", "{{job}}")], decimals=3),
        stat("Latency budget left", f"Share of the {period} latency error budget ({pct(l_budget)} of requests slower than {threshold}) not yet spent.",
             "percentunit", [(f"1 - (1 - {fast}\n/\n{total}) / {num(l_budget)}", "{{job}}")], decimals=1),
        timeseries("Availability burn rate", "How many times faster than sustainable the availability budget is spent, per window; lines mark the alert factors.",
                   "suffix:x", [(f"job:http_server_request_errors:ratio_rate{w}{j} / {num(a_budget)}", f"{{{{job}}}} {w}") for w in windows],
                   thresholds=factors),
        timeseries("Latency burn rate", f"How many times faster than sustainable the latency budget (requests over {threshold}) is spent, per window.",
                   "suffix:x", [(f"job:http_server_requests_slow:ratio_rate{w}{j} / {num(l_budget)}", f"{{{{job}}}} {w}") for w in windows],
                   thresholds=factors),
        timeseries("Availability SLI", f"Share of good requests over 5m and 1h against the {pct(a_obj)} objective.", "percentunit",
                   [(f"1 - job:http_server_request_errors:ratio_rate{w}{j}", f"{{{{job}}}} {w}") for w in ("5m", "1h")],
                   thresholds=[], min_zero=False),
        timeseries("Latency SLI", f"Share of requests within {threshold} over 5m and 1h against the {pct(l_obj)} objective.", "percentunit",
                   [(f"1 - job:http_server_requests_slow:ratio_rate{w}{j}", f"{{{{job}}}} {w}") for w in ("5m", "1h")],
                   thresholds=[], min_zero=False),
        table("SLO alerts", "Burn-rate alerts (and a missing latency bucket) pending or firing now for the selected jobs.", "none",
              [(f'ALERTS{{alertname=~"{burn_names}",job=~"$job"}}', "")], {"A": ("Active", "none")}, w=12),
        timeseries("Error ratio by instance", "Server-error ratio per instance: one bad instance or all of them?", "percentunit",
                   [(error_ratio(by="instance"), "{{instance}}")], w=12),
    ]
    return dashboard("tower-obs-slo", "SLO and error budget",
                     f"Availability ({pct(a_obj)}) and latency ({pct(l_obj)} within {threshold}) SLOs over {period}: SLIs, budget left, burn rates.",
                     [JOB_VAR, INSTANCE_VAR], panels)


def saturation(cfg):
    sat = cfg["saturation"]
    panels = [
        timeseries("CPU", "CPU time per second per instance (1.0 = one core busy).", "percentunit",
                   [(f"sum by (instance) (rate(process_cpu_seconds_total{sel()}[{RI}]))", "{{instance}}")]),
        timeseries("Resident memory", "Resident set size per instance.", "bytes",
                   [(f"sum by (instance) (process_resident_memory_bytes{sel()})", "{{instance}}")]),
        timeseries("Open file descriptors", "Open file descriptors per instance, and the limit.", "short",
                   [(f"sum by (instance) (process_open_fds{sel()})", "{{instance}} open"),
                    (f"sum by (instance) (process_max_fds{sel()})", "{{instance}} limit")], min_zero=True),
        timeseries("File descriptors used", "Open file descriptors as a share of the limit; the alerts fire at the lines.", "percentunit",
                   [(f"sum by (instance) (process_open_fds{sel()})\n/\nsum by (instance) (process_max_fds{sel()})", "{{instance}}")],
                   thresholds=[(sat["fds_warning_ratio"], "orange"), (sat["fds_critical_ratio"], "red")]),
        timeseries("In-flight requests", "Requests in flight per instance, including streaming responses.", "short",
                   [(f"sum by (instance) (http_server_active_requests{sel()})", "{{instance}}")]),
        timeseries("Threads", "OS threads per instance.", "short",
                   [(f"sum by (instance) (process_threads{sel()})", "{{instance}}")]),
        timeseries("Memory growth", "Rate of change of resident memory over the last hour; steadily above zero hints at a leak.", "Bps",
                   [(f"sum by (instance) (deriv(process_resident_memory_bytes{sel()}[1h]))", "{{instance}}")], min_zero=False),
        timeseries("Virtual memory", "Virtual memory size per instance.", "bytes",
                   [(f"sum by (instance) (process_virtual_memory_bytes{sel()})", "{{instance}}")]),
        stat("Restarts (1h)", "Process restarts per instance in the last hour.", "short",
             [(f"sum by (instance) (changes(process_start_time_seconds{sel()}[1h]))", "{{instance}}")],
             w=12, thresholds=[(1, "orange")]),
        stat("Uptime", "Time since each instance's process started.", "s",
             [(f"time() - max by (instance) (process_start_time_seconds{sel()})", "{{instance}}")], w=12),
    ]
    return dashboard("tower-obs-saturation", "Saturation",
                     "CPU, memory, file descriptors, threads and in-flight requests of each instance.",
                     [JOB_VAR, INSTANCE_VAR], panels, [RESTARTS])


# What the `reason` label of the drop counters says (src/metrics/names.rs has the list; the
# SpansDropped runbook explains each). A panel description is one line of 200 characters.
DROPPED_HELP = (
    "{what} per second, and dropped by reason: backoff = the endpoint failed, nothing is {made} "
    "until the next try; queue_full, rate_limited, refused, timeout, rejected, shutdown."
)


def telemetry(cfg):
    tel = cfg["telemetry"]
    count = DURATION + "_count"
    p = "tower_observability_"
    panels = [
        timeseries("Spans exported and dropped", DROPPED_HELP.format(what="Spans exported", made="captured"), "cps",
                   [(f"sum by (job) (rate({p}spans_exported_total{sel()}[{RI}]))", "{{job}} exported"),
                    (f"sum by (job, reason) (rate({p}spans_dropped_total{sel()}[{RI}]))", "{{job}} dropped: {{reason}}")]),
        timeseries("Span drop ratio", "Share of spans dropped; the SpansDropped alert fires above the line.", "percentunit",
                   [(f"sum by (job) (rate({p}spans_dropped_total{sel()}[{RI}]))\n/\n"
                     f"(sum by (job) (rate({p}spans_dropped_total{sel()}[{RI}])) + sum by (job) (rate({p}spans_exported_total{sel()}[{RI}])))",
                     "{{job}}")], thresholds=[(tel["dropped_ratio"], "red")]),
        timeseries("Sentry events sent and dropped", DROPPED_HELP.format(what="Error events sent to Sentry", made="built"), "cps",
                   [(f"sum by (job) (rate({p}sentry_events_sent_total{sel()}[{RI}]))", "{{job}} sent"),
                    (f"sum by (job, reason) (rate({p}sentry_events_dropped_total{sel()}[{RI}]))", "{{job}} dropped: {{reason}}")]),
        timeseries("Panics", "Panics per second caught in handlers or response bodies (each answered with a 500).", "cps",
                   [(f"sum by (job) (rate({p}panics_total{sel()}[{RI}]))", "{{job}}")]),
        stat("Panics since start", "Panics caught per instance since its process started.", "short",
             [(f"sum by (instance) ({p}panics_total{sel()})", "{{instance}}")], w=12, thresholds=[(1, "red")]),
        stat("Distinct routes", "Distinct http_route values per job; the crate folds routes beyond its cap (default 1000) into overflow.", "short",
             [(f"count by (job) (count by (job, http_route) ({count}{sel()}))", "{{job}}")], w=12),
        timeseries("Requests folded into overflow", "Requests per second recorded under http_route=\"overflow\" because the route cap was reached.", "reqps",
                   [(f"sum by (job) (rate({p}routes_overflowed_total{sel()}[{RI}]))", "{{job}}")]),
        timeseries("Unmatched requests", "Requests per second no route matched (recorded as http_route=\"unmatched\"): scanners, stale clients, typos.", "reqps",
                   [(rate(count, 'http_route="unmatched"', by="job"), "{{job}}")]),
        timeseries("CORS refusals", "Cross-origin requests refused per second, by reason (origin, method, headers, private_network).", "cps",
                   [(f"sum by (reason) (rate({p}cors_refused_total{sel()}[{RI}]))", "{{reason}}")]),
        timeseries("Rate-limited requests", "Requests per second over a rate-limit policy's quota, by policy and mode (enforce: refused with a 429; shadow: let through).", "reqps",
                   [(f"sum by (policy, mode) (rate({p}rate_limited_total{sel()}[{RI}]))", "{{policy}} ({{mode}})")]),
        timeseries("Rate-limit backend", "Redis decisions that failed, by reason, and decisions made by the fallback instead (open, closed or local).", "cps",
                   [(f"sum by (reason) (rate({p}rate_limit_backend_errors_total{sel()}[{RI}]))", "error: {{reason}}"),
                    (f"sum by (fallback) (rate({p}rate_limit_fallbacks_total{sel()}[{RI}]))", "fallback: {{fallback}}")]),
        timeseries("Metric exports", "OTLP metrics pushes per second: taken by the collector, and failed (the MetricExportsFailing alert fires when none is taken for 30m).", "ops",
                   [(f"sum(rate({p}metric_exports_total{sel()}[{RI}]))", "taken"),
                    (f"sum(rate({p}metric_exports_failed_total{sel()}[{RI}]))", "failed")]),
        timeseries("Scrape health", "1 when Prometheus scraped the instance successfully, 0 when the scrape failed.", "short",
                   [(f"up{sel()}", "{{instance}}")]),
        timeseries("Scrape duration", "How long Prometheus took to scrape each instance's /metrics.", "s",
                   [(f"scrape_duration_seconds{sel()}", "{{instance}}")]),
        timeseries("Series per scrape", "Samples each /metrics scrape returns: watch for label cardinality growth.", "short",
                   [(f"scrape_samples_scraped{sel()}", "{{instance}}")]),
    ]
    return dashboard("tower-obs-telemetry", "Telemetry health",
                     "The crate watching itself: spans and Sentry events exported or dropped, route overflow, CORS refusals, rate limits, panics, scrapes.",
                     [JOB_VAR, INSTANCE_VAR], panels)


def grpc(cfg):
    m = 'rpc_method=~"$method"'
    count = RPC + "_count"
    err = cfg["grpc"]["error_ratio"]
    panels = [
        stat("Call rate", "gRPC calls per second to the selected methods.", "reqps", [rate(count, m)], w=8),
        stat("Error ratio", "Share of calls, cancelled ones left out, ending in a server fault (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS).",
             "percentunit", [error_ratio(m, metric=count)], w=8, thresholds=[(err, "red")], decimals=3),
        stat("p99 latency", "99th percentile gRPC call duration, to the end of the response stream.", "s",
             [quantile(0.99, RPC, m)], w=8),
        timeseries("Calls by status code", "Calls per second by numeric gRPC status code (0 OK, 5 NOT_FOUND, 14 UNAVAILABLE, ...).", "reqps",
                   [(rate(count, m, by="rpc_grpc_status_code"), "{{rpc_grpc_status_code}}")], stack=True),
        timeseries("Error ratio by method", "Server-fault ratio per method; the GrpcServerErrorRatioHigh alert fires above the line.", "percentunit",
                   [(error_ratio(m, by="rpc_method", metric=count), "{{rpc_method}}")], thresholds=[(err, "red")]),
        timeseries("Latency percentiles", "p50, p90 and p99 call duration; dots are exemplars, each a link to its trace.", "s",
                   [(quantile(q, RPC, m), f"p{num(q * 100)}") for q in (0.5, 0.9, 0.99)], exemplars=True),
        timeseries("Server faults by code", "Calls per second ending in a server fault, by code; cancelled calls are the client's doing and not shown.", "reqps",
                   [(rate(count, m, SERVER_ERROR, by="error_type"), "{{error_type}}")]),
        table("Methods", "Per method: call rate, server-fault ratio and p99 latency.", "reqps",
              [(rate(count, m, by="rpc_method"), ""), (error_ratio(m, by="rpc_method", metric=count), ""),
               (quantile(0.99, RPC, m, by="rpc_method"), "")],
              {"A": ("Calls/s", "reqps"), "B": ("Error ratio", "percentunit"), "C": ("p99", "s")}, sort_by="Calls/s"),
    ]
    return dashboard("tower-obs-grpc", "gRPC",
                     "Calls, status codes, server faults and latency of gRPC services served through tower-observability.",
                     [JOB_VAR, INSTANCE_VAR, METHOD_VAR, TRACING_VAR], panels)


def all_dashboards(cfg):
    return {
        "overview": overview(cfg),
        "route-detail": route_detail(cfg),
        "slo": slo(cfg),
        "saturation": saturation(cfg),
        "telemetry-health": telemetry(cfg),
        "grpc": grpc(cfg),
    }
