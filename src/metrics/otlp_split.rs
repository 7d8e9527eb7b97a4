//! Splits an encoded `ExportMetricsServiceRequest` into requests of at most `max` bytes, so
//! that a large service's metrics get past a collector's message limit (the OpenTelemetry
//! Collector's gRPC receiver refuses messages over 4 MiB by default) and ingest endpoints'
//! body limits.
//!
//! It walks the bytes [`otlp`](super::otlp) wrote, without decoding values: the request's
//! `ResourceMetrics`, their `ScopeMetrics`, their `Metric`s, and, for a metric too large for a
//! request of its own, the data message (`Gauge`, `Sum`, `Histogram`, ...) and its data
//! points. Every request it makes is a valid `ExportMetricsServiceRequest` carrying the same
//! resource and scope (every field of `ResourceMetrics` and `ScopeMetrics` but the list
//! split, copied). Metrics are packed whole, in order, a request ending where the next
//! metric does not fit in it; a metric that does not fit alone is cut into several `Metric` messages with the same name,
//! description, unit (every field but the data) and data message fields (temporality,
//! `is_monotonic`: every field but `data_points`), each with a run of its data points, in
//! order. Only a single data point larger than `max` with its resource and scope makes a
//! request over `max`: it goes alone, for the collector to judge. A message it cannot walk
//! (never the encoder's) goes unsplit. The split is a plan of slices of the message; each
//! request is written when sent ([`Split::write`]), so one at a time is in memory.

use crate::wire::{field_len, put_len, read_varint, FIXED32, FIXED64, LEN, VARINT};

/// `ExportMetricsServiceRequest.resource_metrics`.
const RESOURCE_METRICS: u64 = 1;
/// `ResourceMetrics.scope_metrics`.
const SCOPE_METRICS: u64 = 2;
/// `ScopeMetrics.metrics`.
const METRICS: u64 = 2;
/// The `Metric.data` oneof: gauge, sum, histogram, exponential histogram, summary.
const DATA: [u64; 5] = [5, 7, 9, 10, 11];
/// `data_points` of every data message.
const DATA_POINTS: u64 = 1;

/// The requests `message` (an encoded request) goes as when it is larger than `max`, to be
/// written one at a time ([`Split::write`]); `None` when it fits, or cannot be walked (never
/// the encoder's): then it goes as it is.
pub(crate) fn split(message: &[u8], max: usize) -> Option<Split<'_>> {
    if message.len() <= max {
        return None;
    }
    let mut split = Split {
        max,
        contexts: Vec::new(),
        cuts: Vec::new(),
        requests: Vec::new(),
    };
    split.run(message)?;
    (!split.requests.is_empty()).then_some(split)
}

/// The requests of a message, planned: slices of it, written on demand.
pub(crate) struct Split<'a> {
    max: usize,
    contexts: Vec<Context<'a>>,
    /// The metrics too large for a request of their own, taken apart.
    cuts: Vec<Cut<'a>>,
    requests: Vec<Request<'a>>,
}

/// A metric in a request: whole, or a run of the points of a cut one.
enum Part<'a> {
    Whole(&'a [u8]),
    Cut {
        cut: usize,
        points: std::ops::Range<usize>,
    },
}

/// A request: metrics of one `ScopeMetrics` (its context) under its resource.
struct Request<'a> {
    context: usize,
    parts: Vec<Part<'a>>,
    /// Their size as `metrics` fields of the `ScopeMetrics`.
    len: usize,
}

/// The fields around the metrics: those of a `ResourceMetrics` and of a `ScopeMetrics`
/// but the lists being split.
struct Context<'a> {
    resource: Vec<&'a [u8]>,
    resource_len: usize,
    scope: Vec<&'a [u8]>,
    scope_len: usize,
}

impl Context<'_> {
    /// A request's size with `metrics` bytes of metrics.
    fn size(&self, metrics: usize) -> usize {
        field_len(self.resource_len + field_len(self.scope_len + metrics))
    }
}

/// A metric to cut: its fields but the data, its data message's fields but the points,
/// and the points.
struct Cut<'a> {
    head: Vec<&'a [u8]>,
    head_len: usize,
    data_field: u8,
    data_head: Vec<&'a [u8]>,
    data_head_len: usize,
    points: Vec<&'a [u8]>,
}

