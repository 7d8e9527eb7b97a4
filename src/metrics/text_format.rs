//! Reading the Prometheus text format back into families, for what the crate does not keep
//! itself: the exporter's registry (the application's `metrics::` calls, the crate's
//! counters and gauges) and the process metrics. The other formats (OpenMetrics,
//! Prometheus protobuf, OTLP) are written from these families, so the whole exposition is
//! in every format. The input is what `metrics-exporter-prometheus` and the crate render:
//! well-formed, one family after another; a line that does not parse is skipped.

use std::borrow::Cow;

/// A family's type, as `# TYPE` says (no `# TYPE`: untyped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// One family: its name, help (text-format escapes undone), type and samples.
#[derive(Debug)]
pub(crate) struct Family<'a> {
    pub(crate) name: &'a str,
    pub(crate) help: Option<Cow<'a, str>>,
    pub(crate) kind: Kind,
    pub(crate) samples: Vec<Sample<'a>>,
}

/// One sample line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample<'a> {
    /// The full sample name (`foo_bucket`, `foo_total`, ...).
    pub(crate) name: &'a str,
    /// `k="v",...` as written (escaped), without braces; may be empty.
    pub(crate) labels: &'a str,
    pub(crate) value: f64,
}

impl Sample<'_> {
    /// The suffix after the family name (`_bucket`, `_sum`, ...; empty for the name itself).
    pub(crate) fn suffix<'s>(&'s self, family: &str) -> &'s str {
        self.name.strip_prefix(family).unwrap_or("")
    }
}

/// Parses `text` into families, in order.
pub(crate) fn parse(text: &str) -> Vec<Family<'_>> {
    let mut families: Vec<Family<'_>> = Vec::new();
    for line in text.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (Some(keyword), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let rest = parts.next().unwrap_or("");
            let family = match families.last_mut() {
                Some(f) if f.name == name && f.samples.is_empty() => f,
                _ => {
                    families.push(Family {
                        name,
                        help: None,
                        kind: Kind::Untyped,
                        samples: Vec::new(),
                    });
                    families.last_mut().expect("just pushed")
                }
            };
            match keyword {
                "HELP" => family.help = Some(unescape(rest)),
                "TYPE" => {
                    family.kind = match rest.trim() {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "summary" => Kind::Summary,
                        _ => Kind::Untyped,
                    }
                }
                _ => {}
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        let belongs = families
            .last()
            .is_some_and(|f| belongs(f.kind, f.name, sample.name));
        if !belongs {
            families.push(Family {
                name: sample.name,
                help: None,
                kind: Kind::Untyped,
                samples: Vec::new(),
            });
        }
        families
            .last_mut()
            .expect("a family is open")
            .samples
            .push(sample);
    }
    families
}

fn belongs(kind: Kind, family: &str, sample: &str) -> bool {
    let Some(suffix) = sample.strip_prefix(family) else {
        return false;
    };
    match kind {
        Kind::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count"),
        Kind::Summary => matches!(suffix, "" | "_sum" | "_count"),
        _ => suffix.is_empty(),
    }
}

fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (name, labels, rest) = match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            let close = closing_brace(line, i + 1)?;
            (&line[..i], &line[i + 1..close], &line[close + 1..])
        }
        Some(i) => (&line[..i], "", &line[i..]),
        None => return None,
    };
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name,
        labels,
        value: parse_value(value)?,
    })
}

