//! The Prometheus protobuf exposition
//! (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`), served when the scraper asks for it: the format that carries
//! native histograms. Each `MetricFamily` is written straight from the counters, preceded
//! by its length; the duration histograms carry their classic buckets (with exemplars) and,
//! when configured, their native buckets; everything else comes from its text rendering.
//!
//! Field numbers are those of `io/prometheus/client/metrics.proto` (proto2: repeated
//! numbers are written unpacked, as the Go client writes them).

use super::exemplar::{self, Kept};
use super::histogram::{Family, HttpHistograms};
use super::native::{NativeView, ZERO_THRESHOLD};
use super::text_format::{self, Kind};
use crate::wire::{close, open, put_bytes, put_double, put_sint, put_uint};

/// `MetricType`.
mod kind {
    pub(super) const COUNTER: u64 = 0;
    pub(super) const GAUGE: u64 = 1;
    pub(super) const SUMMARY: u64 = 2;
    pub(super) const UNTYPED: u64 = 3;
    pub(super) const HISTOGRAM: u64 = 4;
}

/// `MetricFamily` fields.
mod family {
    pub(super) const NAME: u8 = 1;
    pub(super) const HELP: u8 = 2;
    pub(super) const TYPE: u8 = 3;
    pub(super) const METRIC: u8 = 4;
}

/// `Metric` fields, and those of the messages it holds.
mod metric {
    pub(super) const LABEL: u8 = 1;
    pub(super) const GAUGE: u8 = 2;
    pub(super) const COUNTER: u8 = 3;
    pub(super) const SUMMARY: u8 = 4;
    pub(super) const UNTYPED: u8 = 5;
    pub(super) const HISTOGRAM: u8 = 7;
    // LabelPair
    pub(super) const LABEL_NAME: u8 = 1;
    pub(super) const LABEL_VALUE: u8 = 2;
    // Gauge, Counter, Untyped
    pub(super) const VALUE: u8 = 1;
    // Summary
    pub(super) const SUMMARY_COUNT: u8 = 1;
    pub(super) const SUMMARY_SUM: u8 = 2;
    pub(super) const QUANTILE: u8 = 3;
    pub(super) const QUANTILE_Q: u8 = 1;
    pub(super) const QUANTILE_VALUE: u8 = 2;
}

/// `Histogram`, `Bucket`, `BucketSpan` and `Exemplar` fields.
mod histogram {
    pub(super) const SAMPLE_COUNT: u8 = 1;
    pub(super) const SAMPLE_SUM: u8 = 2;
    pub(super) const BUCKET: u8 = 3;
    pub(super) const SCHEMA: u8 = 5;
    pub(super) const ZERO_THRESHOLD: u8 = 6;
    pub(super) const ZERO_COUNT: u8 = 7;
    pub(super) const POSITIVE_SPAN: u8 = 12;
    pub(super) const POSITIVE_DELTA: u8 = 13;
    // Bucket
    pub(super) const CUMULATIVE_COUNT: u8 = 1;
    pub(super) const UPPER_BOUND: u8 = 2;
    pub(super) const EXEMPLAR: u8 = 3;
    // BucketSpan
    pub(super) const SPAN_OFFSET: u8 = 1;
    pub(super) const SPAN_LENGTH: u8 = 2;
    // Exemplar
    pub(super) const EXEMPLAR_LABEL: u8 = 1;
    pub(super) const EXEMPLAR_VALUE: u8 = 2;
    pub(super) const EXEMPLAR_TIMESTAMP: u8 = 3;
    // google.protobuf.Timestamp
    pub(super) const SECONDS: u8 = 1;
    pub(super) const NANOS: u8 = 2;
}

/// Appends the crate's histograms.
pub(crate) fn write_histograms(histograms: &HttpHistograms, out: &mut Vec<u8>) {
    exemplar::resync_clock();
    for family in histograms.families() {
        write_family(family, out);
    }
}

