//! OTLP export settings (feature `otlp`): where spans go, read from the standard
//! `OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*`, `OTEL_TRACES_EXPORTER` and `OTEL_SDK_DISABLED`
//! variables or set in code, and the start of the export behind the layer's bounded queue
//! ([`queue`](super::queue)): the crate's own OTLP encoder and collector client
//! ([`collector`](super::collector)), or a user's OpenTelemetry exporter or processor
//! ([`sdk`](super::sdk)).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::collector::OtlpBackend;
use super::export::SpanSink;
use super::queue::{self, Worker};
use crate::error::BuildError;
use crate::metrics::names::{SPANS_DROPPED, SPANS_EXPORTED};
use crate::metrics::{ServiceInfo, Sink};

/// The OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (default port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318); the specification's default.
    HttpProtobuf,
}

/// Where spans go and how: the standard `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// The full URL spans are sent to (`.../v1/traces` for HTTP); `None` for the default.
    pub endpoint: Option<String>,
    /// Timeout of one export call.
    pub timeout: Duration,
    /// Headers (HTTP) or metadata (gRPC) sent with every export, e.g. a collector's API key
    /// (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`:
    /// `key=value,key2=value2`, values percent-decoded).
    pub headers: Vec<(String, String)>,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        OtlpSettings {
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: None,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
        }
    }
}

/// The largest queue or batch size: a sanity bound (a span waiting in the queue takes a
/// few hundred bytes).
pub(crate) const MAX_BATCH_SIZE: usize = 1 << 24;

/// The export queue: its bound, how spans are batched, how long an export may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Spans waiting beyond this are dropped and counted (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048).
    pub max_queue_size: usize,
    /// Spans per export call (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub max_export_batch_size: usize,
    /// Longest wait before a partial batch is sent (`OTEL_BSP_SCHEDULE_DELAY`, 5 s).
    pub scheduled_delay: Duration,
    /// Longest an export may take before its batch is dropped (`OTEL_BSP_EXPORT_TIMEOUT`, 30 s).
    pub export_timeout: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(5),
            export_timeout: Duration::from_secs(30),
        }
    }
}

pub(crate) type Spawn = Box<dyn FnOnce(Worker) -> Result<Arc<dyn SpanSink>, BuildError> + Send>;

/// A sink to start at `build()`: taken once (a user's exporter is not `Clone`).
#[derive(Clone)]
pub(crate) struct ExporterToStart(pub(crate) Arc<Mutex<Option<Spawn>>>);

impl std::fmt::Debug for ExporterToStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExporterToStart(..)")
    }
}

/// What the builder knows about export.
#[derive(Debug, Clone, Default)]
pub(crate) enum Target {
    /// No export (the default without `from_env`, or `OTEL_TRACES_EXPORTER=none`).
    #[default]
    None,
    Otlp(OtlpSettings),
    Custom(ExporterToStart),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ExportConfig {
    pub(crate) target: Target,
    pub(crate) batch: BatchSettings,
    /// `OTEL_SDK_DISABLED=true`: nothing is exported whatever else is set.
    pub(crate) disabled: bool,
}

impl ExportConfig {
    /// Checks the settings, with every other setting before anything starts.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let batch = &self.batch;
        let sizes = 1..=MAX_BATCH_SIZE;
        if !sizes.contains(&batch.max_queue_size) || !sizes.contains(&batch.max_export_batch_size) {
            return Err(BuildError::setting(
                "batch_settings",
                format!("queue and batch sizes must be from 1 to {MAX_BATCH_SIZE}"),
            ));
        }
        Ok(())
    }

    /// Starts the sink, if there is one to start.
    pub(crate) fn open(
        &self,
        info: &ServiceInfo,
        resource_attributes: &[(String, String)],
        sink: &Sink,
    ) -> Result<Option<Arc<dyn SpanSink>>, BuildError> {
        // Without an exporter there are no export counters: a 0 would suggest one.
        if self.disabled || matches!(self.target, Target::None) {
            return Ok(None);
        }
        let batch = self.batch;
        let worker = Worker {
            resource: resource(info, resource_attributes),
            batch,
            exported: sink.counter_at_zero(SPANS_EXPORTED),
            dropped: Arc::new(crate::delivery::Dropped::register(sink, SPANS_DROPPED)),
        };
        match &self.target {
            Target::None => Ok(None),
            Target::Otlp(settings) => {
                let settings = settings.clone();
                queue::spawn(worker, "otlp", move |worker: &Worker| {
                    OtlpBackend::new(&settings, worker)
                })
                .map(Some)
            }
            Target::Custom(pending) => {
                let spawn = pending
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .ok_or_else(|| {
                        BuildError::setting(
                            "span_exporter",
                            "an exporter can start one layer only; give each build() its own",
                        )
                    })?;
                spawn(worker).map(Some)
            }
        }
    }
}

/// The resource attributes: what `OTEL_RESOURCE_ATTRIBUTES` said, then the service's
/// identity over it (a key appears once; the service's value wins).
fn resource(info: &ServiceInfo, extra: &[(String, String)]) -> Vec<(String, String)> {
    let own = [
        ("service.name", info.name.as_str()),
        ("service.version", info.version.as_str()),
        ("deployment.environment.name", info.environment.as_str()),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.name", "tower-observability"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    extra
        .iter()
        .filter(|(k, _)| !own.iter().any(|(o, _)| o == k))
        .cloned()
        .chain(own.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .collect()
}
