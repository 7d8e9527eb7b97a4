//! OTLP/protobuf encoding of the metrics (`ExportMetricsServiceRequest`), for the push
//! ([`push`](super::push)): the whole exposition, named by the OpenTelemetry semantic
//! conventions (`http.server.request.duration`, unit `s`, attributes `http.route`, ...),
//! written straight from the counters into one buffer, as the span encoder does.
//!
//! The duration histograms go as explicit-bucket histograms with their exemplars, or as
//! exponential histograms when native histograms are on; the rest comes from its text
//! rendering (counters become monotonic sums, gauges gauges, `http.server.active_requests`
//! an up-down counter, the application's histograms and summaries their OTLP kinds).
//! `target_info` is not sent: the resource (the spans' own) says the same.
//!
//! Temporality: cumulative (totals since the start), or delta (what changed since the last
//! export the collector took: a failed export leaves the baseline where it was, so its
//! changes come with the next one).
//!
//! Field numbers are those of `opentelemetry/proto/metrics/v1/metrics.proto`; the tests
//! decode the output with the official generated types.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::Ordering;

use super::exemplar::Kept;
use super::exposition::Exposition;
use super::histogram::{Family as OwnFamily, HttpHistograms};
use super::names::{
    HTTP_SERVER_ACTIVE_REQUESTS, LABEL_RPC_METHOD, OTLP_ATTRIBUTES, OTLP_NAMES, TARGET_INFO,
};
use super::native::{NativeView, ZERO_THRESHOLD};
use super::process::ProcessStats;
use super::text_format::{self, Kind};
use crate::wire::{
    close, open, put_bytes, put_double, put_fixed64, put_len, put_sint, put_uint, put_varint,
};

/// How sums and histograms are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Temporality {
    /// Totals since the service started (OpenTelemetry's default).
    #[default]
    Cumulative,
    /// What changed since the last export the collector took.
    Delta,
}

mod field {
    // ExportMetricsServiceRequest, ResourceMetrics, ScopeMetrics
    pub(super) const RESOURCE_METRICS: u8 = 1;
    pub(super) const RESOURCE: u8 = 1;
    pub(super) const SCOPE_METRICS: u8 = 2;
    pub(super) const SCOPE: u8 = 1;
    pub(super) const METRICS: u8 = 2;
    // Metric
    pub(super) const NAME: u8 = 1;
    pub(super) const DESCRIPTION: u8 = 2;
    pub(super) const UNIT: u8 = 3;
    pub(super) const GAUGE: u8 = 5;
    pub(super) const SUM: u8 = 7;
    pub(super) const HISTOGRAM: u8 = 9;
    pub(super) const EXPONENTIAL_HISTOGRAM: u8 = 10;
    pub(super) const SUMMARY: u8 = 11;
    // Gauge, Sum, Histogram, ExponentialHistogram, Summary
    pub(super) const DATA_POINTS: u8 = 1;
    pub(super) const TEMPORALITY: u8 = 2;
    pub(super) const IS_MONOTONIC: u8 = 3;
    // Every data point
    pub(super) const START: u8 = 2;
    pub(super) const TIME: u8 = 3;
    // NumberDataPoint
    pub(super) const NUMBER_ATTRIBUTES: u8 = 7;
    pub(super) const AS_DOUBLE: u8 = 4;
    // HistogramDataPoint
    pub(super) const HISTOGRAM_ATTRIBUTES: u8 = 9;
    pub(super) const COUNT: u8 = 4;
    pub(super) const SUM_VALUE: u8 = 5;
    pub(super) const BUCKET_COUNTS: u8 = 6;
    pub(super) const EXPLICIT_BOUNDS: u8 = 7;
    pub(super) const EXEMPLARS: u8 = 8;
    // ExponentialHistogramDataPoint
    pub(super) const EXPONENTIAL_ATTRIBUTES: u8 = 1;
    pub(super) const SCALE: u8 = 6;
    pub(super) const ZERO_COUNT: u8 = 7;
    pub(super) const POSITIVE: u8 = 8;
    pub(super) const BUCKETS_OFFSET: u8 = 1;
    pub(super) const BUCKETS_COUNTS: u8 = 2;
    pub(super) const EXPONENTIAL_EXEMPLARS: u8 = 11;
    pub(super) const ZERO_THRESHOLD: u8 = 14;
    // SummaryDataPoint
    pub(super) const SUMMARY_ATTRIBUTES: u8 = 7;
    pub(super) const QUANTILE_VALUES: u8 = 6;
    pub(super) const QUANTILE: u8 = 1;
    pub(super) const QUANTILE_VALUE: u8 = 2;
    // Exemplar
    pub(super) const EXEMPLAR_TIME: u8 = 2;
    pub(super) const EXEMPLAR_VALUE: u8 = 3;
    pub(super) const EXEMPLAR_SPAN_ID: u8 = 4;
    pub(super) const EXEMPLAR_TRACE_ID: u8 = 5;
    // KeyValue, AnyValue
    pub(super) const KEY: u8 = 1;
    pub(super) const VALUE: u8 = 2;
    pub(super) const STRING_VALUE: u8 = 1;
    pub(super) const INT_VALUE: u8 = 3;
    // AggregationTemporality
    pub(super) const DELTA: u64 = 1;
    pub(super) const CUMULATIVE: u64 = 2;
}

