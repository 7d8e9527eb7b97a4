//! Native (exponential) histograms: the duration histograms counted again in buckets whose
//! bounds grow by a constant factor (`2^(2^-schema)`), so a quantile is accurate at any
//! latency without choosing buckets. Prometheus reads them in its protobuf format
//! ([`protobuf`](super::protobuf)), OTLP as exponential histograms.
//!
//! A series counts into a dense window of atomic counters, allocated when its first sample
//! arrives and widened (rarely) when a sample falls outside it. When the window would need
//! more than the configured bucket limit, the resolution halves (the schema goes down by
//! one, two buckets become one), as Prometheus's Go client and OpenTelemetry's SDKs do.
//! Recording is a bucket search over a small table, a read lock and one atomic add.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::error::BuildError;

/// Native histograms for the request and call duration histograms, alongside the classic
/// buckets: Prometheus gets them when it asks for its protobuf format
/// (`--enable-feature=native-histograms`, or `scrape_native_histograms` in Prometheus 3),
/// OTLP push as exponential histograms. Other scrapers keep getting the classic buckets.
///
/// ```
/// use tower_observability::{metrics::NativeHistograms, MetricsBackend, Observability};
///
/// let obs = Observability::builder("checkout")
///     // Buckets grow by 2^(1/8) (9 %); a series never holds more than 100.
///     .native_histograms(NativeHistograms::default().schema(3).max_buckets(100))
/// #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
///     .build()?;
/// # let _ = obs;
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct NativeHistograms {
    pub(crate) schema: i8,
    pub(crate) max_buckets: u32,
}

impl Default for NativeHistograms {
    /// Schema 3 (each bucket 9 % wider than the last) and at most 160 buckets per series,
    /// the defaults of OpenTelemetry's exponential histograms.
    fn default() -> Self {
        NativeHistograms {
            schema: 3,
            max_buckets: 160,
        }
    }
}

impl NativeHistograms {
    /// The highest resolution, from -4 to 8: bucket bounds grow by `2^(2^-schema)`. A series
    /// whose samples span more than `max_buckets` buckets at this schema gets a lower one.
    pub fn schema(mut self, schema: i8) -> Self {
        self.schema = schema;
        self
    }

    /// The most buckets one series holds (at least 1).
    pub fn max_buckets(mut self, max_buckets: u32) -> Self {
        self.max_buckets = max_buckets;
        self
    }

    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if !(MIN_SCHEMA..=MAX_SCHEMA).contains(&self.schema) {
            return Err(BuildError::setting(
                "native_histograms",
                format!("schema {} is outside -4..=8", self.schema),
            ));
        }
        if self.max_buckets == 0 {
            return Err(BuildError::setting(
                "native_histograms",
                "max_buckets must be at least 1",
            ));
        }
        Ok(())
    }
}

pub(crate) const MIN_SCHEMA: i8 = -4;
pub(crate) const MAX_SCHEMA: i8 = 8;

/// Samples at or below this (in the exposed unit) go to the zero bucket: Prometheus's
/// default, below any duration.
pub(crate) const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// What every series of a family shares: the settings and the bound table.
pub(crate) struct NativeShape {
    pub(crate) config: NativeHistograms,
    /// `2^(i/256) / 2` for `i` in `0..256`: the bounds of schema 8 within one power of two;
    /// schema `s` reads every `2^(8-s)`th.
    bounds: Box<[f64]>,
}

impl NativeShape {
    pub(crate) fn new(config: NativeHistograms) -> Self {
        NativeShape {
            config,
            bounds: (0..256)
                .map(|i| 2f64.powf(f64::from(i) / 256.0) / 2.0)
                .collect(),
        }
    }

    /// The bucket of `v` (> 0) at `schema`: bucket `k` holds `(2^((k-1)/2^schema),
    /// 2^(k/2^schema)]`. The same arithmetic as Prometheus's Go client.
    #[inline]
    pub(crate) fn key(&self, v: f64, schema: i8) -> i32 {
        let bits = v.to_bits();
        // v = frac * 2^exp, frac in [0.5, 1).
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1022;
        let frac = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1022 << 52));
        if schema > 0 {
            let n = 1usize << schema;
            let stride = 256 >> schema;
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if self.bounds[mid * stride] < frac {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo as i32 + (exp - 1) * n as i32
        } else {
            let key = if frac == 0.5 { exp - 1 } else { exp };
            let shift = -schema;
            (key + (1 << shift) - 1) >> shift
        }
    }
}

/// One series' native buckets.
#[derive(Default)]
pub(crate) struct NativeCounts {
    zero: AtomicU64,
    layout: RwLock<Layout>,
}

/// The window of buckets a series counts into.
#[derive(Default)]
struct Layout {
    schema: i8,
    /// The bucket key of `counts[0]`.
    offset: i32,
    counts: Box<[AtomicU64]>,
}

