//! Metric handles cached per label set, so a request records without building strings.

use std::collections::HashMap;
use std::sync::RwLock;

use metrics::{Histogram, Label};

use super::names::*;
use super::Sink;
use crate::classify::{ErrorType, Outcome};
use crate::method::MethodLabel;

/// The histograms of one (route, method, status, error type) label set.
pub(crate) struct Series {
    duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
    rpc_duration: Option<Histogram>,
}

/// What one finished exchange records.
pub(crate) struct Sample {
    pub(crate) seconds: f64,
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
        let error = outcome.error.map(error_label);
        let mut labels = vec![
            Label::new(LABEL_METHOD, method.as_str()),
            Label::new(LABEL_ROUTE, route.to_owned()),
            Label::new(LABEL_STATUS, outcome.status.to_string()),
        ];
        if let Some(error) = &error {
            labels.push(Label::new(LABEL_ERROR_TYPE, error.clone()));
        }
        let rpc_duration = outcome.grpc.map(|code| {
            let mut rpc = vec![
                Label::new(LABEL_RPC_SYSTEM, "grpc"),
                Label::new(LABEL_RPC_METHOD, route.trim_start_matches('/').to_owned()),
                Label::new(LABEL_RPC_GRPC_STATUS, code.as_u8().to_string()),
            ];
            if let Some(error) = &error {
                rpc.push(Label::new(LABEL_ERROR_TYPE, error.clone()));
            }
            sink.histogram(RPC_SERVER_CALL_DURATION, rpc)
        });
        Series {
            duration: sink.histogram(HTTP_SERVER_REQUEST_DURATION, labels.clone()),
            request_size: sink.histogram(HTTP_SERVER_REQUEST_BODY_SIZE, labels.clone()),
            response_size: sink.histogram(HTTP_SERVER_RESPONSE_BODY_SIZE, labels),
            rpc_duration,
        }
    }

    fn record(&self, sample: &Sample) {
        self.duration.record(sample.seconds);
        self.request_size.record(sample.request_bytes as f64);
        self.response_size.record(sample.response_bytes as f64);
        if let Some(rpc) = &self.rpc_duration {
            rpc.record(sample.seconds);
        }
    }
}

fn error_label(error: ErrorType) -> String {
    match error {
        ErrorType::Failure(f) => f.as_str().to_owned(),
        ErrorType::Grpc(code) => code.name().to_owned(),
        ErrorType::Status(status) => status.to_string(),
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
