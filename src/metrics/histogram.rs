//! The layer's own histograms: fixed buckets counted with atomics, rendered straight into
//! the Prometheus text format.
//!
//! `metrics-exporter-prometheus` keeps every sample of a histogram in a queue until the next
//! upkeep or scrape folds it into buckets, and renders each line through label maps and
//! `format!`: about 14 KiB and 20 µs per series. The HTTP histograms are most of what a
//! service exposes (a label set is three histograms of 13 to 17 buckets), so the crate keeps
//! them itself whenever it owns the registry: recording is a bucket search and two atomic
//! adds, a series holds a few hundred bytes, and rendering copies text prepared once per
//! series. The application's own metrics stay with the exporter, rendered alongside.
//!
//! The duration histograms also keep an [exemplar](super::exemplar) per bucket and, when
//! configured, [native buckets](super::native); the other formats read them
//! ([`openmetrics`](super::openmetrics), [`protobuf`](super::protobuf), OTLP push).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::exemplar::{self, Exemplar, Kept, Slot};
use super::names::{
    CATALOGUE, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_RESPONSE_BODY_SIZE, RPC_SERVER_CALL_DURATION,
};
use super::native::{NativeCounts, NativeHistograms, NativeShape};

/// Bucket bounds in the unit samples are recorded in, with their `le` labels written once.
pub(crate) struct Buckets {
    bounds: Box<[f64]>,
    /// The bounds in the exposed unit, as configured.
    pub(crate) upper: Box<[f64]>,
    /// One per bound, then `+Inf`.
    pub(crate) le: Box<[Box<str>]>,
    /// Recorded units per exposed unit (1e9 for nanoseconds exposed as seconds).
    pub(crate) per_unit: f64,
}

impl Buckets {
    /// `bounds` in the exposed unit (seconds, bytes); samples are recorded as integers,
    /// `per_unit` of them to an exposed unit.
    pub(crate) fn new(bounds: &[f64], per_unit: f64) -> Self {
        let scaled = bounds
            .iter()
            .map(|&b| {
                let x = b * per_unit;
                // 0.075 s is 75_000_000.000000001 ns in floating point: compare against
                // the integer it means.
                let r = x.round();
                if (x - r).abs() < 1e-6 {
                    r
                } else {
                    x
                }
            })
            .collect();
        let le = bounds
            .iter()
            .map(|b| b.to_string().into_boxed_str())
            .chain(std::iter::once("+Inf".into()))
            .collect();
        Buckets {
            bounds: scaled,
            upper: bounds.into(),
            le,
            per_unit,
        }
    }

    /// The bucket a sample falls in: the first bound it does not exceed, or `+Inf`.
    fn index(&self, value: u64) -> usize {
        let v = value as f64;
        self.bounds.partition_point(|&b| b < v)
    }
}

/// One histogram series: a count per bucket (not cumulative) and the sum, both integers in
/// the recorded unit, so recording is two relaxed atomic adds.
pub(crate) struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl AtomicHistogram {
    fn new(buckets: &Buckets) -> Self {
        AtomicHistogram {
            counts: (0..buckets.le.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }
}

/// One series of a [`Family`]: its labels, already in exposition form, and its histogram.
pub(crate) struct Series {
    /// `k="v",k="v"`: escaped, without braces.
    pub(crate) labels: Arc<str>,
    histogram: AtomicHistogram,
    family: Arc<FamilyShape>,
    /// Native buckets, when the family has them.
    native: Option<Box<NativeCounts>>,
    /// One exemplar per bucket, made when the series' first exemplar arrives.
    exemplars: OnceLock<Box<[Slot]>>,
}

impl Series {
    /// Records one sample, in the family's recorded unit, with the exemplar of a sampled
    /// and exported request (given for the duration families only).
    #[inline]
    pub(crate) fn record(&self, value: u64, exemplar: Option<&Exemplar>) {
        let i = self.family.buckets.index(value);
        self.histogram.counts[i].fetch_add(1, Ordering::Relaxed);
        self.histogram.sum.fetch_add(value, Ordering::Relaxed);
        // Out of line, so the common path (neither) stays small enough to inline.
        if let Some(native) = &self.native {
            self.record_native(native, value);
        }
        if let Some(exemplar) = exemplar {
            self.keep_exemplar(i, exemplar, value);
        }
    }

    #[inline(never)]
    fn record_native(&self, native: &NativeCounts, value: u64) {
        let shape = &*self.family;
        if let Some(native_shape) = &shape.native {
            native.record(native_shape, value, shape.buckets.per_unit);
        }
    }

    #[inline(never)]
    fn keep_exemplar(&self, i: usize, exemplar: &Exemplar, value: u64) {
        debug_assert!(self.family.exemplars, "exemplars on a family without them");
        let slots = self.exemplars.get_or_init(|| {
            (0..self.family.buckets.le.len())
                .map(|_| Slot::default())
                .collect()
        });
        slots[i].write(exemplar, value);
    }

    /// Observations per bucket (not cumulative), `+Inf` last, into `out`; returns the sum
    /// in the recorded unit.
    pub(crate) fn read(&self, out: &mut Vec<u64>) -> u64 {
        out.clear();
        out.extend(
            self.histogram
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed)),
        );
        self.histogram.sum.load(Ordering::Relaxed)
    }

    /// The exemplar of bucket `i`, if one was kept.
    pub(crate) fn exemplar(&self, i: usize) -> Option<Kept> {
        self.exemplars.get()?.get(i)?.read()
    }

    /// The native buckets, if the family has them.
    pub(crate) fn native(&self) -> Option<(&NativeCounts, &NativeShape)> {
        Some((self.native.as_deref()?, self.family.native.as_ref()?))
    }
}