impl<'a> Cut<'a> {
    fn of(metric: &'a [u8]) -> Option<Self> {
        let (head, head_len) = others(metric, &DATA)?;
        let mut data = None;
        for field in fields(metric) {
            let field = field?;
            if DATA.contains(&field.number) {
                // One data message (a oneof); several would not be a metric.
                if data.is_some() {
                    return None;
                }
                data = Some((field.number as u8, field.body?));
            }
        }
        let (data_field, data) = data?;
        let (data_head, data_head_len) = others(data, &[DATA_POINTS])?;
        let mut points = Vec::new();
        for field in fields(data) {
            if let Some(point) = field?.body_of(DATA_POINTS) {
                points.push(point);
            }
        }
        Some(Cut {
            head,
            head_len,
            data_field,
            data_head,
            data_head_len,
            points,
        })
    }

    /// The size of a run of points of this metric, `points` bytes of them, as a `metrics`
    /// field.
    fn len(&self, points: usize) -> usize {
        field_len(self.head_len + field_len(self.data_head_len + points))
    }
}

impl<'a> Split<'a> {
    /// How many requests.
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }

    /// Request `i`, after `prefix` zero bytes (room for a transport's framing).
    pub(crate) fn write(&self, i: usize, prefix: usize) -> Vec<u8> {
        let request = &self.requests[i];
        let context = &self.contexts[request.context];
        let size = context.size(request.len);
        let mut out = Vec::with_capacity(prefix + size);
        out.resize(prefix, 0);
        put_len(
            &mut out,
            RESOURCE_METRICS as u8,
            context.resource_len + field_len(context.scope_len + request.len),
        );
        context
            .resource
            .iter()
            .for_each(|f| out.extend_from_slice(f));
        put_len(
            &mut out,
            SCOPE_METRICS as u8,
            context.scope_len + request.len,
        );
        context.scope.iter().for_each(|f| out.extend_from_slice(f));
        for part in &request.parts {
            match part {
                Part::Whole(metric) => {
                    put_len(&mut out, METRICS as u8, metric.len());
                    out.extend_from_slice(metric);
                }
                Part::Cut { cut, points } => {
                    let cut = &self.cuts[*cut];
                    let points = &cut.points[points.clone()];
                    let points_len: usize = points.iter().map(|p| field_len(p.len())).sum();
                    let data_len = cut.data_head_len + points_len;
                    put_len(&mut out, METRICS as u8, cut.head_len + field_len(data_len));
                    cut.head.iter().for_each(|f| out.extend_from_slice(f));
                    put_len(&mut out, cut.data_field, data_len);
                    for point in points {
                        put_len(&mut out, DATA_POINTS as u8, point.len());
                        out.extend_from_slice(point);
                    }
                    cut.data_head.iter().for_each(|f| out.extend_from_slice(f));
                }
            }
        }
        debug_assert_eq!(out.len(), prefix + size);
        out
    }

    /// How many data points request `i` carries: what it loses when not delivered.
    pub(crate) fn points(&self, i: usize) -> usize {
        self.requests[i]
            .parts
            .iter()
            .map(|part| match part {
                Part::Whole(metric) => metric_points(metric),
                Part::Cut { points, .. } => points.len(),
            })
            .sum()
    }

    fn run(&mut self, message: &'a [u8]) -> Option<()> {
        for rm in fields(message) {
            // Nothing else is defined in the request; anything else could not be split.
            let rm = rm?.body_of(RESOURCE_METRICS)?;
            let (resource, resource_len) = others(rm, &[SCOPE_METRICS])?;
            for sm in fields(rm) {
                let Some(sm) = sm?.body_of(SCOPE_METRICS) else {
                    continue;
                };
                let (scope, scope_len) = others(sm, &[METRICS])?;
                self.contexts.push(Context {
                    resource: resource.clone(),
                    resource_len,
                    scope,
                    scope_len,
                });
                self.scope(sm)?;
            }
        }
        Some(())
    }

    /// The metrics of the last `ScopeMetrics` of the contexts, packed into requests.
    fn scope(&mut self, sm: &'a [u8]) -> Option<()> {
        let at = self.contexts.len() - 1;
        let mut request = Request {
            context: at,
            parts: Vec::new(),
            len: 0,
        };
        for field in fields(sm) {
            let Some(metric) = field?.body_of(METRICS) else {
                continue;
            };
            let context = &self.contexts[at];
            let whole = field_len(metric.len());
            // Too large for a request of its own: cut (one without data points goes whole).
            let cut = (context.size(whole) > self.max)
                .then(|| Cut::of(metric))
                .flatten();
            let Some(cut) = cut else {
                if context.size(request.len + whole) > self.max {
                    emit(&mut self.requests, &mut request);
                }
                request.parts.push(Part::Whole(metric));
                request.len += whole;
                continue;
            };
            // Runs of its points, the first filling this request.
            let index = self.cuts.len();
            let (mut first, mut points_len) = (0, 0);
            for (i, point) in cut.points.iter().enumerate() {
                let more = field_len(point.len());
                if context.size(request.len + cut.len(points_len + more)) > self.max
                    && !(first == i && request.parts.is_empty())
                {
                    if first < i {
                        request.len += cut.len(points_len);
                        request.parts.push(Part::Cut {
                            cut: index,
                            points: first..i,
                        });
                        (first, points_len) = (i, 0);
                    }
                    emit(&mut self.requests, &mut request);
                }
                points_len += more;
            }
            if first < cut.points.len() || cut.points.is_empty() {
                request.len += cut.len(points_len);
                request.parts.push(Part::Cut {
                    cut: index,
                    points: first..cut.points.len(),
                });
            }
            self.cuts.push(cut);
        }
        emit(&mut self.requests, &mut request);
        Some(())
    }
}