/// A series' buckets as read for an exposition.
pub(crate) struct NativeView<'a> {
    pub(crate) schema: i8,
    pub(crate) zero_count: u64,
    /// The bucket key of `counts[0]`; empty buckets may be anywhere.
    pub(crate) offset: i32,
    pub(crate) counts: &'a [AtomicU64],
}

impl NativeView<'_> {
    /// Observations counted, zero bucket included.
    pub(crate) fn count(&self) -> u64 {
        self.zero_count
            + self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    /// Runs of buckets to write, as Prometheus's spans want them: `(key of the first,
    /// counts)`, split where more than two empty buckets lie between counted ones.
    pub(crate) fn spans(&self) -> Vec<(i32, Vec<u64>)> {
        let mut spans: Vec<(i32, Vec<u64>)> = Vec::new();
        let mut gap = 0usize;
        for (i, c) in self.counts.iter().enumerate() {
            let c = c.load(Ordering::Relaxed);
            if c == 0 {
                gap += 1;
                continue;
            }
            let key = self.offset + i as i32;
            match spans.last_mut() {
                // Short gaps are cheaper as zero buckets than as a new span.
                Some(span) if gap <= 2 => {
                    span.1.extend(std::iter::repeat_n(0, gap));
                    span.1.push(c);
                }
                _ => spans.push((key, vec![c])),
            }
            gap = 0;
        }
        spans
    }
}