/// What every series of a family shares.
pub(crate) struct FamilyShape {
    pub(crate) name: &'static str,
    pub(crate) buckets: Buckets,
    pub(crate) native: Option<NativeShape>,
    /// Whether series keep exemplars (the duration histograms).
    pub(crate) exemplars: bool,
}

/// A histogram family: its name, help, buckets and series, in registration order.
pub(crate) struct Family {
    pub(crate) shape: Arc<FamilyShape>,
    pub(crate) help: &'static str,
    series: Mutex<Registered>,
}

#[derive(Default)]
struct Registered {
    order: Vec<Arc<Series>>,
    /// Label text to series: two layers sharing the installed registry share series, and
    /// the exposition never holds the same label set twice.
    by_labels: HashMap<Arc<str>, Arc<Series>, foldhash::fast::RandomState>,
}

impl Family {
    pub(crate) fn new(name: &'static str, help: &'static str, buckets: Buckets) -> Self {
        Family {
            shape: Arc::new(FamilyShape {
                name,
                buckets,
                native: None,
                exemplars: false,
            }),
            help,
            series: Mutex::new(Registered::default()),
        }
    }

    /// A family of durations: exemplars, and native buckets when configured.
    fn durations(
        name: &'static str,
        help: &'static str,
        buckets: Buckets,
        native: Option<NativeHistograms>,
    ) -> Self {
        Family {
            shape: Arc::new(FamilyShape {
                name,
                buckets,
                native: native.map(NativeShape::new),
                exemplars: true,
            }),
            help,
            series: Mutex::new(Registered::default()),
        }
    }

    /// The series registered so far, in registration order (the list is copied, not the
    /// series, so recording never waits for a render).
    pub(crate) fn series_list(&self) -> Vec<Arc<Series>> {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .clone()
    }

    /// The series of `labels` (exposition form, see [`LabelText`]), registered on first use.
    pub(crate) fn series(&self, labels: &Arc<str>) -> Arc<Series> {
        let mut registered = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(series) = registered.by_labels.get(labels) {
            return series.clone();
        }
        let series = Arc::new(Series {
            labels: labels.clone(),
            histogram: AtomicHistogram::new(&self.shape.buckets),
            family: self.shape.clone(),
            native: self.shape.native.as_ref().map(|_| Box::default()),
            exemplars: OnceLock::new(),
        });
        registered.order.push(series.clone());
        registered.by_labels.insert(labels.clone(), series.clone());
        series
    }

    /// Appends the family in the Prometheus text format (nothing while it has no series).
    pub(crate) fn render(&self, out: &mut String) {
        let series = self.series_list();
        if series.is_empty() {
            return;
        }
        let FamilyShape { name, buckets, .. } = &*self.shape;
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut number = itoa::Buffer::new();
        let mut prefix = String::new();
        for s in &series {
            prefix.clear();
            prefix.push_str(name);
            prefix.push_str("_bucket{");
            prefix.push_str(&s.labels);
            prefix.push_str(",le=\"");
            let mut cumulative = 0u64;
            for (count, le) in s.histogram.counts.iter().zip(buckets.le.iter()) {
                cumulative += count.load(Ordering::Relaxed);
                out.push_str(&prefix);
                out.push_str(le);
                out.push_str("\"} ");
                out.push_str(number.format(cumulative));
                out.push('\n');
            }
            let sum = s.histogram.sum.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_sum{{{}}} {}",
                s.labels,
                sum as f64 / buckets.per_unit
            );
            out.push_str(name);
            out.push_str("_count{");
            out.push_str(&s.labels);
            out.push_str("} ");
            out.push_str(number.format(cumulative));
            out.push('\n');
        }
        out.push('\n');
    }
}

