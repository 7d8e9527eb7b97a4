//! Metric handles cached per label set, so a request records without building strings.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use metrics::{Histogram, Label};

use super::histogram::{self, LabelText, NANOS_PER_SECOND};
use super::names::*;
use super::Sink;
use crate::classify::{ErrorType, Outcome};
use crate::method::MethodLabel;

/// The histograms of one (route, method, status, error type) label set.
pub(crate) struct Series {
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
    fn record(&self, value: u64) {
        match self {
            Handle::Own(series) => series.record(value),
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
    series: RwLock<HashMap<u64, Series, foldhash::fast::RandomState>>,
}

impl SeriesCache {
    /// Records one exchange, registering its series the first time the label set is seen.
    pub(crate) fn record(
        &self,
        sink: &Sink,
        route: &str,
        method: MethodLabel,
        outcome: &Outcome,
        sample: &Sample,
    ) {
        let key = pack(method, outcome);
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            series.record(sample);
            return;
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key)
            .or_insert_with(|| Series::register(sink, route, method, outcome))
            .record(sample);
    }
}

impl Series {
    fn register(sink: &Sink, route: &str, method: MethodLabel, outcome: &Outcome) -> Self {
        let error = outcome.error.map(|e| e.to_string());
        let status = outcome.status.to_string();
        let rpc_code = outcome.grpc.map(|code| code.as_u8().to_string());
        let rpc_method = route.trim_start_matches('/');
        match sink {
            Sink::Own(registry) => {
                let h = &registry.histograms;
                let mut labels = LabelText::default();
                labels.push(LABEL_METHOD, method.as_str());
                labels.push(LABEL_ROUTE, route);
                labels.push(LABEL_STATUS, &status);
                if let Some(error) = &error {
                    labels.push(LABEL_ERROR_TYPE, error);
                }
                let labels = labels.finish();
                let rpc_duration = rpc_code.map(|code| {
                    let mut rpc = LabelText::default();
                    rpc.push(LABEL_RPC_SYSTEM, "grpc");
                    rpc.push(LABEL_RPC_METHOD, rpc_method);
                    rpc.push(LABEL_RPC_GRPC_STATUS, &code);
                    if let Some(error) = &error {
                        rpc.push(LABEL_ERROR_TYPE, error);
                    }
                    Handle::Own(h.rpc_duration.series(&rpc.finish()))
                });
                Series {
                    duration: Handle::Own(h.duration.series(&labels)),
                    request_size: Handle::Own(h.request_size.series(&labels)),
                    response_size: Handle::Own(h.response_size.series(&labels)),
                    rpc_duration,
                }
            }
            Sink::Global => {
                let mut labels = vec![
                    Label::new(LABEL_METHOD, method.as_str()),
                    Label::new(LABEL_ROUTE, route.to_owned()),
                    Label::new(LABEL_STATUS, status),
                ];
                if let Some(error) = &error {
                    labels.push(Label::new(LABEL_ERROR_TYPE, error.clone()));
                }
                let rpc_duration = rpc_code.map(|code| {
                    let mut rpc = vec![
                        Label::new(LABEL_RPC_SYSTEM, "grpc"),
                        Label::new(LABEL_RPC_METHOD, rpc_method.to_owned()),
                        Label::new(LABEL_RPC_GRPC_STATUS, code),
                    ];
                    if let Some(error) = &error {
                        rpc.push(Label::new(LABEL_ERROR_TYPE, error.clone()));
                    }
                    let h = sink.histogram(RPC_SERVER_CALL_DURATION, rpc);
                    Handle::Facade(h, NANOS_PER_SECOND)
                });
                let histogram =
                    |name, per_unit| Handle::Facade(sink.histogram(name, labels.clone()), per_unit);
                Series {
                    duration: histogram(HTTP_SERVER_REQUEST_DURATION, NANOS_PER_SECOND),
                    request_size: histogram(HTTP_SERVER_REQUEST_BODY_SIZE, 1.0),
                    response_size: histogram(HTTP_SERVER_RESPONSE_BODY_SIZE, 1.0),
                    rpc_duration,
                }
            }
        }
    }

    fn record(&self, sample: &Sample) {
        self.duration.record(sample.nanos);
        self.request_size.record(sample.request_bytes);
        self.response_size.record(sample.response_bytes);
        if let Some(rpc) = &self.rpc_duration {
            rpc.record(sample.nanos);
        }
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