impl NativeCounts {
    /// Counts `value` (in the recorded unit, `per_unit` to an exposed unit).
    #[inline]
    pub(crate) fn record(&self, shape: &NativeShape, value: u64, per_unit: f64) {
        let v = value as f64 / per_unit;
        if v <= ZERO_THRESHOLD {
            self.zero.fetch_add(1, Ordering::Relaxed);
            return;
        }
        {
            let layout = self.layout.read().unwrap_or_else(|e| e.into_inner());
            let key = shape.key(v, layout.schema);
            // Below the window, the difference is negative: as usize, out of range.
            if let Some(count) = layout
                .counts
                .get(key.wrapping_sub(layout.offset) as u32 as usize)
            {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.widen(shape, v);
    }

    /// The sample `v` fell outside the window: make room (wider, or coarser), then count it.
    #[cold]
    fn widen(&self, shape: &NativeShape, v: f64) {
        let mut layout = self.layout.write().unwrap_or_else(|e| e.into_inner());
        let max = shape.config.max_buckets as i64;
        if layout.counts.is_empty() {
            // The first sample: a small window around it.
            let schema = shape.config.schema;
            let key = shape.key(v, schema);
            let len = max.min(16) as i32;
            *layout = Layout {
                schema,
                offset: key - len / 2,
                counts: (0..len).map(|_| AtomicU64::new(0)).collect(),
            };
        }
        loop {
            let key = shape.key(v, layout.schema);
            let len = layout.counts.len() as i64;
            let (low, high) = (layout.offset as i64, layout.offset as i64 + len - 1);
            if (low..=high).contains(&(key as i64)) {
                layout.counts[(key - layout.offset) as usize].fetch_add(1, Ordering::Relaxed);
                return;
            }
            // The counted buckets and the new one.
            let first = layout
                .counts
                .iter()
                .position(|c| c.load(Ordering::Relaxed) > 0)
                .map_or(key as i64, |i| low + i as i64);
            let last = layout
                .counts
                .iter()
                .rposition(|c| c.load(Ordering::Relaxed) > 0)
                .map_or(key as i64, |i| low + i as i64);
            let (from, to) = (first.min(key as i64), last.max(key as i64));
            let needed = to - from + 1;
            if needed <= max || layout.schema == MIN_SCHEMA {
                // Wider: room to grow on the side the sample came from.
                let len = (len * 2).max(needed).min(max.max(needed));
                let offset = if (key as i64) < first {
                    to + 1 - len
                } else {
                    from
                };
                let mut counts: Box<[AtomicU64]> = (0..len).map(|_| AtomicU64::new(0)).collect();
                for (i, c) in layout.counts.iter().enumerate() {
                    let c = c.load(Ordering::Relaxed);
                    if c > 0 {
                        *counts[(low + i as i64 - offset) as usize].get_mut() += c;
                    }
                }
                layout.counts = counts;
                layout.offset = offset as i32;
            } else {
                // Coarser: bucket k of schema s is half of bucket ceil(k/2) of schema s-1.
                let down = |k: i64| (k + 1) >> 1;
                let offset = down(low);
                let len = down(high) - offset + 1;
                let mut counts: Box<[AtomicU64]> = (0..len).map(|_| AtomicU64::new(0)).collect();
                for (i, c) in layout.counts.iter().enumerate() {
                    *counts[(down(low + i as i64) - offset) as usize].get_mut() +=
                        c.load(Ordering::Relaxed);
                }
                layout.counts = counts;
                layout.offset = offset as i32;
                layout.schema -= 1;
            }
        }
    }

    /// Runs `f` over the buckets as they are now (a widening waits until it returns).
    pub(crate) fn with_view<T>(
        &self,
        shape: &NativeShape,
        f: impl FnOnce(&NativeView<'_>) -> T,
    ) -> T {
        let zero_count = self.zero.load(Ordering::Relaxed);
        let layout = self.layout.read().unwrap_or_else(|e| e.into_inner());
        f(&NativeView {
            schema: if layout.counts.is_empty() {
                shape.config.schema
            } else {
                layout.schema
            },
            zero_count,
            offset: layout.offset,
            counts: &layout.counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket of `v` by the definition: the smallest `k` with `v <= 2^(k/2^schema)`.
    fn by_definition(v: f64, schema: i8) -> i32 {
        let k = (v.log2() * 2f64.powi(schema.into())).ceil() as i32;
        // Guard against log2 rounding at exact bounds.
        let bound = |k: i32| 2f64.powf(f64::from(k) / 2f64.powi(schema.into()));
        if v <= bound(k - 1) {
            k - 1
        } else if v > bound(k) {
            k + 1
        } else {
            k
        }
    }

    #[test]
    fn keys_match_the_definition_at_every_schema() {
        let shape = NativeShape::new(NativeHistograms::default());
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            for v in [
                1e-9, 0.000_37, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 1.5, 3.0, 60.0, 1e4,
            ] {
                assert_eq!(
                    shape.key(v, schema),
                    by_definition(v, schema),
                    "{v} at {schema}"
                );
            }
        }
        // Bounds are inclusive: 1 s is the top of bucket 0, 2 s of bucket 2^schema.
        assert_eq!(shape.key(1.0, 3), 0);
        assert_eq!(shape.key(2.0, 3), 8);
        assert_eq!(shape.key(2.0, -2), 1);
        assert_eq!(shape.key(4.0, -1), 1);
    }

    fn counted(counts: &NativeCounts, shape: &NativeShape) -> (i8, u64, Vec<(i32, u64)>) {
        counts.with_view(shape, |v| {
            let buckets = v
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| (v.offset + i as i32, c.load(Ordering::Relaxed)))
                .filter(|(_, c)| *c > 0)
                .collect();
            (v.schema, v.count(), buckets)
        })
    }

    #[test]
    fn samples_are_counted_in_their_bucket_as_the_window_widens() {
        let shape = NativeShape::new(NativeHistograms::default());
        let counts = NativeCounts::default();
        // 50 ms and 800 ms, nanoseconds in, seconds out; then one far outside the window.
        for ns in [50_000_000u64, 50_000_000, 800_000_000, 7_000_000_000, 0] {
            counts.record(&shape, ns, 1e9);
        }
        let (schema, count, buckets) = counted(&counts, &shape);
        assert_eq!(schema, 3);
        assert_eq!(count, 5);
        assert_eq!(
            buckets,
            vec![
                (shape.key(0.05, 3), 2),
                (shape.key(0.8, 3), 1),
                (shape.key(7.0, 3), 1)
            ]
        );
    }

    #[test]
    fn a_series_over_its_bucket_limit_halves_its_resolution() {
        let shape = NativeShape::new(NativeHistograms::default().schema(3).max_buckets(10));
        let counts = NativeCounts::default();
        // 1 ms to 1 s is ten powers of two: 80 buckets at schema 3, 10 at schema 0.
        for ns in [1_000_000u64, 10_000_000, 100_000_000, 1_000_000_000] {
            counts.record(&shape, ns, 1e9);
        }
        let (schema, count, buckets) = counted(&counts, &shape);
        assert_eq!(count, 4);
        assert_eq!(schema, 0, "{buckets:?}");
        let keys: Vec<i32> = buckets.iter().map(|b| b.0).collect();
        assert_eq!(
            keys,
            [0.001, 0.01, 0.1, 1.0].map(|v| shape.key(v, 0)).to_vec()
        );
        counts.with_view(&shape, |v| assert!(v.counts.len() <= 10));
    }

    #[test]
    fn spans_skip_long_gaps_and_fill_short_ones() {
        let shape = NativeShape::new(NativeHistograms::default().schema(0));
        let counts = NativeCounts::default();
        // Keys 1, 2 (gap of one: filled), then 10 (a long gap: a new span).
        for v in [2.0, 8.0, 1024.0] {
            counts.record(&shape, (v * 1e9) as u64, 1e9);
        }
        let spans = counts.with_view(&shape, |v| v.spans());
        assert_eq!(spans, vec![(1, vec![1, 0, 1]), (10, vec![1])]);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(NativeHistograms::default().schema(9).check().is_err());
        assert!(NativeHistograms::default().schema(-5).check().is_err());
        assert!(NativeHistograms::default().max_buckets(0).check().is_err());
        assert!(NativeHistograms::default().schema(-4).check().is_ok());
    }
}