fn write_family(family: &Family, out: &mut Vec<u8>) {
    let series = family.series_list();
    if series.is_empty() {
        return;
    }
    let shape = &*family.shape;
    let buckets = &shape.buckets;
    // The delimited stream's length prefix: a family of thousands of series is megabytes.
    let message = open(out, 0, 3);
    put_bytes(out, family::NAME, shape.name.as_bytes());
    put_bytes(out, family::HELP, family.help.as_bytes());
    put_uint(out, family::TYPE, kind::HISTOGRAM);
    let mut counts = Vec::with_capacity(buckets.le.len());
    let mut hex = String::with_capacity(32);
    for s in &series {
        let sum = s.read(&mut counts);
        let metric = open(out, family::METRIC, 2);
        write_labels(&s.labels, out);
        let h = open(out, metric::HISTOGRAM, 2);
        let classic_count: u64 = counts.iter().sum();
        let native = s.native();
        // One count for both views: the native buckets' own, when there are native buckets.
        let count = native.map_or(classic_count, |(n, shape)| {
            n.with_view(shape, |v| v.count())
        });
        put_uint(out, histogram::SAMPLE_COUNT, count);
        put_double(out, histogram::SAMPLE_SUM, sum as f64 / buckets.per_unit);
        let mut cumulative = 0;
        // The `+Inf` bucket is implied by the count.
        for (i, (n, upper)) in counts.iter().zip(buckets.upper.iter()).enumerate() {
            cumulative += n;
            let bucket = open(out, histogram::BUCKET, 1);
            put_uint(out, histogram::CUMULATIVE_COUNT, cumulative);
            put_double(out, histogram::UPPER_BOUND, *upper);
            if let Some(kept) = s.exemplar(i) {
                write_exemplar(&kept, buckets.per_unit, &mut hex, out);
            }
            close(out, bucket);
        }
        if let Some((native, shape)) = native {
            native.with_view(shape, |view| write_native(view, out));
        }
        close(out, h);
        close(out, metric);
    }
    close(out, message);
}

fn write_exemplar(kept: &Kept, per_unit: f64, hex: &mut String, out: &mut Vec<u8>) {
    let exemplar = open(out, histogram::EXEMPLAR, 1);
    for (name, id) in [
        ("trace_id", &kept.trace_id[..]),
        ("span_id", &kept.span_id[..]),
    ] {
        hex.clear();
        exemplar::hex(id, hex);
        let pair = open(out, histogram::EXEMPLAR_LABEL, 1);
        put_bytes(out, metric::LABEL_NAME, name.as_bytes());
        put_bytes(out, metric::LABEL_VALUE, hex.as_bytes());
        close(out, pair);
    }
    put_double(out, histogram::EXEMPLAR_VALUE, kept.value as f64 / per_unit);
    let ts = open(out, histogram::EXEMPLAR_TIMESTAMP, 1);
    put_uint(out, histogram::SECONDS, kept.unix_nanos / 1_000_000_000);
    put_uint(out, histogram::NANOS, kept.unix_nanos % 1_000_000_000);
    close(out, ts);
    close(out, exemplar);
}

/// The native buckets: schema, zero bucket, spans and deltas.
fn write_native(view: &NativeView<'_>, out: &mut Vec<u8>) {
    put_sint(out, histogram::SCHEMA, i64::from(view.schema));
    put_double(out, histogram::ZERO_THRESHOLD, ZERO_THRESHOLD);
    put_uint(out, histogram::ZERO_COUNT, view.zero_count);
    let spans = view.spans();
    if spans.is_empty() {
        // No observation yet: a no-op span says "native" all the same.
        let span = open(out, histogram::POSITIVE_SPAN, 1);
        put_sint(out, histogram::SPAN_OFFSET, 0);
        put_uint(out, histogram::SPAN_LENGTH, 0);
        close(out, span);
        return;
    }
    // Each span's offset is its distance from the end of the previous one.
    let mut next = 0i64;
    for (key, counts) in &spans {
        let span = open(out, histogram::POSITIVE_SPAN, 1);
        put_sint(out, histogram::SPAN_OFFSET, i64::from(*key) - next);
        put_uint(out, histogram::SPAN_LENGTH, counts.len() as u64);
        close(out, span);
        next = i64::from(*key) + counts.len() as i64;
    }
    let mut previous = 0i64;
    for (_, counts) in &spans {
        for &c in counts {
            put_sint(out, histogram::POSITIVE_DELTA, c as i64 - previous);
            previous = c as i64;
        }
    }
}

/// `LabelPair`s from a label text (`k="v",...`).
fn write_labels(labels: &str, out: &mut Vec<u8>) {
    for (name, value) in text_format::label_pairs(labels) {
        let pair = open(out, metric::LABEL, 1);
        put_bytes(out, metric::LABEL_NAME, name.as_bytes());
        put_bytes(out, metric::LABEL_VALUE, value.as_bytes());
        close(out, pair);
    }
}

