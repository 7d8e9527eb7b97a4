//! The OpenMetrics text format (`application/openmetrics-text; version=1.0.0`), served when
//! the scraper's `Accept` asks for it: the only text format that carries exemplars.
//!
//! The whole exposition is written: the crate's histograms straight from their counters,
//! with the exemplar of each bucket, and everything else (the exporter's registry, the
//! process metrics) from their text rendering. What differs from the classic format:
//! counter families are named without `_total` in `# TYPE` and `# HELP` (samples keep it),
//! a histogram's `_count` comes before its `_sum`, help text escapes `"` too, there are no
//! blank lines, and `# EOF` ends it. Sample names and labels are exactly the classic
//! format's (`le="1"` stays `le="1"`), so a Prometheus that switches formats keeps its
//! series. A counter without `_total` (an application's `metrics::counter!("jobs")`) is
//! written as `unknown`: OpenMetrics would rename its samples `jobs_total`.

use std::fmt::Write as _;

use super::exemplar;
use super::histogram::{Family, HttpHistograms};
use super::text_format::{self, Kind};

/// Where an OpenMetrics exposition ends.
pub(crate) const EOF: &str = "# EOF\n";

/// Appends the crate's histograms.
pub(crate) fn write_histograms(histograms: &HttpHistograms, out: &mut String) {
    exemplar::resync_clock();
    for family in histograms.families() {
        write_family(family, out);
    }
}

fn write_family(family: &Family, out: &mut String) {
    let series = family.series_list();
    if series.is_empty() {
        return;
    }
    let shape = &*family.shape;
    let name = shape.name;
    let _ = writeln!(out, "# TYPE {name} histogram");
    if let Some(unit) = unit_of(name) {
        let _ = writeln!(out, "# UNIT {name} {unit}");
    }
    write_help(name, family.help, out);
    let buckets = &shape.buckets;
    let mut counts = Vec::with_capacity(buckets.le.len());
    let mut number = itoa::Buffer::new();
    let mut prefix = String::new();
    for s in &series {
        let sum = s.read(&mut counts);
        prefix.clear();
        prefix.push_str(name);
        prefix.push_str("_bucket{");
        prefix.push_str(&s.labels);
        prefix.push_str(",le=\"");
        let mut cumulative = 0u64;
        for (i, (count, le)) in counts.iter().zip(buckets.le.iter()).enumerate() {
            cumulative += count;
            out.push_str(&prefix);
            out.push_str(le);
            out.push_str("\"} ");
            out.push_str(number.format(cumulative));
            if let Some(kept) = s.exemplar(i) {
                out.push_str(" # {trace_id=\"");
                exemplar::hex(&kept.trace_id, out);
                out.push_str("\",span_id=\"");
                exemplar::hex(&kept.span_id, out);
                let _ = write!(
                    out,
                    "\"}} {} {}.{:09}",
                    kept.value as f64 / buckets.per_unit,
                    kept.unix_nanos / 1_000_000_000,
                    kept.unix_nanos % 1_000_000_000
                );
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{name}_count{{{}}} {cumulative}", s.labels);
        let _ = writeln!(
            out,
            "{name}_sum{{{}}} {}",
            s.labels,
            sum as f64 / buckets.per_unit
        );
    }
}

/// The unit a family name ends with, for `# UNIT` (which must be the name's suffix).
fn unit_of(name: &str) -> Option<&'static str> {
    if name.ends_with("_seconds") {
        Some("seconds")
    } else if name.ends_with("_bytes") {
        Some("bytes")
    } else {
        None
    }
}

fn write_help(name: &str, help: &str, out: &mut String) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('\n');
}

