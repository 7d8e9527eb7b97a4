//! OTLP export (feature `otlp`): a bounded queue in front of an OpenTelemetry span exporter,
//! drained by one thread of its own.
//!
//! A request only moves its captured span into the queue (an uncontended lock and a push,
//! never blocking on the exporter); names, attributes and the OTLP encoding are made on the
//! exporter thread. The push that fills a batch wakes that thread (one wake per batch, not
//! per span), so bursts are exported as they come rather than on the next timer; otherwise
//! a partial batch leaves after `scheduled_delay`. A full queue drops the span and counts
//! it; an export that fails or outlasts its timeout counts its batch as dropped. So a
//! collector that is down or hangs costs requests nothing, and memory stays at the queue's
//! size.

use std::borrow::Cow;
use std::sync::mpsc::{self, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Counter;
use opentelemetry::trace::{
    Link, SpanContext as OtelContext, SpanId as OtelSpanId, SpanKind, Status,
    TraceFlags as OtelFlags, TraceId as OtelTraceId, TraceState as OtelState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::export::{FinishedSpan, Kind, SpanSink};
use super::{SpanContext, TraceParent};
use crate::error::BuildError;
use crate::metrics::{HttpMetrics, ServiceInfo};
use crate::route::{OVERFLOW, UNMATCHED};

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

type Spawn = Box<dyn FnOnce(Worker) -> Result<Arc<dyn SpanSink>, BuildError> + Send>;

/// A sink to start at `build()`: taken once (a user's exporter is not `Clone`).
#[derive(Clone)]
pub(crate) struct Pending(Arc<Mutex<Option<Spawn>>>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending(..)")
    }
}

/// What the builder knows about export.
#[derive(Debug, Clone, Default)]
pub(crate) enum Target {
    /// No export (the default without `from_env`, or `OTEL_TRACES_EXPORTER=none`).
    #[default]
    None,
    Otlp(OtlpSettings),
    Custom(Pending),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ExportConfig {
    pub(crate) target: Target,
    pub(crate) batch: BatchSettings,
    /// `OTEL_SDK_DISABLED=true`: nothing is exported whatever else is set.
    pub(crate) disabled: bool,
}

/// What a starting sink needs from the layer.
pub(crate) struct Worker {
    resource: Resource,
    batch: BatchSettings,
    exported: Counter,
    dropped: Counter,
}

impl ExportConfig {
    pub(crate) fn from_env(var: &impl Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        let mut config = ExportConfig::default();
        if let Some(v) = var("OTEL_SDK_DISABLED") {
            config.disabled = crate::env::boolean("OTEL_SDK_DISABLED", &v)?;
        }
        let exporter = var("OTEL_TRACES_EXPORTER").unwrap_or_else(|| "otlp".into());
        match exporter.trim() {
            "otlp" => {}
            "none" => return Ok(config),
            other => {
                return Err(BuildError::env(
                    "OTEL_TRACES_EXPORTER",
                    other,
                    "this crate exports with otlp (or none)",
                ))
            }
        }
        let mut otlp = OtlpSettings::default();
        let either = |specific: &str, generic: &str| {
            var(specific)
                .map(|v| (specific.to_owned(), v))
                .or_else(|| var(generic).map(|v| (generic.to_owned(), v)))
        };
        if let Some((name, v)) = either(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            otlp.protocol = match v.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                _ => return Err(BuildError::env(&name, &v, "expected grpc or http/protobuf")),
            };
        }
        if let Some(v) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            otlp.endpoint = Some(check_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v)?);
        } else if let Some(v) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let base = check_url("OTEL_EXPORTER_OTLP_ENDPOINT", v)?;
            otlp.endpoint = Some(match otlp.protocol {
                OtlpProtocol::Grpc => base,
                // The generic variable names the base; each signal appends its path.
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            });
        }
        if let Some((name, v)) = either(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            otlp.timeout = millis(&name, &v)?;
        }
        if let Some((name, v)) = either(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            otlp.headers = headers(&name, &v)?;
        }
        let batch = &mut config.batch;
        if let Some(v) = var("OTEL_BSP_MAX_QUEUE_SIZE") {
            batch.max_queue_size = count("OTEL_BSP_MAX_QUEUE_SIZE", &v)?;
        }
        if let Some(v) = var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            batch.max_export_batch_size = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &v)?;
        }
        if let Some(v) = var("OTEL_BSP_SCHEDULE_DELAY") {
            batch.scheduled_delay = millis("OTEL_BSP_SCHEDULE_DELAY", &v)?;
        }
        if let Some(v) = var("OTEL_BSP_EXPORT_TIMEOUT") {
            batch.export_timeout = millis("OTEL_BSP_EXPORT_TIMEOUT", &v)?;
        }
        config.target = Target::Otlp(otlp);
        Ok(config)
    }

    /// Starts the sink, if there is one to start.
    pub(crate) fn open(
        &self,
        info: &ServiceInfo,
        resource_attributes: &[(String, String)],
        metrics: &HttpMetrics,
    ) -> Result<Option<Arc<dyn SpanSink>>, BuildError> {
        if self.disabled {
            return Ok(None);
        }
        let batch = self.batch;
        if batch.max_queue_size == 0 || batch.max_export_batch_size == 0 {
            return Err(BuildError::setting(
                "batch_settings",
                "queue and batch sizes must be at least 1",
            ));
        }
        let worker = Worker {
            resource: resource(info, resource_attributes),
            batch,
            exported: metrics.spans_exported.clone(),
            dropped: metrics.spans_dropped.clone(),
        };
        match &self.target {
            Target::None => Ok(None),
            Target::Otlp(settings) => {
                let settings = settings.clone();
                spawn(worker, move || otlp_exporter(&settings)).map(Some)
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

impl Target {
    pub(crate) fn exporter<E: SpanExporter + 'static>(exporter: E) -> Self {
        let spawn: Spawn = Box::new(move |worker| spawn(worker, move || Ok(exporter)));
        Target::Custom(Pending(Arc::new(Mutex::new(Some(spawn)))))
    }

    pub(crate) fn processor<P: SpanProcessor + 'static>(processor: P) -> Self {
        let spawn: Spawn = Box::new(move |worker: Worker| {
            let mut processor = processor;
            processor.set_resource(&worker.resource);
            Ok(Arc::new(ProcessorSink {
                processor: Arc::new(processor),
                scope: scope(),
            }) as Arc<dyn SpanSink>)
        });
        Target::Custom(Pending(Arc::new(Mutex::new(Some(spawn)))))
    }
}

fn check_url(var: &str, v: String) -> Result<String, BuildError> {
    let v = v.trim().to_owned();
    match v.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() && uri.host().is_some() => Ok(v),
        _ => Err(BuildError::env(
            var,
            &v,
            "expected a URL like http://collector:4318",
        )),
    }
}

