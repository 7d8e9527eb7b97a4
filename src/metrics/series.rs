//! Metric handles cached per label set, so a request records without building strings.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use metrics::{Histogram, Label};

use super::exemplar::Exemplar;
use super::histogram::{self, LabelText, NANOS_PER_SECOND};
use super::names::*;
use super::Sink;
use crate::classify::{ErrorType, Outcome};
use crate::method::MethodLabel;

/// The histograms of one (route, method, status, error type) label set.
pub(crate) struct LabelSetHandles {
    duration: Handle,
    request_size: Handle,
    response_size: Handle,
    rpc_duration: Option<Handle>,
}

/// One histogram of a label set: kept by the crate, or the application's recorder's.
enum Handle {
    Own(Arc<histogram::Series>),
    /// Through the facade, with the recorded units per exposed unit.
    Facade(Histogram, f64),
}

impl Handle {
    #[inline]
    fn record(&self, value: u64, exemplar: Option<&Exemplar>) {
        match self {
            Handle::Own(series) => series.record(value, exemplar),
            Handle::Facade(histogram, per_unit) => histogram.record(value as f64 / per_unit),
        }
    }
}

/// What one finished exchange records.
pub(crate) struct Sample {
    pub(crate) nanos: u64,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
}

/// The series of one route, keyed by a packed (method, outcome) key.
#[derive(Default)]
pub(crate) struct SeriesCache {
    series: RwLock<HashMap<u64, LabelSetHandles, foldhash::fast::RandomState>>,
}

impl SeriesCache {
    /// Records one exchange, registering its series the first time the label set is seen;
    /// `exemplar`: the server span's ids, when it is sampled and exported.
    pub(crate) fn record(
        &self,
        sink: &Sink,
        route: &str,
        method: MethodLabel,
        outcome: &Outcome,
        sample: &Sample,
        exemplar: Option<&Exemplar>,
    ) {
        let key = pack(method, outcome);
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            series.record(sample, exemplar);
            return;
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key)
            .or_insert_with(|| LabelSetHandles::register(sink, route, method, outcome))
            .record(sample, exemplar);
    }
}

impl LabelSetHandles {
    fn register(sink: &Sink, route: &str, method: MethodLabel, outcome: &Outcome) -> Self {
        let labels = LabelSet::http(route, method, outcome);
        let rpc = LabelSet::rpc(route, outcome);
        match sink {
            Sink::Own(registry) => {
                let h = &registry.histograms;
                let labels = labels.text();
                LabelSetHandles {
                    duration: Handle::Own(h.duration.series(&labels)),
                    request_size: Handle::Own(h.request_size.series(&labels)),
                    response_size: Handle::Own(h.response_size.series(&labels)),
                    rpc_duration: rpc.map(|rpc| Handle::Own(h.rpc_duration.series(&rpc.text()))),
                }
            }
            Sink::Global => {
                let histogram = |name, labels: &LabelSet, per_unit| {
                    Handle::Facade(sink.histogram(name, labels.facade()), per_unit)
                };
                LabelSetHandles {
                    duration: histogram(HTTP_SERVER_REQUEST_DURATION, &labels, NANOS_PER_SECOND),
                    request_size: histogram(HTTP_SERVER_REQUEST_BODY_SIZE, &labels, 1.0),
                    response_size: histogram(HTTP_SERVER_RESPONSE_BODY_SIZE, &labels, 1.0),
                    rpc_duration: rpc
                        .map(|rpc| histogram(RPC_SERVER_CALL_DURATION, &rpc, NANOS_PER_SECOND)),
                }
            }
        }
    }

    fn record(&self, sample: &Sample, exemplar: Option<&Exemplar>) {
        self.duration.record(sample.nanos, exemplar);
        self.request_size.record(sample.request_bytes, None);
        self.response_size.record(sample.response_bytes, None);
        if let Some(rpc) = &self.rpc_duration {
            rpc.record(sample.nanos, exemplar);
        }
    }
}

/// The labels of one series, built once for either backend: the crate's own histograms
/// take them as exposition text, the application's recorder as `metrics` labels.
struct LabelSet(Vec<(&'static str, String)>);

impl LabelSet {
    /// `http_server_*`: method, route, status, and the error type of errors.
    fn http(route: &str, method: MethodLabel, outcome: &Outcome) -> Self {
        let mut labels = vec![
            (LABEL_METHOD, method.as_str().to_owned()),
            (LABEL_ROUTE, route.to_owned()),
            (LABEL_STATUS, outcome.status.to_string()),
        ];
        labels.extend(outcome.error.map(|e| (LABEL_ERROR_TYPE, e.to_string())));
        LabelSet(labels)
    }

    /// `rpc_server_call_duration`, for gRPC calls: system, method, code, error type.
    fn rpc(route: &str, outcome: &Outcome) -> Option<Self> {
        let code = outcome.grpc?;
        let mut labels = vec![
            (LABEL_RPC_SYSTEM, "grpc".to_owned()),
            (LABEL_RPC_METHOD, route.trim_start_matches('/').to_owned()),
            (LABEL_RPC_GRPC_STATUS, code.as_u8().to_string()),
        ];
        labels.extend(outcome.error.map(|e| (LABEL_ERROR_TYPE, e.to_string())));
        Some(LabelSet(labels))
    }

    fn text(&self) -> Arc<str> {
        let mut text = LabelText::default();
        for (key, value) in &self.0 {
            text.push(key, value);
        }
        text.finish()
    }

    fn facade(&self) -> Vec<Label> {
        (self.0.iter())
            .map(|(key, value)| Label::new(*key, value.clone()))
            .collect()
    }
}

/// Packs the label-set of an outcome into one integer (the route is the cache's owner).
fn pack(method: MethodLabel, outcome: &Outcome) -> u64 {
    let (tag, detail) = match outcome.error {
        None => (0u64, 0u64),
        Some(ErrorType::Failure(f)) => (1, f as u64),
        Some(ErrorType::Grpc(code)) => (2, code.as_u8() as u64),
        Some(ErrorType::Status(_)) => (3, 0),
    };
    let grpc = outcome.grpc.map_or(0xff, |c| c.as_u8() as u64);
    (method as u64) | (outcome.status as u64) << 8 | tag << 24 | detail << 32 | grpc << 40
}