/// Keeps the request filled so far (if any) and starts an empty one.
fn emit<'a>(requests: &mut Vec<Request<'a>>, request: &mut Request<'a>) {
    if !request.parts.is_empty() {
        requests.push(Request {
            context: request.context,
            parts: std::mem::take(&mut request.parts),
            len: std::mem::take(&mut request.len),
        });
    }
}

/// How many data points a `Metric` carries (0 if it cannot be walked).
fn metric_points(metric: &[u8]) -> usize {
    let count = || -> Option<usize> {
        let mut n = 0;
        for data in fields(metric) {
            let data = data?;
            if let Some(data) = DATA.iter().find_map(|f| data.body_of(*f)) {
                for point in fields(data) {
                    n += usize::from(point?.number == DATA_POINTS);
                }
            }
        }
        Some(n)
    };
    count().unwrap_or(0)
}

/// One field as written: its number, its bytes (tag included), its body if length-delimited.
#[derive(Clone, Copy)]
struct Field<'a> {
    number: u64,
    raw: &'a [u8],
    body: Option<&'a [u8]>,
}

impl<'a> Field<'a> {
    /// The body of this field if it is the length-delimited field `number`.
    fn body_of(&self, number: u64) -> Option<&'a [u8]> {
        self.body.filter(|_| self.number == number)
    }
}

/// The fields of a message, in order; `None` at the first malformed one (then nothing more).
fn fields(buf: &[u8]) -> impl Iterator<Item = Option<Field<'_>>> {
    let mut rest = buf;
    let mut broken = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || broken {
            return None;
        }
        let field = next_field(&mut rest);
        broken = field.is_none();
        Some(field)
    })
}

fn next_field<'a>(buf: &mut &'a [u8]) -> Option<Field<'a>> {
    let start = *buf;
    let key = read_varint(buf)?;
    let mut body = None;
    match (key & 7) as u8 {
        VARINT => {
            read_varint(buf)?;
        }
        FIXED64 => *buf = buf.get(8..)?,
        FIXED32 => *buf = buf.get(4..)?,
        LEN => {
            let len = usize::try_from(read_varint(buf)?).ok()?;
            body = Some(buf.get(..len)?);
            *buf = &buf[len..];
        }
        _ => return None,
    }
    let raw = &start[..start.len() - buf.len()];
    Some(Field {
        number: key >> 3,
        raw,
        body,
    })
}

