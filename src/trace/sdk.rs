//! The bridge to the OpenTelemetry SDK (feature `otlp`): a user's own span exporter or
//! span processor receives the layer's spans as `SpanData`, with the same name, attributes
//! and status the built-in OTLP encoder writes (both read them from [`semconv`]).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{
    Link, SpanContext as OtelContext, SpanId as OtelSpanId, SpanKind, Status,
    TraceFlags as OtelFlags, TraceId as OtelTraceId, TraceState as OtelState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::export::{FinishedSpan, Kind, SpanSink};
use super::otlp::{ExporterToStart, Spawn, Target};
use super::queue::{self, Backend, ExportSetup};
use super::semconv::{self, AttributeSink};
use super::{SpanContext, TraceParent};
use crate::delivery::{DropReason, Failure};

impl Target {
    pub(crate) fn exporter<E: SpanExporter + 'static>(exporter: E) -> Self {
        let spawn: Spawn = Box::new(move |setup| {
            queue::spawn(setup, "span_exporter", move |setup: &ExportSetup| {
                let mut exporter = exporter;
                exporter.set_resource(&resource(&setup.resource));
                Ok(SdkBackend {
                    exporter,
                    scope: scope(),
                })
            })
        });
        Target::Custom(ExporterToStart(Arc::new(Mutex::new(Some(spawn)))))
    }

    pub(crate) fn processor<P: SpanProcessor + 'static>(processor: P) -> Self {
        let spawn: Spawn = Box::new(move |setup: ExportSetup| {
            let mut processor = processor;
            processor.set_resource(&resource(&setup.resource));
            Ok(Arc::new(ProcessorSink {
                processor: Arc::new(processor),
                scope: scope(),
            }) as Arc<dyn SpanSink>)
        });
        Target::Custom(ExporterToStart(Arc::new(Mutex::new(Some(spawn)))))
    }
}

fn resource(attributes: &[(String, String)]) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("tower-observability")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// A user's span exporter behind the layer's queue.
struct SdkBackend<E> {
    exporter: E,
    scope: InstrumentationScope,
}

impl<E: SpanExporter> Backend for SdkBackend<E> {
    fn export(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        spans: &mut dyn Iterator<Item = FinishedSpan>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let batch: Vec<SpanData> = spans.map(|s| to_span_data(s, &self.scope)).collect();
        let exporter = &self.exporter;
        queue::within(runtime, timeout, async {
            exporter
                .export(batch)
                .await
                .map_err(|e| Failure::new(DropReason::Rejected, e.to_string()))
        })
    }

    fn shutdown(&mut self, _runtime: &tokio::runtime::Runtime) -> bool {
        self.exporter.shutdown().is_ok()
    }

    fn endpoint(&self) -> String {
        format!("the span exporter {}", std::any::type_name::<E>())
    }
}

/// A user's span processor, handed each span as it ends.
struct ProcessorSink<P> {
    processor: Arc<P>,
    scope: InstrumentationScope,
}

impl<P: SpanProcessor + 'static> SpanSink for ProcessorSink<P> {
    fn submit(&self, span: FinishedSpan) -> bool {
        self.processor.on_end(to_span_data(span, &self.scope));
        true
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

/// Attributes as the SDK holds them.
struct KeyValues(Vec<KeyValue>);

impl AttributeSink for KeyValues {
    fn string(&mut self, key: &'static str, value: &str) {
        self.0.push(KeyValue::new(key, value.to_owned()));
    }

    fn static_str(&mut self, key: &'static str, value: &'static str) {
        self.0.push(KeyValue::new(key, value));
    }

    fn shared(&mut self, key: &'static str, value: &Arc<str>) {
        self.0
            .push(KeyValue::new(key, StringValue::from(value.clone())));
    }

    fn string_parts(&mut self, key: &'static str, parts: &[&str]) {
        self.0.push(KeyValue::new(key, parts.concat()));
    }

    fn int(&mut self, key: &'static str, value: i64) {
        self.0.push(KeyValue::new(key, value));
    }

    fn string_list(&mut self, key: &'static str, value: &str) {
        let list = Array::String(vec![StringValue::from(value.to_owned())]);
        self.0.push(KeyValue::new(key, Value::Array(list)));
    }
}

fn to_span_data(span: FinishedSpan, scope: &InstrumentationScope) -> SpanData {
    let mut attributes = KeyValues(Vec::with_capacity(16));
    semconv::attributes(&span, &mut attributes);
    let status = match semconv::error_type(&span) {
        Some(mut error) if span.is_error() => Status::error(error.as_str().to_owned()),
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
        name: {
            let name = semconv::name(&span);
            match name.as_static() {
                Some(name) => name.into(),
                None => name.parts().concat().into(),
            }
        },
        start_time: span.start,
        end_time: span.end,
        attributes: attributes.0,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links,
        status,
        instrumentation_scope: scope.clone(),
    }
}