/// Appends the families of a classic text exposition.
pub(crate) fn write_text(text: &str, out: &mut Vec<u8>) {
    for family in text_format::parse(text) {
        let message = open(out, 0, 2);
        put_bytes(out, family::NAME, family.name.as_bytes());
        if let Some(help) = &family.help {
            put_bytes(out, family::HELP, help.as_bytes());
        }
        let kind = match family.kind {
            Kind::Counter => kind::COUNTER,
            Kind::Gauge => kind::GAUGE,
            Kind::Histogram => kind::HISTOGRAM,
            Kind::Summary => kind::SUMMARY,
            Kind::Untyped => kind::UNTYPED,
        };
        put_uint(out, family::TYPE, kind);
        match family.kind {
            Kind::Histogram => {
                for point in text_format::points(&family, "le") {
                    let metric = open(out, family::METRIC, 2);
                    write_labels(&point.labels, out);
                    let h = open(out, metric::HISTOGRAM, 2);
                    put_uint(out, histogram::SAMPLE_COUNT, point.count as u64);
                    put_double(out, histogram::SAMPLE_SUM, point.sum);
                    for (upper, cumulative) in point.lines.iter().filter(|l| l.0.is_finite()) {
                        let bucket = open(out, histogram::BUCKET, 1);
                        put_uint(out, histogram::CUMULATIVE_COUNT, *cumulative as u64);
                        put_double(out, histogram::UPPER_BOUND, *upper);
                        close(out, bucket);
                    }
                    close(out, h);
                    close(out, metric);
                }
            }
            Kind::Summary => {
                for point in text_format::points(&family, "quantile") {
                    let metric = open(out, family::METRIC, 2);
                    write_labels(&point.labels, out);
                    let summary = open(out, metric::SUMMARY, 1);
                    put_uint(out, metric::SUMMARY_COUNT, point.count as u64);
                    put_double(out, metric::SUMMARY_SUM, point.sum);
                    for (q, v) in &point.lines {
                        let quantile = open(out, metric::QUANTILE, 1);
                        put_double(out, metric::QUANTILE_Q, *q);
                        put_double(out, metric::QUANTILE_VALUE, *v);
                        close(out, quantile);
                    }
                    close(out, summary);
                    close(out, metric);
                }
            }
            _ => {
                let field = match family.kind {
                    Kind::Counter => metric::COUNTER,
                    Kind::Gauge => metric::GAUGE,
                    _ => metric::UNTYPED,
                };
                for s in &family.samples {
                    let metric = open(out, family::METRIC, 1);
                    write_labels(s.labels, out);
                    let value = open(out, field, 1);
                    put_double(out, metric::VALUE, s.value);
                    close(out, value);
                    close(out, metric);
                }
            }
        }
        close(out, message);
    }
}