/// `key=value,key2=value2` (W3C Baggage octets): values percent-decoded, empty members
/// skipped; every pair must make a valid header. Values are keys and tokens, so an error
/// names the key, never the value.
fn headers(var: &str, v: &str) -> Result<Vec<(String, String)>, BuildError> {
    const HIDDEN: &str = "(not shown: it may hold a secret)";
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(BuildError::env(var, HIDDEN, "expected key=value pairs"));
        };
        let key = key.trim().to_ascii_lowercase();
        let bad = |what: &str| BuildError::env(var, HIDDEN, format!("{what} for key {key:?}"));
        if http::HeaderName::from_bytes(key.as_bytes()).is_err() {
            return Err(bad("not a header name"));
        }
        let value = percent_decode(value.trim()).ok_or_else(|| bad("a bad %-escape"))?;
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(bad("a value that cannot be a header"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn millis(var: &str, v: &str) -> Result<Duration, BuildError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| BuildError::env(var, v, "expected milliseconds"))
}

fn count(var: &str, v: &str) -> Result<usize, BuildError> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| BuildError::env(var, v, "expected a whole number from 1 to 1000000"))
}

fn resource(info: &ServiceInfo, extra: &[(String, String)]) -> Resource {
    let mut attributes: Vec<KeyValue> = extra
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attributes.push(KeyValue::new("service.name", info.name.clone()));
    attributes.push(KeyValue::new("service.version", info.version.clone()));
    attributes.push(KeyValue::new(
        "deployment.environment.name",
        info.environment.clone(),
    ));
    attributes.push(KeyValue::new("telemetry.sdk.language", "rust"));
    attributes.push(KeyValue::new("telemetry.sdk.name", "tower-observability"));
    // Later keys win: the service's identity overrides what OTEL_RESOURCE_ATTRIBUTES said.
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("tower-observability")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

fn otlp_exporter(settings: &OtlpSettings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built = match settings.protocol {
        OtlpProtocol::Grpc => {
            use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
            use opentelemetry_otlp::WithTonicConfig;
            let mut b = builder.with_tonic().with_timeout(settings.timeout);
            if !settings.headers.is_empty() {
                let mut map = http::HeaderMap::new();
                for (key, value) in &settings.headers {
                    // Checked when read; a setting made in code is checked here.
                    let name = http::HeaderName::from_bytes(key.as_bytes());
                    let value = http::HeaderValue::from_str(value);
                    match (name, value) {
                        (Ok(name), Ok(value)) => {
                            map.append(name, value);
                        }
                        _ => return Err(format!("header {key:?} cannot be sent")),
                    }
                }
                b = b.with_metadata(MetadataMap::from_headers(map));
            }
            match &settings.endpoint {
                Some(endpoint) => b.with_endpoint(endpoint.clone()).build(),
                None => b.build(),
            }
        }
        OtlpProtocol::HttpProtobuf => {
            use opentelemetry_otlp::WithHttpConfig;
            let mut b = builder
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(settings.timeout);
            if !settings.headers.is_empty() {
                b = b.with_headers(settings.headers.iter().cloned().collect());
            }
            match &settings.endpoint {
                Some(endpoint) => b.with_endpoint(endpoint.clone()).build(),
                None => b.build(),
            }
        }
    };
    built.map_err(|e| e.to_string())
}

enum Control {
    Flush(SyncSender<bool>),
    Shutdown(SyncSender<bool>),
}

/// The bounded queue between requests and the exporter thread. A request takes an
/// uncontended lock and pushes; the push that makes the queue `wake_at` long wakes the
/// exporter (an atomic swap, or one futex wake if it sleeps: once per batch).
struct Queue {
    spans: Mutex<Vec<FinishedSpan>>,
    capacity: usize,
    /// A full batch (or a full queue, when batches are larger than the queue).
    wake_at: usize,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FinishedSpan>> {
        // A panic while pushing leaves a valid Vec behind.
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the layer holds: the queue, and the line to the exporter thread.
struct QueueSink {
    queue: Arc<Queue>,
    /// `None` once dropped, so the exporter sees the line closed as soon as it wakes.
    control: Mutex<Option<mpsc::Sender<Control>>>,
    /// The exporter thread, woken by a full batch, an order, or the sink's end.
    worker: std::thread::Thread,
    dropped: Counter,
}

impl SpanSink for QueueSink {
    fn submit(&self, span: FinishedSpan) {
        let mut spans = self.queue.lock();
        let len = spans.len();
        if len < self.queue.capacity {
            spans.push(span);
            drop(spans);
            if len + 1 == self.queue.wake_at {
                self.worker.unpark();
            }
        } else {
            drop(spans);
            self.dropped.increment(1);
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.ask(Control::Flush, timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.ask(Control::Shutdown, timeout)
    }
}

impl QueueSink {
    fn ask(&self, make: fn(SyncSender<bool>) -> Control, timeout: Duration) -> bool {
        let (ack, done) = mpsc::sync_channel(1);
        let sent = self
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|control| control.send(make(ack)).is_ok());
        self.worker.unpark();
        sent && done.recv_timeout(timeout).unwrap_or(false)
    }
}

impl Drop for QueueSink {
    fn drop(&mut self) {
        // Close the line first, then wake the exporter: it sends what is left and stops.
        drop(
            self.control
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        self.worker.unpark();
    }
}

/// Starts the exporter thread; the exporter is made on it, inside its runtime (tonic and
/// hyper clients need one).
fn spawn<E, F>(worker: Worker, make: F) -> Result<Arc<dyn SpanSink>, BuildError>
where
    E: SpanExporter + 'static,
    F: FnOnce() -> Result<E, String> + Send + 'static,
{
    let queue = Arc::new(Queue {
        spans: Mutex::new(Vec::with_capacity(worker.batch.max_queue_size)),
        capacity: worker.batch.max_queue_size,
        wake_at: worker
            .batch
            .max_export_batch_size
            .min(worker.batch.max_queue_size),
    });
    let (control, orders) = mpsc::channel();
    let (ready, started) = mpsc::sync_channel::<Result<(), String>>(1);
    let dropped = worker.dropped.clone();
    let worker_queue = queue.clone();
    let thread = std::thread::Builder::new()
        .name("tower-observability-otlp".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            let exporter = {
                let _guard = runtime.enter();
                make()
            };
            match exporter {
                Ok(mut exporter) => {
                    exporter.set_resource(&worker.resource);
                    let _ = ready.send(Ok(()));
                    let spare = Vec::with_capacity(worker_queue.capacity);
                    Export {
                        runtime,
                        exporter,
                        worker,
                        scope: scope(),
                        failing: false,
                        queue: worker_queue,
                        spare,
                    }
                    .run(orders);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        })
        .map_err(|e| BuildError::setting("span_exporter", format!("cannot start: {e}")))?;
    match started.recv() {
        Ok(Ok(())) => Ok(Arc::new(QueueSink {
            queue,
            control: Mutex::new(Some(control)),
            worker: thread.thread().clone(),
            dropped,
        })),
        Ok(Err(e)) => Err(BuildError::setting("span_exporter", e)),
        Err(_) => Err(BuildError::setting(
            "span_exporter",
            "the exporter thread died",
        )),
    }
}

struct Export<E> {
    runtime: tokio::runtime::Runtime,
    exporter: E,
    worker: Worker,
    scope: InstrumentationScope,
    /// Whether the last export failed (failures are logged on change, not every time).
    failing: bool,
    queue: Arc<Queue>,
    /// Swapped with the queue's buffer, so draining allocates nothing.
    spare: Vec<FinishedSpan>,
}

impl<E: SpanExporter> Export<E> {
    fn run(mut self, orders: mpsc::Receiver<Control>) {
        let delay = self.worker.batch.scheduled_delay;
        let mut due = Instant::now() + delay;
        loop {
            loop {
                match orders.try_recv() {
                    Ok(Control::Flush(ack)) => {
                        let ok = self.drain();
                        let _ = ack.send(ok);
                    }
                    Ok(Control::Shutdown(ack)) => {
                        let ok = self.drain();
                        let ok = self.exporter.shutdown().is_ok() && ok;
                        let _ = ack.send(ok);
                        return;
                    }
                    // The layer is gone: send what is left and stop.
                    Err(TryRecvError::Disconnected) => {
                        self.drain();
                        let _ = self.exporter.shutdown();
                        return;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            let queued = self.queue.lock().len();
            let now = Instant::now();
            if queued >= self.queue.wake_at || (queued > 0 && now >= due) {
                self.drain();
                due = Instant::now() + delay;
                // Look again at once: the queue filled on while this batch was out.
                continue;
            }
            // Until a batch fills, an order comes, or the partial batch is due. An empty
            // queue sleeps a whole delay: a span arriving meanwhile is then due.
            let wait = if queued > 0 {
                due.saturating_duration_since(now)
            } else {
                due = now + delay;
                delay
            };
            std::thread::park_timeout(wait);
        }
    }

    /// Exports everything queued now, in batches; true if every export succeeded.
    fn drain(&mut self) -> bool {
        std::mem::swap(&mut *self.queue.lock(), &mut self.spare);
        let mut spans = std::mem::take(&mut self.spare);
        let mut ok = true;
        let size = self.worker.batch.max_export_batch_size;
        while !spans.is_empty() {
            let n = spans.len().min(size);
            let batch: Vec<SpanData> = spans
                .drain(..n)
                .map(|span| to_span_data(span, &self.scope))
                .collect();
            ok &= self.export(batch);
        }
        self.spare = spans;
        ok
    }

    fn export(&mut self, spans: Vec<SpanData>) -> bool {
        let n = spans.len() as u64;
        let timeout = self.worker.batch.export_timeout;
        let exporter = &self.exporter;
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, exporter.export(spans)).await });
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {timeout:?}")),
        };
        match error {
            None => {
                self.worker.exported.increment(n);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(target: "tower_observability::otlp", "span export recovered");
                }
                true
            }
            Some(error) => {
                self.worker.dropped.increment(n);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(target: "tower_observability::otlp", %error, spans = n, "span export failed; spans are dropped and counted until it recovers");
                }
                false
            }
        }
    }
}

/// A user's span processor, handed each span as it ends.
struct ProcessorSink<P> {
    processor: Arc<P>,
    scope: InstrumentationScope,
}

impl<P: SpanProcessor + 'static> SpanSink for ProcessorSink<P> {
    fn submit(&self, span: FinishedSpan) {
        self.processor.on_end(to_span_data(span, &self.scope));
    }

    /// `force_flush` takes no timeout: it runs on a thread of its own, waited for up to
    /// `timeout` (and left to finish by itself if it takes longer).
    fn flush(&self, timeout: Duration) -> bool {
        let processor = self.processor.clone();
        let (done, finished) = mpsc::sync_channel(1);
        let flushing = std::thread::Builder::new()
            .name("tower-observability-flush".into())
            .spawn(move || {
                let _ = done.send(processor.force_flush().is_ok());
            });
        flushing.is_ok() && finished.recv_timeout(timeout).unwrap_or(false)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.processor.shutdown_with_timeout(timeout).is_ok()
    }
}

fn otel_context(ctx: &SpanContext, remote: bool) -> OtelContext {
    let state = if ctx.state.is_empty() {
        OtelState::default()
    } else {
        ctx.state.as_str().parse().unwrap_or_default()
    };
    OtelContext::new(
        OtelTraceId::from_bytes(ctx.trace_id.0),
        OtelSpanId::from_bytes(ctx.span_id.0),
        OtelFlags::new(ctx.flags.0),
        remote,
        state,
    )
}

fn link_context(caller: &TraceParent) -> OtelContext {
    OtelContext::new(
        OtelTraceId::from_bytes(caller.trace_id.0),
        OtelSpanId::from_bytes(caller.parent_id.0),
        OtelFlags::new(caller.flags.0),
        true,
        OtelState::default(),
    )
}

fn string(s: &str) -> Value {
    Value::String(StringValue::from(s.to_owned()))
}

/// The span name, attributes and status, by the HTTP semantic conventions.
fn to_span_data(span: FinishedSpan, scope: &InstrumentationScope) -> SpanData {
    let method = span.method.as_str();
    let standard = crate::method::MethodLabel::of(&span.method).as_str();
    let name_method = if standard == "_OTHER" {
        "HTTP"
    } else {
        standard
    };
    let route = span
        .route
        .as_ref()
        .map(|r| r.shared_name())
        .filter(|r| **r != *UNMATCHED && **r != *OVERFLOW);
    let name: Cow<'static, str> = match (span.kind, &route) {
        (Kind::Server, Some(route)) => {
            let mut name = String::with_capacity(name_method.len() + 1 + route.len());
            name.push_str(name_method);
            name.push(' ');
            name.push_str(route);
            name.into()
        }
        _ => name_method.into(),
    };
    let mut attributes = Vec::with_capacity(16);
    attributes.push(KeyValue::new("http.request.method", standard));
    if standard == "_OTHER" {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            string(method),
        ));
    }
    let uri = &span.uri;
    let scheme: Value = match uri.scheme_str() {
        None | Some("http") => "http".into(),
        Some("https") => "https".into(),
        Some(other) => string(other),
    };
    let host_header = span.host.as_ref().and_then(|h| h.to_str().ok());
    let authority = uri.authority().map(|a| a.as_str()).or(host_header);
    let parsed = authority.and_then(|a| a.parse::<http::uri::Authority>().ok());
    let host = parsed.as_ref().map(|a| a.host().to_owned());
    let port = parsed.as_ref().and_then(|a| a.port_u16()).map(i64::from);
    match span.kind {
        Kind::Server => {
            if let Some(route) = route {
                attributes.push(KeyValue::new("http.route", route));
            }
            attributes.push(KeyValue::new("url.path", string(uri.path())));
            attributes.push(KeyValue::new("url.scheme", scheme));
            if let (true, Some(query)) = (span.record_query, uri.query()) {
                attributes.push(KeyValue::new("url.query", string(query)));
            }
            if let Some(ua) = span.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
                attributes.push(KeyValue::new("user_agent.original", string(ua)));
            }
            if let Some(peer) = span.peer {
                attributes.push(KeyValue::new("client.address", peer.ip().to_string()));
                attributes.push(KeyValue::new("client.port", i64::from(peer.port())));
            }
            // A generated request id is the trace id: only the caller's is worth recording.
            if let Some(id) = span.request_id.as_ref().and_then(|id| id.from_caller()) {
                attributes.push(KeyValue::new(
                    "http.request.header.x-request-id",
                    Value::Array(Array::String(vec![StringValue::from(id.to_owned())])),
                ));
            }
        }
        Kind::Client => {
            let full = match (span.record_query, uri.query()) {
                (true, _) | (false, None) => uri.to_string(),
                (false, Some(_)) => format!(
                    "{}://{}{}",
                    uri.scheme_str().unwrap_or("http"),
                    authority.unwrap_or(""),
                    uri.path()
                ),
            };
            attributes.push(KeyValue::new("url.full", full));
        }
    }
    if let Some(host) = host {
        attributes.push(KeyValue::new("server.address", host));
    }
    if let Some(port) = port {
        attributes.push(KeyValue::new("server.port", port));
    }
    let version = match span.version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    };
    attributes.push(KeyValue::new("network.protocol.version", version));
    if span.status != 0 {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(span.status),
        ));
    }
    if span.grpc_call {
        attributes.push(KeyValue::new("rpc.system", "grpc"));
        if let Some((service, method)) = uri.path().trim_start_matches('/').split_once('/') {
            attributes.push(KeyValue::new("rpc.service", string(service)));
            attributes.push(KeyValue::new("rpc.method", string(method)));
        }
        if let Some(code) = span.grpc_status {
            attributes.push(KeyValue::new(
                "rpc.grpc.status_code",
                i64::from(code.as_u8()),
            ));
        }
    }
    let error_type = span.error_type();
    if let Some(error) = &error_type {
        attributes.push(KeyValue::new("error.type", error.clone()));
    }
    let status = match (span.is_error(), error_type) {
        (true, Some(error)) => Status::error(error),
        _ => Status::Unset,
    };
    let mut links = SpanLinks::default();
    links.links.extend(
        span.link
            .iter()
            .map(|caller| Link::with_context(link_context(caller))),
    );
    let (parent_span_id, parent_span_is_remote) = match span.parent {
        Some((id, remote)) => (OtelSpanId::from_bytes(id.0), remote),
        None => (OtelSpanId::INVALID, false),
    };
    SpanData {
        span_context: otel_context(&span.context, false),
        parent_span_id,
        parent_span_is_remote,
        span_kind: match span.kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
        },
        name,
        start_time: span.start,
        end_time: span.end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links,
        status,
        instrumentation_scope: scope.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<ExportConfig, BuildError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportConfig::from_env(&move |k: &str| map.get(k).cloned())
    }

    fn otlp(c: &ExportConfig) -> &OtlpSettings {
        match &c.target {
            Target::Otlp(settings) => settings,
            other => panic!("expected OTLP, got {other:?}"),
        }
    }

    #[test]
    fn standard_variables() {
        // Unset: OTLP over HTTP/protobuf to the default endpoint, as the specification says.
        let c = config(&[]).unwrap();
        assert_eq!(otlp(&c), &OtlpSettings::default());
        assert_eq!(c.batch, BatchSettings::default());

        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(
            otlp(&c).endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .unwrap();
        assert_eq!(otlp(&c).protocol, OtlpProtocol::Grpc);
        assert_eq!(otlp(&c).endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(otlp(&c).timeout, Duration::from_millis(2500));
        // The per-signal variables win, and their endpoint is taken as it is.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9999/traces"),
        ])
        .unwrap();
        assert_eq!(otlp(&c).protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(otlp(&c).endpoint.as_deref(), Some("http://b:9999/traces"));
        let c = config(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
        ])
        .unwrap();
        assert_eq!(
            c.batch,
            BatchSettings {
                max_queue_size: 100,
                max_export_batch_size: 10,
                scheduled_delay: Duration::from_millis(250),
                export_timeout: Duration::from_secs(1),
            }
        );
        assert!(matches!(
            config(&[("OTEL_TRACES_EXPORTER", "none")]).unwrap().target,
            Target::None
        ));
        assert!(config(&[("OTEL_SDK_DISABLED", "true")]).unwrap().disabled);
    }

    #[test]
    fn export_headers_are_baggage_style_and_percent_decoded() {
        let c = config(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            " api-key = s%3Dcr%2Ct ,, X-Tenant=acme%20eu",
        )])
        .unwrap();
        assert_eq!(
            otlp(&c).headers,
            [
                ("api-key".to_owned(), "s=cr,t".to_owned()),
                ("x-tenant".to_owned(), "acme eu".to_owned())
            ]
        );
        // The per-signal variable wins over the generic one.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
        ])
        .unwrap();
        assert_eq!(otlp(&c).headers, [("b".to_owned(), "2".to_owned())]);
        for bad in ["novalue", "bad key=1", "k=%zz", "k=a%0Ab"] {
            let err = config(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("OTEL_EXPORTER_OTLP_TRACES_HEADERS"), "{err}");
        }
        // A secret in a bad list is not echoed in the error.
        let err = config(&[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=sekrit%zz")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("sekrit") && err.contains("api-key"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "carrier-pigeon"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "-1"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_SDK_DISABLED", "perhaps"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }
}
