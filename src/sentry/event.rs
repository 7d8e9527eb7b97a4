//! The Sentry event of a failed exchange.

use std::borrow::Cow;

use sentry_core::protocol::{
    Context, Event, Exception, Level, Mechanism, Request, SpanStatus, TraceContext, Values,
};

use super::{panic_capture, privacy, Detail, Reporter, RequestReport};
use crate::classify::{ErrorType, Outcome};
use crate::method::MethodLabel;

/// Builds the event: what failed (message or exception), where (tags, transaction, the
/// scrubbed request), and the trace it belongs to.
pub(crate) fn build(
    reporter: &Reporter,
    report: &RequestReport,
    outcome: &Outcome,
    method: MethodLabel,
    route: &str,
    trace: Option<crate::signal::SpanIds>,
) -> Event<'static> {
    let method_name = report.request.method.as_str();
    let transaction = format!("{method_name} {route}");
    let server_error = outcome.error.is_some();
    let mut event = Event {
        level: if server_error {
            Level::Error
        } else {
            Level::Warning
        },
        transaction: Some(transaction.clone()),
        logger: Some("tower_observability".into()),
        release: reporter.release.clone().map(Cow::Owned),
        environment: reporter.environment.clone().map(Cow::Owned),
        request: Some(request(reporter, report)),
        ..Event::default()
    };
    match &report.detail {
        Some(Detail::Panic { message, backtrace }) => {
            event.exception = exception(
                "panic",
                message,
                "panic",
                backtrace.as_ref().and_then(panic_capture::stacktrace),
            );
        }
        Some(Detail::ServiceError { type_name, message }) => {
            event.exception = exception(type_name, message, "tower::Service", None);
        }
        Some(Detail::BodyError { message }) => {
            event.exception = exception("body error", message, "http_body::Body", None);
        }
        None => event.message = Some(message(report, outcome, &transaction)),
    }
    let tags = &mut event.tags;
    tags.insert("method".into(), method.as_str().into());
    tags.insert("route".into(), route.into());
    tags.insert("status".into(), outcome.status.to_string());
    tags.insert("service".into(), reporter.service.clone());
    if let Some(environment) = &reporter.environment {
        tags.insert("environment".into(), environment.clone());
    }
    if let Some(release) = &reporter.release {
        tags.insert("release".into(), release.clone());
    }
    if let Some(error) = outcome.error {
        tags.insert("error.type".into(), error.to_string());
    }
    if let Some(code) = outcome.grpc {
        tags.insert("rpc.grpc.status_code".into(), code.as_u8().to_string());
    }
    // The server span's ids, so Sentry links the event to the trace.
    if let Some(trace) = trace {
        event.contexts.insert(
            "trace".into(),
            Context::Trace(Box::new(TraceContext {
                trace_id: trace.trace_id.into(),
                span_id: trace.span_id.into(),
                op: Some("http.server".into()),
                status: Some(if server_error {
                    SpanStatus::InternalError
                } else {
                    SpanStatus::InvalidArgument
                }),
                ..TraceContext::default()
            })),
        );
    }
    event
}

fn exception(
    ty: &str,
    message: &str,
    mechanism: &str,
    stacktrace: Option<sentry_core::protocol::Stacktrace>,
) -> Values<Exception> {
    vec![Exception {
        ty: ty.to_owned(),
        value: Some(message.to_owned()),
        stacktrace,
        mechanism: Some(Mechanism {
            ty: mechanism.to_owned(),
            handled: Some(false),
            ..Mechanism::default()
        }),
        ..Exception::default()
    }]
    .into()
}

/// One line naming what went wrong, the same for every occurrence so Sentry groups them.
fn message(report: &RequestReport, outcome: &Outcome, transaction: &str) -> String {
    match (outcome.error, outcome.grpc) {
        (Some(ErrorType::Grpc(code)), _) => {
            let detail = report
                .grpc_message
                .as_ref()
                .and_then(|m| m.to_str().ok())
                .map(|m| format!(": {}", crate::percent::decode_lossy(m)))
                .unwrap_or_default();
            format!("{transaction} failed with gRPC {}{detail}", code.name())
        }
        (Some(ErrorType::Failure(failure)), _) => {
            format!("{transaction} failed: {}", failure.as_str())
        }
        _ => {
            let status = http::StatusCode::from_u16(outcome.status).ok();
            let reason = status.and_then(|s| s.canonical_reason()).unwrap_or("");
            format!("{transaction} responded {} {reason}", outcome.status)
                .trim_end()
                .to_owned()
        }
    }
}

fn request(reporter: &Reporter, report: &RequestReport) -> Request {
    Request {
        url: report.request.url().and_then(|u| u.parse().ok()),
        method: Some(report.request.method.as_str().to_owned()),
        query_string: report
            .request
            .query()
            .map(|q| privacy::query(q, reporter.send_pii)),
        headers: report.request.headers(&reporter.kept_headers),
        ..Request::default()
    }
}