#[cfg(test)]
mod tests {
    //! Decoded with `prost`, through message definitions copied from `metrics.proto`.
    use super::*;
    use crate::metrics::exemplar::Exemplar;
    use crate::metrics::histogram::LabelText;
    use crate::metrics::NativeHistograms;
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub(super) struct LabelPair {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct Value {
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct ExemplarPb {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(double, optional, tag = "2")]
        pub value: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub timestamp: Option<Timestamp>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct Bucket {
        #[prost(uint64, optional, tag = "1")]
        pub cumulative_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub upper_bound: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub exemplar: Option<ExemplarPb>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct BucketSpan {
        #[prost(sint32, optional, tag = "1")]
        pub offset: Option<i32>,
        #[prost(uint32, optional, tag = "2")]
        pub length: Option<u32>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct Histogram {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        pub bucket: Vec<Bucket>,
        #[prost(sint32, optional, tag = "5")]
        pub schema: Option<i32>,
        #[prost(double, optional, tag = "6")]
        pub zero_threshold: Option<f64>,
        #[prost(uint64, optional, tag = "7")]
        pub zero_count: Option<u64>,
        #[prost(message, repeated, tag = "12")]
        pub positive_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, packed = "false", tag = "13")]
        pub positive_delta: Vec<i64>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct Quantile {
        #[prost(double, optional, tag = "1")]
        pub quantile: Option<f64>,
        #[prost(double, optional, tag = "2")]
        pub value: Option<f64>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct Summary {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        pub quantile: Vec<Quantile>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct Metric {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Value>,
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Value>,
        #[prost(message, optional, tag = "4")]
        pub summary: Option<Summary>,
        #[prost(message, optional, tag = "5")]
        pub untyped: Option<Value>,
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub(super) struct MetricFamily {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub help: Option<String>,
        #[prost(int32, optional, tag = "3")]
        pub r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
    }

    /// Every `MetricFamily` of a delimited stream.
    pub(super) fn decode(mut bytes: &[u8]) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        while !bytes.is_empty() {
            families.push(MetricFamily::decode_length_delimited(&mut bytes).expect("valid"));
        }
        families
    }

    fn labels(m: &Metric) -> Vec<(String, String)> {
        m.label
            .iter()
            .map(|l| (l.name.clone().unwrap(), l.value.clone().unwrap()))
            .collect()
    }

    #[test]
    fn histograms_carry_classic_buckets_exemplars_and_native_buckets() {
        let h = HttpHistograms::new(&[0.1, 1.0], &[1.0], Some(NativeHistograms::default()));
        let mut text = LabelText::default();
        text.push("http_route", "/a\"b");
        text.push("http_request_method", "GET");
        let series = h.duration.series(&text.finish());
        let e = Exemplar {
            trace_id: [0x11; 16],
            span_id: [0x22; 8],
            start: std::time::Instant::now(),
        };
        for ms in [50, 50, 800] {
            series.record(ms * 1_000_000, Some(&e));
        }
        let mut out = Vec::new();
        write_histograms(&h, &mut out);
        let families = decode(&out);
        assert_eq!(families.len(), 1, "only families with series");
        let f = &families[0];
        assert_eq!(
            f.name.as_deref(),
            Some("http_server_request_duration_seconds")
        );
        assert_eq!(f.r#type, Some(4));
        let m = &f.metric[0];
        assert_eq!(
            labels(m),
            [
                ("http_route".to_owned(), "/a\"b".to_owned()),
                ("http_request_method".to_owned(), "GET".to_owned())
            ]
        );
        let hist = m.histogram.as_ref().unwrap();
        assert_eq!(hist.sample_count, Some(3));
        assert!((hist.sample_sum.unwrap() - 0.9).abs() < 1e-9);
        let classic: Vec<(f64, u64)> = hist
            .bucket
            .iter()
            .map(|b| (b.upper_bound.unwrap(), b.cumulative_count.unwrap()))
            .collect();
        assert_eq!(classic, [(0.1, 2), (1.0, 3)]);
        let ex = hist.bucket[0].exemplar.as_ref().unwrap();
        assert_eq!(ex.value, Some(0.05));
        assert_eq!(ex.label[0].value.as_deref(), Some("11".repeat(16).as_str()));
        assert_eq!(ex.label[1].value.as_deref(), Some("22".repeat(8).as_str()));
        assert!(ex.timestamp.as_ref().unwrap().seconds > 1_600_000_000);
        // Native: schema 3, 50 ms twice and 800 ms once, in the buckets their keys say.
        assert_eq!(hist.schema, Some(3));
        assert_eq!(hist.zero_count, Some(0));
        assert!(hist.zero_threshold.unwrap() > 0.0);
        let mut keys = Vec::new();
        let (mut key, mut count) = (0i32, 0i64);
        let mut deltas = hist.positive_delta.iter();
        for span in &hist.positive_span {
            key += span.offset.unwrap();
            for _ in 0..span.length.unwrap() {
                count += deltas.next().unwrap();
                if count > 0 {
                    keys.push((key, count));
                }
                key += 1;
            }
        }
        let shape = crate::metrics::native::NativeShape::new(NativeHistograms::default());
        assert_eq!(keys, [(shape.key(0.05, 3), 2), (shape.key(0.8, 3), 1)]);
    }

    #[test]
    fn text_families_keep_their_type_and_values() {
        let text = "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{q=\"a\"} 3\n\
                    # TYPE temp gauge\ntemp -1.5\n\
                    # TYPE lat histogram\nlat_bucket{le=\"1\"} 1\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 3.5\nlat_count 2\n\
                    # TYPE q summary\nq{quantile=\"0.5\"} 7\nq_sum 10\nq_count 2\n";
        let mut out = Vec::new();
        write_text(text, &mut out);
        let f = decode(&out);
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].name.as_deref(), Some("jobs_total"));
        assert_eq!(f[0].help.as_deref(), Some("Jobs."));
        assert_eq!(f[0].r#type, Some(0));
        assert_eq!(f[0].metric[0].counter.as_ref().unwrap().value, Some(3.0));
        assert_eq!(f[1].metric[0].gauge.as_ref().unwrap().value, Some(-1.5));
        let h = f[2].metric[0].histogram.as_ref().unwrap();
        assert_eq!((h.sample_count, h.sample_sum), (Some(2), Some(3.5)));
        assert_eq!(h.bucket.len(), 1, "+Inf is implied");
        let s = f[3].metric[0].summary.as_ref().unwrap();
        assert_eq!(s.quantile[0].value, Some(7.0));
    }
}