/// Builds the label text of a series: `k="v"` pairs, values escaped as the text format asks.
#[derive(Default)]
pub(crate) struct LabelText(String);

impl LabelText {
    pub(crate) fn push(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(key);
        self.0.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '"' => self.0.push_str("\\\""),
                '\n' => self.0.push_str("\\n"),
                c => self.0.push(c),
            }
        }
        self.0.push('"');
    }

    pub(crate) fn finish(self) -> Arc<str> {
        self.0.into()
    }
}

/// The layer's four histogram families, kept by the crate when it owns the registry.
pub(crate) struct HttpHistograms {
    pub(crate) duration: Family,
    pub(crate) request_size: Family,
    pub(crate) response_size: Family,
    pub(crate) rpc_duration: Family,
}

/// Durations are recorded in nanoseconds and exposed in seconds.
pub(crate) const NANOS_PER_SECOND: f64 = 1e9;

impl HttpHistograms {
    pub(crate) fn new(
        duration_buckets: &[f64],
        size_buckets: &[f64],
        native: Option<NativeHistograms>,
    ) -> Self {
        let help = |name: &'static str| {
            CATALOGUE
                .iter()
                .find(|m| m.name == name)
                .map_or("", |m| m.help)
        };
        let sizes =
            |name: &'static str| Family::new(name, help(name), Buckets::new(size_buckets, 1.0));
        let durations = |name: &'static str| {
            let buckets = Buckets::new(duration_buckets, NANOS_PER_SECOND);
            Family::durations(name, help(name), buckets, native)
        };
        // Exemplar times are read off the monotonic clock from here on.
        exemplar::start_clock();
        HttpHistograms {
            duration: durations(HTTP_SERVER_REQUEST_DURATION),
            request_size: sizes(HTTP_SERVER_REQUEST_BODY_SIZE),
            response_size: sizes(HTTP_SERVER_RESPONSE_BODY_SIZE),
            rpc_duration: durations(RPC_SERVER_CALL_DURATION),
        }
    }

    /// The four families, in exposition order.
    pub(crate) fn families(&self) -> [&Family; 4] {
        [
            &self.duration,
            &self.request_size,
            &self.response_size,
            &self.rpc_duration,
        ]
    }

    /// Appends every family with series, in the Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        for family in self.families() {
            family.render(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family() -> Family {
        Family::new(
            "t_seconds",
            "Test.",
            Buckets::new(&[0.005, 0.075, 1.0], 1e9),
        )
    }

    #[test]
    fn samples_land_in_the_first_bucket_they_do_not_exceed() {
        let b = Buckets::new(&[0.005, 0.075, 1.0], 1e9);
        assert_eq!(b.index(0), 0);
        assert_eq!(b.index(5_000_000), 0, "a bound is inclusive");
        assert_eq!(b.index(5_000_001), 1);
        assert_eq!(b.index(75_000_000), 1, "0.075 s is exactly 75 ms");
        assert_eq!(b.index(1_000_000_001), 3, "+Inf");
    }

    #[test]
    fn renders_cumulative_buckets_sum_and_count() {
        let f = family();
        let mut labels = LabelText::default();
        labels.push("route", "/a\"b\\c\nd");
        let labels = labels.finish();
        let s = f.series(&labels);
        s.record(1_000_000, None);
        s.record(50_000_000, None);
        s.record(2_000_000_000, None);
        let mut out = String::new();
        f.render(&mut out);
        let expected = r#"# HELP t_seconds Test.
# TYPE t_seconds histogram
t_seconds_bucket{route="/a\"b\\c\nd",le="0.005"} 1
t_seconds_bucket{route="/a\"b\\c\nd",le="0.075"} 2
t_seconds_bucket{route="/a\"b\\c\nd",le="1"} 2
t_seconds_bucket{route="/a\"b\\c\nd",le="+Inf"} 3
t_seconds_sum{route="/a\"b\\c\nd"} 2.051
t_seconds_count{route="/a\"b\\c\nd"} 3

"#;
        assert_eq!(out, expected);
    }

    #[test]
    fn the_same_labels_are_one_series_and_an_empty_family_renders_nothing() {
        let f = family();
        let mut out = String::new();
        f.render(&mut out);
        assert_eq!(out, "");
        let mut labels = LabelText::default();
        labels.push("k", "v");
        let labels = labels.finish();
        let a = f.series(&labels);
        let b = f.series(&Arc::from(&*labels));
        assert!(Arc::ptr_eq(&a, &b));
    }
}