/// A delta baseline: the values the collector last took, and those of the export in flight.
#[derive(Default)]
struct Baseline {
    taken: Vec<f64>,
    pending: Vec<f64>,
}

/// The native buckets the collector last took (and those in flight), per series.
#[derive(Default, Clone)]
struct NativeBaseline {
    schema: i8,
    zero: u64,
    /// `(key, count)`, keys ascending.
    buckets: Vec<(i32, u64)>,
}

/// The encoder: the resource and scope, made once, and the delta baselines.
pub(crate) struct MetricsEncoder {
    resource: Vec<u8>,
    scope: Vec<u8>,
    temporality: Temporality,
    /// When the cumulative totals started (Unix nanoseconds).
    start: u64,
    /// When the collector last took an export (the start of the next delta).
    last: u64,
    /// The time of the export in flight.
    now: u64,
    baselines: HashMap<u64, Baseline, foldhash::fast::FixedState>,
    native: HashMap<u64, (NativeBaseline, NativeBaseline), foldhash::fast::FixedState>,
    hasher: foldhash::fast::FixedState,
}

impl MetricsEncoder {
    pub(crate) fn new(resource: &[(String, String)], temporality: Temporality, start: u64) -> Self {
        MetricsEncoder {
            resource: crate::trace::protobuf::resource_body(resource),
            scope: crate::trace::protobuf::scope_body(),
            temporality,
            start,
            last: start,
            now: start,
            baselines: HashMap::default(),
            native: HashMap::default(),
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    /// The exposition at `now` (Unix nanoseconds) as an `ExportMetricsServiceRequest`,
    /// after `prefix` zero bytes (room for a transport's framing).
    pub(crate) fn encode(&mut self, exposition: &Exposition, now: u64, prefix: usize) -> Vec<u8> {
        self.now = now;
        super::exemplar::resync_clock();
        let mut out = Vec::with_capacity(prefix + 4096);
        out.resize(prefix, 0);
        let resource_metrics = open(&mut out, field::RESOURCE_METRICS, 4);
        put_bytes(&mut out, field::RESOURCE, &self.resource);
        let scope_metrics = open(&mut out, field::SCOPE_METRICS, 4);
        put_bytes(&mut out, field::SCOPE, &self.scope);
        let (text, histograms) = match exposition {
            Exposition::Own(registry) => {
                (Some(registry.handle.render()), Some(&registry.histograms))
            }
            Exposition::Handle(handle) => (Some(handle.render()), None),
            Exposition::None => (None, None),
        };
        if let Some(text) = &text {
            self.text_families(text, &mut out);
        }
        if let Some(histograms) = histograms {
            self.histograms(histograms, &mut out);
        }
        let mut process = String::new();
        ProcessStats::read().render(&mut process);
        self.text_families(&process, &mut out);
        close(&mut out, scope_metrics);
        close(&mut out, resource_metrics);
        out
    }

    /// The collector took the last export: its values are the next delta's baseline.
    pub(crate) fn taken(&mut self) {
        self.last = self.now;
        for b in self.baselines.values_mut() {
            std::mem::swap(&mut b.taken, &mut b.pending);
        }
        for (taken, pending) in self.native.values_mut() {
            std::mem::swap(taken, pending);
        }
    }

    fn key(&self, name: &str, labels: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        name.hash(&mut h);
        labels.hash(&mut h);
        h.finish()
    }

    /// `values` (cumulative) as this export reports them: unchanged when cumulative, minus
    /// the baseline when delta (all of them again after a reset).
    fn report(&mut self, name: &str, labels: &str, values: &mut [f64]) {
        if self.temporality == Temporality::Cumulative {
            return;
        }
        let key = self.key(name, labels);
        let b = self.baselines.entry(key).or_default();
        b.pending.clear();
        b.pending.extend_from_slice(values);
        let reset =
            b.taken.len() != values.len() || values.iter().zip(&b.taken).any(|(v, t)| v < t);
        if !reset {
            for (v, t) in values.iter_mut().zip(&b.taken) {
                *v -= t;
            }
        }
    }

    fn temporality(&self) -> u64 {
        match self.temporality {
            Temporality::Cumulative => field::CUMULATIVE,
            Temporality::Delta => field::DELTA,
        }
    }

    fn start_time(&self) -> u64 {
        match self.temporality {
            Temporality::Cumulative => self.start,
            Temporality::Delta => self.last,
        }
    }

    fn histograms(&mut self, histograms: &HttpHistograms, out: &mut Vec<u8>) {
        for family in histograms.families() {
            if family.shape.native.is_some() {
                self.exponential(family, out);
            } else {
                self.explicit(family, out);
            }
        }
    }

    /// A family with series, as an explicit-bucket histogram.
    fn explicit(&mut self, family: &OwnFamily, out: &mut Vec<u8>) {
        let series = family.series_list();
        if series.is_empty() {
            return;
        }
        let shape = &*family.shape;
        let buckets = &shape.buckets;
        let (name, unit) = otlp_name(shape.name);
        let metric = metric_head(out, &name, family.help, unit);
        let histogram = open(out, field::HISTOGRAM, 4);
        let mut counts = Vec::new();
        let mut values = Vec::new();
        for s in &series {
            let sum = s.read(&mut counts);
            values.clear();
            values.extend(counts.iter().map(|&c| c as f64));
            values.push(sum as f64 / buckets.per_unit);
            self.report(shape.name, &s.labels, &mut values);
            let (bucket_counts, sum) = values.split_at(counts.len());
            let point = open(out, field::DATA_POINTS, 2);
            attributes(&s.labels, field::HISTOGRAM_ATTRIBUTES, out);
            self.times(out);
            put_fixed64(out, field::COUNT, bucket_counts.iter().sum::<f64>() as u64);
            put_double(out, field::SUM_VALUE, sum[0]);
            put_len(out, field::BUCKET_COUNTS, 8 * bucket_counts.len());
            for c in bucket_counts {
                out.extend_from_slice(&(*c as u64).to_le_bytes());
            }
            put_len(out, field::EXPLICIT_BOUNDS, 8 * buckets.upper.len());
            for b in buckets.upper.iter() {
                out.extend_from_slice(&b.to_le_bytes());
            }
            if shape.exemplars {
                for i in 0..counts.len() {
                    if let Some(kept) = s.exemplar(i).filter(|k| self.is_new(k)) {
                        exemplar(&kept, buckets.per_unit, field::EXEMPLARS, out);
                    }
                }
            }
            close(out, point);
        }
        put_uint(out, field::TEMPORALITY, self.temporality());
        close(out, histogram);
        close(out, metric);
    }

    /// A family with native buckets, as an exponential histogram.
    fn exponential(&mut self, family: &OwnFamily, out: &mut Vec<u8>) {
        let series = family.series_list();
        if series.is_empty() {
            return;
        }
        let shape = &*family.shape;
        let per_unit = shape.buckets.per_unit;
        let (name, unit) = otlp_name(shape.name);
        let metric = metric_head(out, &name, family.help, unit);
        let histogram = open(out, field::EXPONENTIAL_HISTOGRAM, 4);
        let mut counts = Vec::new();
        for s in &series {
            let Some((native, native_shape)) = s.native() else {
                continue;
            };
            let sum = s.read(&mut counts) as f64 / per_unit;
            let now = native.with_view(native_shape, snapshot);
            let mut sum_values = [sum];
            self.report(shape.name, &s.labels, &mut sum_values);
            let reported = self.native_report(shape.name, &s.labels, now);
            let point = open(out, field::DATA_POINTS, 2);
            attributes(&s.labels, field::EXPONENTIAL_ATTRIBUTES, out);
            self.times(out);
            let count = reported.zero + reported.buckets.iter().map(|b| b.1).sum::<u64>();
            put_fixed64(out, field::COUNT, count);
            put_double(out, field::SUM_VALUE, sum_values[0]);
            put_sint(out, field::SCALE, i64::from(reported.schema));
            put_fixed64(out, field::ZERO_COUNT, reported.zero);
            if let (Some(first), Some(last)) = (reported.buckets.first(), reported.buckets.last()) {
                // OpenTelemetry's bucket i is (base^i, base^(i+1)]: Prometheus's key i+1.
                let positive = open(out, field::POSITIVE, 2);
                put_sint(out, field::BUCKETS_OFFSET, i64::from(first.0) - 1);
                let packed = open(out, field::BUCKETS_COUNTS, 2);
                let mut next = reported.buckets.iter().peekable();
                for key in first.0..=last.0 {
                    let count = match next.peek() {
                        Some((k, c)) if *k == key => {
                            next.next();
                            *c
                        }
                        _ => 0,
                    };
                    put_varint(out, count);
                }
                close(out, packed);
                close(out, positive);
            }
            for i in 0..counts.len() {
                if let Some(kept) = s.exemplar(i).filter(|k| self.is_new(k)) {
                    exemplar(&kept, per_unit, field::EXPONENTIAL_EXEMPLARS, out);
                }
            }
            put_double(out, field::ZERO_THRESHOLD, ZERO_THRESHOLD);
            close(out, point);
        }
        put_uint(out, field::TEMPORALITY, self.temporality());
        close(out, histogram);
        close(out, metric);
    }

    /// Native buckets as this export reports them (minus the baseline, in delta).
    fn native_report(&mut self, name: &str, labels: &str, now: NativeBaseline) -> NativeBaseline {
        if self.temporality == Temporality::Cumulative {
            return now;
        }
        let key = self.key(name, labels);
        let (taken, pending) = self.native.entry(key).or_default();
        *pending = now.clone();
        // The baseline at the current resolution (it can only have gone down).
        let mut base = taken.clone();
        while base.schema > now.schema {
            base = downscale(&base);
        }
        let mut reported = now;
        let mut reset = base.zero > reported.zero;
        let mut old = base.buckets.iter().peekable();
        for (key, count) in reported.buckets.iter_mut() {
            while old.peek().is_some_and(|(k, _)| k < key) {
                // A bucket that was counted is gone: only a reset does that.
                reset = true;
                old.next();
            }
            if let Some((_, c)) = old.next_if(|(k, _)| k == key) {
                if *c > *count {
                    reset = true;
                }
                *count = count.saturating_sub(*c);
            }
        }
        if old.next().is_some() || (base.schema != reported.schema && !base.buckets.is_empty()) {
            reset = true;
        }
        if reset {
            return pending.clone();
        }
        reported.zero -= base.zero;
        reported.buckets.retain(|b| b.1 > 0);
        reported
    }

    /// Exemplars go once in delta: only those since the last export taken.
    fn is_new(&self, kept: &Kept) -> bool {
        self.temporality == Temporality::Cumulative || kept.unix_nanos > self.last
    }

    fn times(&self, out: &mut Vec<u8>) {
        put_fixed64(out, field::START, self.start_time());
        put_fixed64(out, field::TIME, self.now);
    }

    /// The families of a text rendering (the exporter's registry, the process metrics).
    fn text_families(&mut self, text: &str, out: &mut Vec<u8>) {
        for family in text_format::parse(text) {
            if family.name == TARGET_INFO || family.samples.is_empty() {
                continue;
            }
            let (name, unit) = otlp_name(family.name);
            let help = family.help.as_deref().unwrap_or("");
            match family.kind {
                Kind::Histogram => self.text_histogram(&family, &name, help, unit, out),
                Kind::Summary => text_summary(&family, &name, help, unit, self, out),
                Kind::Counter => {
                    let metric = metric_head(out, &name, help, unit);
                    let sum = open(out, field::SUM, 4);
                    for s in &family.samples {
                        let mut value = [s.value];
                        self.report(family.name, s.labels, &mut value);
                        self.number(s.labels, value[0], true, out);
                    }
                    put_uint(out, field::TEMPORALITY, self.temporality());
                    put_uint(out, field::IS_MONOTONIC, 1);
                    close(out, sum);
                    close(out, metric);
                }
                // An up-down counter: cumulative whatever the preference, as the spec says.
                _ if family.name == HTTP_SERVER_ACTIVE_REQUESTS => {
                    let metric = metric_head(out, &name, help, unit);
                    let sum = open(out, field::SUM, 4);
                    for s in &family.samples {
                        let point = open(out, field::DATA_POINTS, 2);
                        attributes(s.labels, field::NUMBER_ATTRIBUTES, out);
                        put_fixed64(out, field::START, self.start);
                        put_fixed64(out, field::TIME, self.now);
                        put_double(out, field::AS_DOUBLE, s.value);
                        close(out, point);
                    }
                    put_uint(out, field::TEMPORALITY, field::CUMULATIVE);
                    close(out, sum);
                    close(out, metric);
                }
                _ => {
                    let metric = metric_head(out, &name, help, unit);
                    let gauge = open(out, field::GAUGE, 4);
                    for s in &family.samples {
                        self.number(s.labels, s.value, false, out);
                    }
                    close(out, gauge);
                    close(out, metric);
                }
            }
        }
    }

    fn number(&self, labels: &str, value: f64, with_start: bool, out: &mut Vec<u8>) {
        let point = open(out, field::DATA_POINTS, 2);
        attributes(labels, field::NUMBER_ATTRIBUTES, out);
        if with_start {
            put_fixed64(out, field::START, self.start_time());
        }
        put_fixed64(out, field::TIME, self.now);
        put_double(out, field::AS_DOUBLE, value);
        close(out, point);
    }

    fn text_histogram(
        &mut self,
        family: &text_format::Family<'_>,
        name: &str,
        help: &str,
        unit: &str,
        out: &mut Vec<u8>,
    ) {
        let metric = metric_head(out, name, help, unit);
        let histogram = open(out, field::HISTOGRAM, 4);
        for point in text_format::points(family, "le") {
            // Cumulative `le` counts to per-bucket counts, `+Inf` last.
            let mut bounds: Vec<f64> = Vec::new();
            let mut values: Vec<f64> = Vec::new();
            let mut previous = 0.0;
            for (le, cumulative) in &point.lines {
                if le.is_finite() {
                    bounds.push(*le);
                }
                values.push(cumulative - previous);
                previous = *cumulative;
            }
            if point.lines.last().is_none_or(|l| l.0.is_finite()) {
                values.push(point.count - previous);
            }
            values.push(point.sum);
            self.report(family.name, &point.labels, &mut values);
            let (counts, sum) = values.split_at(values.len() - 1);
            let p = open(out, field::DATA_POINTS, 2);
            attributes(&point.labels, field::HISTOGRAM_ATTRIBUTES, out);
            self.times(out);
            put_fixed64(out, field::COUNT, counts.iter().sum::<f64>() as u64);
            put_double(out, field::SUM_VALUE, sum[0]);
            put_len(out, field::BUCKET_COUNTS, 8 * counts.len());
            for c in counts {
                out.extend_from_slice(&(*c as u64).to_le_bytes());
            }
            put_len(out, field::EXPLICIT_BOUNDS, 8 * bounds.len());
            for b in &bounds {
                out.extend_from_slice(&b.to_le_bytes());
            }
            close(out, p);
        }
        put_uint(out, field::TEMPORALITY, self.temporality());
        close(out, histogram);
        close(out, metric);
    }
}

/// A summary (OTLP summaries are cumulative only).
fn text_summary(
    family: &text_format::Family<'_>,
    name: &str,
    help: &str,
    unit: &str,
    encoder: &MetricsEncoder,
    out: &mut Vec<u8>,
) {
    let metric = metric_head(out, name, help, unit);
    let summary = open(out, field::SUMMARY, 4);
    for point in text_format::points(family, "quantile") {
        let p = open(out, field::DATA_POINTS, 2);
        attributes(&point.labels, field::SUMMARY_ATTRIBUTES, out);
        put_fixed64(out, field::START, encoder.start);
        put_fixed64(out, field::TIME, encoder.now);
        put_fixed64(out, field::COUNT, point.count as u64);
        put_double(out, field::SUM_VALUE, point.sum);
        for (q, v) in &point.lines {
            let quantile = open(out, field::QUANTILE_VALUES, 1);
            put_double(out, field::QUANTILE, *q);
            put_double(out, field::QUANTILE_VALUE, *v);
            close(out, quantile);
        }
        close(out, p);
    }
    close(out, summary);
    close(out, metric);
}

/// A series' native buckets now: keys ascending, empty ones left out.
fn snapshot(view: &NativeView<'_>) -> NativeBaseline {
    NativeBaseline {
        schema: view.schema,
        zero: view.zero_count,
        buckets: view
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| (view.offset + i as i32, c.load(Ordering::Relaxed)))
            .filter(|b| b.1 > 0)
            .collect(),
    }
}

/// Buckets at half the resolution: key k of schema s is in key ceil(k/2) of schema s-1.
fn downscale(b: &NativeBaseline) -> NativeBaseline {
    let mut buckets: Vec<(i32, u64)> = Vec::with_capacity(b.buckets.len());
    for &(k, c) in &b.buckets {
        let k = (k + 1) >> 1;
        match buckets.last_mut() {
            Some(last) if last.0 == k => last.1 += c,
            _ => buckets.push((k, c)),
        }
    }
    NativeBaseline {
        schema: b.schema - 1,
        zero: b.zero,
        buckets,
    }
}

/// The OTLP name and unit of a Prometheus metric name.
pub(crate) fn otlp_name(prometheus: &str) -> (Cow<'_, str>, &'static str) {
    if let Some((_, name, unit)) = OTLP_NAMES.iter().find(|(p, _, _)| *p == prometheus) {
        return (Cow::Borrowed(name), unit);
    }
    if let Some(own) = prometheus
        .strip_prefix("tower_observability_")
        .and_then(|n| n.strip_suffix("_total"))
    {
        return (Cow::Owned(format!("tower_observability.{own}")), "");
    }
    let unit = if prometheus.ends_with("_seconds") {
        "s"
    } else if prometheus.ends_with("_bytes") {
        "By"
    } else {
        ""
    };
    (Cow::Borrowed(prometheus), unit)
}

fn metric_head(out: &mut Vec<u8>, name: &str, help: &str, unit: &str) -> crate::wire::Open {
    let metric = open(out, field::METRICS, 4);
    put_bytes(out, field::NAME, name.as_bytes());
    if !help.is_empty() {
        put_bytes(out, field::DESCRIPTION, help.as_bytes());
    }
    if !unit.is_empty() {
        put_bytes(out, field::UNIT, unit.as_bytes());
    }
    metric
}

/// A label text as `KeyValue` attributes: keys by the semantic conventions, status codes
/// as integers, `rpc_method` (`pkg.Service/Method`) as `rpc.service` and `rpc.method`.
fn attributes(labels: &str, field_number: u8, out: &mut Vec<u8>) {
    for (key, value) in text_format::label_pairs(labels) {
        if key == LABEL_RPC_METHOD {
            match value.rsplit_once('/') {
                Some((service, method)) => {
                    string_attribute("rpc.service", service, field_number, out);
                    string_attribute("rpc.method", method, field_number, out);
                }
                None => string_attribute("rpc.method", &value, field_number, out),
            }
            continue;
        }
        let key = OTLP_ATTRIBUTES
            .iter()
            .find(|(label, _)| *label == key)
            .map_or(key, |(_, attribute)| attribute);
        let int = matches!(key, "http.response.status_code" | "rpc.grpc.status_code")
            .then(|| value.parse::<i64>().ok())
            .flatten();
        match int {
            Some(n) => {
                let kv = open(out, field_number, 1);
                put_bytes(out, field::KEY, key.as_bytes());
                let any = open(out, field::VALUE, 1);
                put_uint(out, field::INT_VALUE, n as u64);
                close(out, any);
                close(out, kv);
            }
            None => string_attribute(key, &value, field_number, out),
        }
    }
}

fn string_attribute(key: &str, value: &str, field_number: u8, out: &mut Vec<u8>) {
    let kv = open(out, field_number, 1);
    put_bytes(out, field::KEY, key.as_bytes());
    let any = open(out, field::VALUE, 1);
    put_bytes(out, field::STRING_VALUE, value.as_bytes());
    close(out, any);
    close(out, kv);
}

fn exemplar(kept: &Kept, per_unit: f64, field_number: u8, out: &mut Vec<u8>) {
    let e = open(out, field_number, 1);
    put_fixed64(out, field::EXEMPLAR_TIME, kept.unix_nanos);
    put_double(out, field::EXEMPLAR_VALUE, kept.value as f64 / per_unit);
    put_bytes(out, field::EXEMPLAR_SPAN_ID, &kept.span_id);
    put_bytes(out, field::EXEMPLAR_TRACE_ID, &kept.trace_id);
    close(out, e);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::Metric;
    use prost::Message;

    use super::*;
    use crate::metrics::exemplar::Exemplar;
    use crate::metrics::histogram::LabelText;
    use crate::metrics::{NativeHistograms, Registry};

    fn registry(native: Option<NativeHistograms>) -> Arc<Registry> {
        Arc::new(Registry::new(&[0.1, 1.0], &[100.0], native))
    }

    fn series(registry: &Registry) -> Arc<crate::metrics::histogram::Series> {
        let mut labels = LabelText::default();
        labels.push("http_request_method", "GET");
        labels.push("http_route", "/users/{id}");
        labels.push("http_response_status_code", "200");
        registry.histograms.duration.series(&labels.finish())
    }

    fn decode(
        encoder: &mut MetricsEncoder,
        registry: &Arc<Registry>,
        now: u64,
    ) -> BTreeMap<String, Metric> {
        let out = encoder.encode(&Exposition::Own(registry.clone()), now, 5);
        assert_eq!(out[..5], [0; 5], "room for framing");
        let req = ExportMetricsServiceRequest::decode(&out[5..]).expect("valid OTLP");
        let rm = &req.resource_metrics[0];
        let resource = rm.resource.as_ref().unwrap();
        assert!(resource
            .attributes
            .iter()
            .all(|kv| kv.key == "service.name"));
        let sm = &rm.scope_metrics[0];
        assert_eq!(sm.scope.as_ref().unwrap().name, "tower-observability");
        sm.metrics
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect()
    }

    fn attrs(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
        kvs.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(AnyValue::StringValue(s)) => s.clone(),
                    Some(AnyValue::IntValue(i)) => format!("int {i}"),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    #[test]
    fn cumulative_histograms_counters_and_gauges_decode_with_the_official_types() {
        let registry = registry(None);
        metrics::with_local_recorder(&*registry.recorder, || {
            metrics::counter!("tower_observability_panics_total").increment(2);
            metrics::counter!("app_jobs_total", "queue" => "a").increment(3);
            metrics::gauge!("http_server_active_requests", "http_request_method" => "GET").set(4.0);
            metrics::gauge!("target_info", "service_name" => "x").set(1.0);
            metrics::histogram!("app_latency_seconds").record(0.2);
        });
        let s = series(&registry);
        let e = Exemplar {
            trace_id: [7; 16],
            span_id: [8; 8],
            start: std::time::Instant::now(),
        };
        s.record(50_000_000, Some(&e));
        s.record(50_000_000, None);
        s.record(3_000_000_000, None);
        let mut encoder = MetricsEncoder::new(
            &[("service.name".into(), "checkout".into())],
            Temporality::Cumulative,
            1_000,
        );
        let metrics = decode(&mut encoder, &registry, 2_000);
        assert!(!metrics.contains_key("target_info"), "the resource says it");

        let m = &metrics["http.server.request.duration"];
        assert_eq!(m.unit, "s");
        let Some(Data::Histogram(h)) = &m.data else {
            panic!("{m:?}")
        };
        assert_eq!(h.aggregation_temporality, 2);
        let p = &h.data_points[0];
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1_000, 2_000));
        assert_eq!(p.count, 3);
        assert_eq!(p.sum, Some(3.1));
        assert_eq!(p.explicit_bounds, [0.1, 1.0]);
        assert_eq!(p.bucket_counts, [2, 0, 1]);
        let a = attrs(&p.attributes);
        assert_eq!(a["http.request.method"], "GET");
        assert_eq!(a["http.route"], "/users/{id}");
        assert_eq!(a["http.response.status_code"], "int 200");
        assert_eq!(p.exemplars.len(), 1);
        assert_eq!(p.exemplars[0].trace_id, [7; 16]);
        assert_eq!(p.exemplars[0].span_id, [8; 8]);

        let Some(Data::Sum(panics)) = &metrics["tower_observability.panics"].data else {
            panic!()
        };
        assert!(panics.is_monotonic);
        assert_eq!(
            panics.data_points[0].value,
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(2.0))
        );
        let Some(Data::Sum(jobs)) = &metrics["app_jobs_total"].data else {
            panic!()
        };
        assert_eq!(attrs(&jobs.data_points[0].attributes)["queue"], "a");
        let Some(Data::Sum(active)) = &metrics["http.server.active_requests"].data else {
            panic!("an up-down counter")
        };
        assert!(!active.is_monotonic);
        let Some(Data::Histogram(app)) = &metrics["app_latency_seconds"].data else {
            panic!()
        };
        assert_eq!(app.data_points[0].count, 1);
        assert_eq!(metrics["app_latency_seconds"].unit, "s");
        assert!(metrics.contains_key("process.cpu.time"));
        assert_eq!(metrics["process.memory.usage"].unit, "By");
    }

    #[test]
    fn delta_reports_what_changed_since_the_last_export_taken() {
        let registry = registry(None);
        let s = series(&registry);
        let mut encoder = MetricsEncoder::new(&[], Temporality::Delta, 1_000);
        let counts = |metrics: &BTreeMap<String, Metric>| {
            let Some(Data::Histogram(h)) = &metrics["http.server.request.duration"].data else {
                panic!()
            };
            assert_eq!(h.aggregation_temporality, 1);
            let p = &h.data_points[0];
            (
                p.start_time_unix_nano,
                p.count,
                p.bucket_counts.clone(),
                p.sum.unwrap(),
            )
        };
        s.record(50_000_000, None);
        let first = decode(&mut encoder, &registry, 2_000);
        assert_eq!(counts(&first), (1_000, 1, vec![1, 0, 0], 0.05));
        encoder.taken();
        s.record(500_000_000, None);
        let second = decode(&mut encoder, &registry, 3_000);
        assert_eq!(counts(&second), (2_000, 1, vec![0, 1, 0], 0.5));
        // Not taken (the collector was down): the next delta carries both.
        s.record(5_000_000_000, None);
        let third = decode(&mut encoder, &registry, 4_000);
        let (start, count, buckets, sum) = counts(&third);
        assert_eq!((start, count, buckets), (2_000, 2, vec![0, 1, 1]));
        assert!((sum - 5.5).abs() < 1e-9);
    }

    #[test]
    fn native_histograms_go_as_exponential_histograms() {
        let registry = registry(Some(NativeHistograms::default()));
        let s = series(&registry);
        for ms in [50, 50, 800] {
            s.record(ms * 1_000_000, None);
        }
        let mut encoder = MetricsEncoder::new(&[], Temporality::Cumulative, 1_000);
        let metrics = decode(&mut encoder, &registry, 2_000);
        let Some(Data::ExponentialHistogram(h)) = &metrics["http.server.request.duration"].data
        else {
            panic!("{:?}", metrics["http.server.request.duration"])
        };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.scale, p.zero_count), (3, 3, 0));
        assert_eq!(p.zero_threshold, ZERO_THRESHOLD);
        let positive = p.positive.as_ref().unwrap();
        // OpenTelemetry's bucket i holds (2^(i/8), 2^((i+1)/8)]: 50 ms is in i = -35.
        let index = |v: f64| (v.log2() * 8.0).ceil() as i32 - 1;
        assert_eq!(positive.offset, index(0.05));
        let mut found = Vec::new();
        for (i, c) in positive.bucket_counts.iter().enumerate() {
            if *c > 0 {
                found.push((positive.offset + i as i32, *c));
            }
        }
        assert_eq!(found, [(index(0.05), 2), (index(0.8), 1)]);

        // Delta: only the new sample, in its bucket.
        let mut delta = MetricsEncoder::new(&[], Temporality::Delta, 1_000);
        decode(&mut delta, &registry, 2_000);
        delta.taken();
        s.record(800_000_000, None);
        let metrics = decode(&mut delta, &registry, 3_000);
        let Some(Data::ExponentialHistogram(h)) = &metrics["http.server.request.duration"].data
        else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(p.count, 1);
        let positive = p.positive.as_ref().unwrap();
        assert_eq!(
            (positive.offset, positive.bucket_counts.as_slice()),
            (index(0.8), &[1][..])
        );
    }
}
