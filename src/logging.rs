//! Log lines that carry the trace (feature `logging`): JSON for production, text for
//! development, filtered by `RUST_LOG`.
//!
//! Every event emitted while a request is served (in the handler, its spans, its body)
//! carries the request span's `trace_id`, `span_id` and `request_id`, so a log search
//! leads to the trace and back. This holds whatever `RUST_LOG` says: [`init`]'s filter
//! ([`env_filter`]) always keeps the request span (target `tower_observability::request`)
//! on, and where your own filter turns it off (`RUST_LOG=myapp=debug` in a registry of your
//! own), [`layer`] takes the ids from the request being served on the thread instead.
//!
//! ```no_run
//! use tower_observability::logging::{self, LogFormat};
//!
//! logging::init(LogFormat::from_env())?; // OBSERVABILITY_LOG_FORMAT=json|text, RUST_LOG
//! tracing::info!("listening");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A JSON line:
//!
//! ```text
//! {"timestamp":"2026-11-22T00:41:07.250117Z","level":"INFO","target":"checkout","message":"charged","amount":42,"span":"request","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","request_id":"req-42"}
//! ```

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Directive;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, Layer};

/// The target of the layer's request span.
const REQUEST_TARGET: &str = "tower_observability::request";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, with `trace_id`, `span_id` and `request_id` at the top level.
    Json,
    /// Human-readable lines; the request span's ids appear in its context.
    Text,
}

impl LogFormat {
    /// `OBSERVABILITY_LOG_FORMAT`: `json` or `text`; JSON when unset, and when set to
    /// anything else, which is said on stderr (logging is not set up yet).
    pub fn from_env() -> Self {
        const VAR: &str = "OBSERVABILITY_LOG_FORMAT";
        match std::env::var(VAR) {
            Ok(v) if v.trim().eq_ignore_ascii_case("text") => LogFormat::Text,
            Ok(v) if v.trim().eq_ignore_ascii_case("json") || v.trim().is_empty() => {
                LogFormat::Json
            }
            Err(std::env::VarError::NotPresent) => LogFormat::Json,
            Ok(v) => {
                warning!(
                    target: "tower_observability::logging",
                    { variable = VAR, },
                    "{VAR}={v:?} is neither json nor text: logging JSON"
                );
                LogFormat::Json
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                warning!(
                    target: "tower_observability::logging",
                    { variable = VAR, },
                    "{VAR} is not UTF-8: logging JSON"
                );
                LogFormat::Json
            }
        }
    }
}

/// Installs the global subscriber: [`env_filter`] (`RUST_LOG`, default `info`), lines to
/// stdout.
pub fn init(format: LogFormat) -> Result<(), TryInitError> {
    tracing_subscriber::registry()
        .with(env_filter())
        .with(layer(format, std::io::stdout))
        .try_init()
}

/// The filter [`init`] installs: [`filter`] of `RUST_LOG` (`info` when unset or invalid).
pub fn env_filter() -> EnvFilter {
    let directives = std::env::var("RUST_LOG").ok();
    filter(
        directives
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or("info"),
    )
}

/// `directives` (`RUST_LOG` syntax; `info` when invalid) plus one keeping the request span
/// on, so a targeted filter such as `myapp=debug` does not cost log lines their trace ids.
/// The span is only a carrier of ids: it adds no line of its own.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// use tower_observability::logging::{self, LogFormat};
///
/// let subscriber = tracing_subscriber::registry()
///     .with(logging::filter("checkout=debug,tower_http=warn"))
///     .with(logging::layer(LogFormat::Json, std::io::stdout));
/// # drop(subscriber);
/// ```
pub fn filter(directives: &str) -> EnvFilter {
    let base = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    base.add_directive(request_span_directive())
}

fn request_span_directive() -> Directive {
    // The span is at ERROR level, so this enables nothing but the span itself.
    format!("{REQUEST_TARGET}=error")
        .parse()
        .expect("a valid directive")
}

/// The logging layer alone, writing to `writer`: to compose with your own registry (and,
/// for example, a `tracing-opentelemetry` layer for your own spans). With a filter of your
/// own that leaves the request span off, lines written while a request is polled still
/// carry its ids (from [`current_request`](crate::trace::current_request)); [`filter`]
/// keeps the span on, which also covers work you `instrument` with it.
pub fn layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Json => Box::new(RequestIds.and_then(fmt.event_format(JsonLines))),
        LogFormat::Text => Box::new(
            RequestIds.and_then(
                fmt.with_ansi(false)
                    .event_format(TextLines(Format::default().with_ansi(false))),
            ),
        ),
    }
}

/// The ids of a request span, kept in its extensions for the formatter.
struct Ids {
    trace_id: String,
    span_id: String,
    request_id: Option<String>,
}

/// Reads the ids off the request span when it opens.
struct RequestIds;

impl<S> Layer<S> for RequestIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != REQUEST_TARGET {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        // Another of our layers (a JSON file beside text on stdout) may have read them.
        if extensions.get_mut::<Ids>().is_some() {
            return;
        }
        let mut ids = Ids {
            trace_id: String::new(),
            span_id: String::new(),
            request_id: None,
        };
        attrs.record(&mut IdVisitor(&mut ids));
        extensions.insert(ids);
    }
}

struct IdVisitor<'a>(&'a mut Ids);

impl Visit for IdVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "trace_id" => self.0.trace_id = format!("{value:?}"),
            "span_id" => self.0.span_id = format!("{value:?}"),
            "request_id" => self.0.request_id = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

/// One JSON object per event.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), timestamp.into());
        let meta = event.metadata();
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut JsonVisitor(&mut line));
        let mut found = false;
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = true;
            for span in scope {
                if innermost {
                    line.insert("span".into(), span.name().into());
                    innermost = false;
                }
                if let Some(ids) = span.extensions().get::<Ids>() {
                    line.insert("trace_id".into(), ids.trace_id.clone().into());
                    line.insert("span_id".into(), ids.span_id.clone().into());
                    if let Some(request_id) = &ids.request_id {
                        line.insert("request_id".into(), request_id.clone().into());
                    }
                    found = true;
                    break;
                }
            }
        }
        if !found {
            // The request span is filtered out: the request polled on this thread says.
            if let Some(request) = crate::trace::current_request() {
                let span = &request.span;
                line.insert("trace_id".into(), span.trace_id.to_hex().as_str().into());
                line.insert("span_id".into(), span.span_id.to_hex().as_str().into());
                if let Some(request_id) = request.request_id {
                    line.insert("request_id".into(), request_id.to_string().into());
                }
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Human-readable lines: the default format, whose span context shows the request span's
/// ids; when that span is filtered out, the ids of the request polled on this thread are
/// appended instead.
struct TextLines(Format<Full, SystemTime>);

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let in_span = ctx
            .event_scope()
            .is_some_and(|mut scope| scope.any(|span| span.extensions().get::<Ids>().is_some()));
        let request = if in_span {
            None
        } else {
            crate::trace::current_request()
        };
        let Some(request) = request else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        write!(
            writer,
            "{line} trace_id={} span_id={}",
            request.span.trace_id, request.span.span_id
        )?;
        if let Some(request_id) = &request.request_id {
            write!(writer, " request_id={request_id}")?;
        }
        writeln!(writer)
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        // The line's own keys are not overwritten by an event field of the same name.
        let name = match field.name() {
            n @ ("timestamp" | "level" | "target" | "trace_id" | "span_id" | "span") => {
                format!("field.{n}")
            }
            n => n.to_owned(),
        };
        self.0.insert(name, value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}