/// The `}` closing the label set opened before `from`, skipping quoted values.
fn closing_brace(line: &str, from: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    let (mut quoted, mut i) = (false, from);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A sample value: a float, `+Inf`, `-Inf`, `NaN` (Rust's `inf` too).
pub(crate) fn parse_value(v: &str) -> Option<f64> {
    v.parse::<f64>().ok()
}

/// Undoes the exposition format's escapes (`\\`, `\n`, `\"`) in HELP text and label values.
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// The label pairs of a label text (`k="v",...`), values unescaped.
pub(crate) fn label_pairs(labels: &str) -> Vec<(&str, Cow<'_, str>)> {
    let mut pairs = Vec::new();
    let mut rest = labels;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_start_matches([',', ' ']).trim();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let Some(end) = closing_quote(body) else {
            break;
        };
        pairs.push((key, unescape(&body[..end])));
        rest = &body[end + 1..];
    }
    pairs
}

fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A label text without the label `key` (the `le` of a bucket, the `quantile` of a
/// summary), and that label's value: what groups a histogram's or summary's lines.
pub(crate) fn split_label<'a>(labels: &'a str, key: &str) -> (String, Option<Cow<'a, str>>) {
    let mut rest = String::with_capacity(labels.len());
    let mut found = None;
    let mut text = labels;
    while let Some(eq) = text.find('=') {
        let start_key = text[..eq].trim_start_matches([',', ' ']);
        let after = &text[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let Some(end) = closing_quote(body) else {
            break;
        };
        if start_key.trim() == key {
            found = Some(unescape(&body[..end]));
        } else {
            if !rest.is_empty() {
                rest.push(',');
            }
            rest.push_str(start_key.trim());
            rest.push_str("=\"");
            rest.push_str(&body[..end]);
            rest.push('"');
        }
        text = &body[end + 1..];
    }
    (rest, found)
}

/// The points of a histogram or summary family: per label set (without `le`/`quantile`),
/// the `(bound or quantile, value)` lines, the sum and the count, in order of appearance.
#[derive(Debug, Default)]
pub(crate) struct Point {
    pub(crate) labels: String,
    pub(crate) lines: Vec<(f64, f64)>,
    pub(crate) sum: f64,
    pub(crate) count: f64,
}

/// Groups a histogram (`key` = `le`) or summary (`key` = `quantile`) family into points.
pub(crate) fn points(family: &Family<'_>, key: &str) -> Vec<Point> {
    let mut points: Vec<Point> = Vec::new();
    for sample in &family.samples {
        let (labels, bound) = split_label(sample.labels, key);
        let index = match points.iter().rposition(|p| p.labels == labels) {
            Some(i) => i,
            None => {
                points.push(Point {
                    labels,
                    ..Point::default()
                });
                points.len() - 1
            }
        };
        let point = &mut points[index];
        match sample.suffix(family.name) {
            "_sum" => point.sum = sample.value,
            "_count" => point.count = sample.value,
            _ => {
                if let Some(bound) = bound.and_then(|b| parse_value(&b)) {
                    point.lines.push((bound, sample.value));
                }
            }
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP jobs_total Jobs done, with a \\ and a\nnew line.
# TYPE jobs_total counter
jobs_total{queue="a\"b"} 3
jobs_total{queue="c"} 4

# TYPE temp gauge
temp -1.5
# HELP lat Latency.
# TYPE lat histogram
lat_bucket{route="/x",le="0.1"} 1
lat_bucket{route="/x",le="+Inf"} 2
lat_sum{route="/x"} 0.35
lat_count{route="/x"} 2
# TYPE q summary
q{quantile="0.5"} 7
q_sum 10
q_count 2
loose{a="1"} 5
"#;

    #[test]
    fn families_come_back_with_their_samples() {
        let f = parse(TEXT);
        let names: Vec<_> = f
            .iter()
            .map(|f| (f.name, f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("jobs_total", Kind::Counter, 2),
                ("temp", Kind::Gauge, 1),
                ("lat", Kind::Histogram, 4),
                ("q", Kind::Summary, 3),
                ("loose", Kind::Untyped, 1),
            ]
        );
        assert_eq!(
            f[0].help.as_deref(),
            Some("Jobs done, with a \\ and a\nnew line.")
        );
        assert_eq!(f[0].samples[0].labels, r#"queue="a\"b""#);
        assert_eq!(label_pairs(f[0].samples[0].labels)[0].1, "a\"b");
        assert_eq!(f[1].samples[0].value, -1.5);
        let lat = points(&f[2], "le");
        assert_eq!(lat.len(), 1);
        assert_eq!(lat[0].labels, r#"route="/x""#);
        assert_eq!(lat[0].lines, [(0.1, 1.0), (f64::INFINITY, 2.0)]);
        assert_eq!((lat[0].sum, lat[0].count), (0.35, 2.0));
        let q = points(&f[3], "quantile");
        assert_eq!(q[0].lines, [(0.5, 7.0)]);
    }

    #[test]
    fn label_pairs_survive_commas_and_braces_in_values() {
        let pairs = label_pairs(r#"a="x,y}",b="\\n""#);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0], ("a", Cow::Borrowed("x,y}")));
        assert_eq!(pairs[1].1, "\\n");
        let line = r#"m{a="}"} 1"#;
        let s = parse_sample(line).unwrap();
        assert_eq!((s.name, s.labels, s.value), ("m", r#"a="}""#, 1.0));
    }
}