/// Appends the families of a classic text exposition.
pub(crate) fn write_text(text: &str, out: &mut String) {
    for family in text_format::parse(text) {
        let counter_name = (family.kind == Kind::Counter)
            .then(|| {
                family
                    .name
                    .strip_suffix("_total")
                    .filter(|_| family.samples.iter().all(|s| s.name.ends_with("_total")))
            })
            .flatten();
        let (name, kind) = match family.kind {
            Kind::Counter => match counter_name {
                Some(base) => (base, "counter"),
                None => (family.name, "unknown"),
            },
            Kind::Gauge => (family.name, "gauge"),
            Kind::Histogram => (family.name, "histogram"),
            Kind::Summary => (family.name, "summary"),
            Kind::Untyped => (family.name, "unknown"),
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        if let Some(help) = &family.help {
            write_help(name, help, out);
        }
        match family.kind {
            Kind::Histogram => write_points(&family, "le", "_bucket", out),
            Kind::Summary => write_points(&family, "quantile", "", out),
            _ => {
                for s in &family.samples {
                    write_sample(s.name, s.labels, None, s.value, out);
                }
            }
        }
    }
}

/// A histogram's or summary's points: bucket (or quantile) lines, `_count`, `_sum`.
fn write_points(family: &text_format::Family<'_>, key: &str, suffix: &str, out: &mut String) {
    let mut name = String::with_capacity(family.name.len() + suffix.len());
    name.push_str(family.name);
    name.push_str(suffix);
    for point in text_format::points(family, key) {
        for (bound, value) in &point.lines {
            write_sample(&name, &point.labels, Some((key, *bound)), *value, out);
        }
        let count = format!("{}_count", family.name);
        write_sample(&count, &point.labels, None, point.count, out);
        let sum = format!("{}_sum", family.name);
        write_sample(&sum, &point.labels, None, point.sum, out);
    }
}

fn write_sample(
    name: &str,
    labels: &str,
    extra: Option<(&str, f64)>,
    value: f64,
    out: &mut String,
) {
    out.push_str(name);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some((key, bound)) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            write_number(bound, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    write_number(value, out);
    out.push('\n');
}

/// A number as OpenMetrics spells it (`+Inf`, `-Inf`, `NaN`).
fn write_number(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exemplar::Exemplar;
    use crate::metrics::histogram::LabelText;

    #[test]
    fn counters_lose_total_in_metadata_only_and_histograms_put_count_first() {
        let text = "# HELP jobs_total Jobs with \"quotes\".\n# TYPE jobs_total counter\njobs_total{q=\"a\"} 3\n\n\
                    # TYPE raw counter\nraw 2\n\
                    # TYPE lat histogram\nlat_bucket{le=\"1\"} 1\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 3.5\nlat_count 2\n\
                    # TYPE g gauge\ng inf\n";
        let mut out = String::new();
        write_text(text, &mut out);
        assert_eq!(
            out,
            "# TYPE jobs counter\n# HELP jobs Jobs with \\\"quotes\\\".\njobs_total{q=\"a\"} 3\n\
             # TYPE raw unknown\nraw 2\n\
             # TYPE lat histogram\nlat_bucket{le=\"1\"} 1\nlat_bucket{le=\"+Inf\"} 2\nlat_count 2\nlat_sum 3.5\n\
             # TYPE g gauge\ng +Inf\n"
        );
    }

    #[test]
    fn buckets_carry_the_exemplar_of_their_last_sampled_request() {
        let h = HttpHistograms::new(&[0.1, 1.0], &[1.0], None);
        let mut labels = LabelText::default();
        labels.push("http_route", "/a");
        let series = h.duration.series(&labels.finish());
        let e = Exemplar {
            trace_id: [0xab; 16],
            span_id: [0xcd; 8],
            start: std::time::Instant::now(),
        };
        series.record(50_000_000, Some(&e));
        series.record(2_000_000_000, None);
        let mut out = String::new();
        write_histograms(&h, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "# TYPE http_server_request_duration_seconds histogram"
        );
        assert_eq!(
            lines[1],
            "# UNIT http_server_request_duration_seconds seconds"
        );
        let first = lines[3];
        let (sample, exemplar) = first.split_once(" # ").unwrap();
        assert_eq!(
            sample,
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"0.1\"} 1"
        );
        let (ids, rest) = exemplar.split_once("} ").unwrap();
        assert_eq!(
            ids,
            format!(
                "{{trace_id=\"{}\",span_id=\"{}\"",
                "ab".repeat(16),
                "cd".repeat(8)
            )
        );
        let (value, ts) = rest.split_once(' ').unwrap();
        assert_eq!(value, "0.05");
        let ts: f64 = ts.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - ts).abs() < 60.0, "{ts} vs {now}");
        assert!(!lines[4].contains('#'), "no exemplar where none was kept");
        assert_eq!(
            &lines[6..],
            [
                "http_server_request_duration_seconds_count{http_route=\"/a\"} 2",
                "http_server_request_duration_seconds_sum{http_route=\"/a\"} 2.05"
            ]
        );
    }
}