/// The fields of a message but those numbered `except`, as written, and their length.
fn others<'a>(message: &'a [u8], except: &[u64]) -> Option<(Vec<&'a [u8]>, usize)> {
    let mut kept = Vec::new();
    let mut len = 0;
    for field in fields(message) {
        let field = field?;
        if !except.contains(&field.number) {
            kept.push(field.raw);
            len += field.raw.len();
        }
    }
    Some((kept, len))
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
        summary_data_point::ValueAtQuantile, ExponentialHistogram, ExponentialHistogramDataPoint,
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, Summary, SummaryDataPoint,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    use super::*;

    const PREFIX: usize = 5;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn metric(name: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            description: format!("what {name} counts"),
            unit: "s".into(),
            metadata: vec![kv("origin", name)],
            data: Some(data),
        }
    }

    fn number(i: usize) -> NumberDataPoint {
        NumberDataPoint {
            attributes: vec![kv("http.route", &format!("/r{i}")), kv("k", "v")],
            start_time_unix_nano: 1_000,
            time_unix_nano: 2_000,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        }
    }

    /// A request with every kind of metric, `n` data points each, and a small one.
    fn request(n: usize) -> ExportMetricsServiceRequest {
        let metrics = vec![
            metric(
                "requests",
                Data::Sum(Sum {
                    data_points: (0..n).map(number).collect(),
                    aggregation_temporality: 1,
                    is_monotonic: true,
                }),
            ),
            metric(
                "small",
                Data::Gauge(Gauge {
                    data_points: vec![number(0)],
                }),
            ),
            metric(
                "duration",
                Data::Histogram(Histogram {
                    data_points: (0..n)
                        .map(|i| HistogramDataPoint {
                            attributes: vec![kv("http.route", &format!("/r{i}"))],
                            count: i as u64,
                            sum: Some(i as f64 / 2.0),
                            bucket_counts: vec![i as u64; 15],
                            explicit_bounds: vec![0.5; 14],
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: 2,
                }),
            ),
            metric(
                "native",
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: (0..n)
                        .map(|i| ExponentialHistogramDataPoint {
                            attributes: vec![kv("http.route", &format!("/r{i}"))],
                            count: 3,
                            scale: 3,
                            positive: Some(Buckets {
                                offset: -35,
                                bucket_counts: vec![1, 0, 2],
                            }),
                            zero_threshold: 1e-9,
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: 1,
                }),
            ),
            metric(
                "gauge",
                Data::Gauge(Gauge {
                    data_points: (0..n).map(number).collect(),
                }),
            ),
            metric(
                "summary",
                Data::Summary(Summary {
                    data_points: (0..n)
                        .map(|i| SummaryDataPoint {
                            attributes: vec![kv("q", &i.to_string())],
                            count: 2,
                            sum: 1.5,
                            quantile_values: vec![ValueAtQuantile {
                                quantile: 0.5,
                                value: 0.7,
                            }],
                            ..Default::default()
                        })
                        .collect(),
                }),
            ),
        ];
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "checkout")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "tower-observability".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
        }
    }

    /// Every request `message` goes as (itself when not split), each after `PREFIX` bytes;
    /// checks that each says how many points it carries.
    fn split_all(message: &[u8], max: usize) -> Vec<Vec<u8>> {
        let Some(split) = split(&message[PREFIX..], max) else {
            return vec![message.to_vec()];
        };
        (0..split.len())
            .map(|i| {
                let request = split.write(i, PREFIX);
                assert_eq!(split.points(i), points(&request[PREFIX..]));
                request
            })
            .collect()
    }

    /// The data points of an encoded request, decoded and counted.
    fn points(request: &[u8]) -> usize {
        let mut request = ExportMetricsServiceRequest::decode(request).unwrap();
        request
            .resource_metrics
            .iter_mut()
            .flat_map(|rm| &mut rm.scope_metrics)
            .flat_map(|sm| &mut sm.metrics)
            .map(|m| points_of(m).len())
            .sum()
    }

    fn encoded(request: &ExportMetricsServiceRequest) -> Vec<u8> {
        let mut out = vec![0; PREFIX];
        request.encode(&mut out).unwrap();
        out
    }

    fn points_of(metric: &mut Metric) -> Vec<Vec<u8>> {
        fn take<T: Message>(points: &mut Vec<T>) -> Vec<Vec<u8>> {
            std::mem::take(points)
                .iter()
                .map(Message::encode_to_vec)
                .collect()
        }
        match metric.data.as_mut().unwrap() {
            Data::Gauge(d) => take(&mut d.data_points),
            Data::Sum(d) => take(&mut d.data_points),
            Data::Histogram(d) => take(&mut d.data_points),
            Data::ExponentialHistogram(d) => take(&mut d.data_points),
            Data::Summary(d) => take(&mut d.data_points),
        }
    }

    /// Metrics without their points (every other field), and their points, encoded.
    fn taken_apart(metrics: &[Metric]) -> Vec<(Metric, Vec<Vec<u8>>)> {
        metrics
            .iter()
            .map(|m| {
                let mut m = m.clone();
                let points = points_of(&mut m);
                (m, points)
            })
            .collect()
    }

    /// Splits `request` at `max` and checks every piece; returns the pieces, decoded.
    fn check(
        request: &ExportMetricsServiceRequest,
        max: usize,
    ) -> Vec<ExportMetricsServiceRequest> {
        let pieces = split_all(&encoded(request), max);
        let decoded: Vec<ExportMetricsServiceRequest> = pieces
            .iter()
            .map(|p| {
                assert_eq!(p[..PREFIX], [0; PREFIX], "room for framing");
                assert!(p.len() - PREFIX <= max, "{} > {max}", p.len() - PREFIX);
                ExportMetricsServiceRequest::decode(&p[PREFIX..]).expect("a valid request")
            })
            .collect();
        let rm = &request.resource_metrics[0];
        let sm = &rm.scope_metrics[0];
        let mut joined: Vec<(Metric, Vec<Vec<u8>>)> = Vec::new();
        for piece in &decoded {
            // The same resource and scope in every piece.
            assert_eq!(piece.resource_metrics.len(), 1);
            let prm = &piece.resource_metrics[0];
            assert_eq!(prm.resource, rm.resource);
            assert_eq!(prm.schema_url, rm.schema_url);
            assert_eq!(prm.scope_metrics.len(), 1);
            let psm = &prm.scope_metrics[0];
            assert_eq!(psm.scope, sm.scope);
            assert_eq!(psm.schema_url, sm.schema_url);
            for (head, points) in taken_apart(&psm.metrics) {
                assert!(!points.is_empty(), "no empty piece of {}", head.name);
                match joined.last_mut() {
                    // A piece of the metric before: every field but the points copied.
                    Some((last, so_far)) if last.name == head.name => {
                        assert_eq!(*last, head);
                        so_far.extend(points);
                    }
                    _ => joined.push((head, points)),
                }
            }
        }
        // Together, the pieces are the request: every metric, every point once, in order.
        assert_eq!(joined, taken_apart(&sm.metrics));
        decoded
    }

    #[test]
    fn a_request_that_fits_goes_as_it_is() {
        let request = request(3);
        let message = encoded(&request);
        assert!(split(&message[PREFIX..], message.len() - PREFIX).is_none());
    }

    #[test]
    fn every_piece_is_a_valid_request_under_the_limit_and_together_they_are_the_request() {
        let request = request(400);
        let size = request.encoded_len();
        for max in [1024, 4096, 10_000, 65_536, size - 1] {
            let pieces = check(&request, max);
            assert!(pieces.len() > 1, "{max}");
            assert!(
                pieces.len() <= 2 * size / max + 2,
                "{max}: {} pieces",
                pieces.len()
            );
        }
        // Small metrics are kept whole; large ones cut, their other fields copied.
        let pieces = check(&request, 4096);
        let small: Vec<&Metric> = pieces
            .iter()
            .flat_map(|p| &p.resource_metrics[0].scope_metrics[0].metrics)
            .filter(|m| m.name == "small")
            .collect();
        assert_eq!(small.len(), 1);
        let sums: Vec<&Sum> = pieces
            .iter()
            .flat_map(|p| &p.resource_metrics[0].scope_metrics[0].metrics)
            .filter_map(|m| match &m.data {
                Some(Data::Sum(s)) => Some(s),
                _ => None,
            })
            .collect();
        assert!(sums.len() > 1);
        assert!(sums
            .iter()
            .all(|s| s.is_monotonic && s.aggregation_temporality == 1));
    }

    #[test]
    fn a_data_point_larger_than_the_limit_goes_alone() {
        let mut request = request(20);
        let rm = &mut request.resource_metrics[0];
        let Some(Data::Gauge(gauge)) = &mut rm.scope_metrics[0].metrics[4].data else {
            panic!()
        };
        gauge.data_points[7]
            .attributes
            .push(kv("huge", &"x".repeat(5000)));
        let message = encoded(&request);
        let pieces = split_all(&message, 4096);
        let over: Vec<_> = pieces.iter().filter(|p| p.len() - PREFIX > 4096).collect();
        assert_eq!(over.len(), 1);
        let alone = ExportMetricsServiceRequest::decode(&over[0][PREFIX..]).unwrap();
        let metrics = &alone.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 1);
        assert_eq!(points(&over[0][PREFIX..]), 1);
        // Every other piece within the limit; everything once.
        let total: usize = pieces.iter().map(|p| points(&p[PREFIX..])).sum();
        assert_eq!(total, 5 * 20 + 1);
    }

    #[test]
    fn what_cannot_be_walked_goes_unsplit() {
        let mut message = vec![0; PREFIX];
        message.extend(std::iter::repeat_n(0xff, 3000));
        assert!(split(&message[PREFIX..], 1024).is_none());
    }
}
