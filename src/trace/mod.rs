//! Distributed tracing: W3C Trace Context in and out, one server span per request, the
//! request id, a client layer for outbound calls, and (feature `otlp`) OTLP export.
//!
//! The server span is made in the same pass as the metrics (same route, same outcome): it
//! is a `tracing` span named `request` (so the application's own spans and events nest
//! under it and carry its `trace_id`, `span_id` and `request_id`), and, when sampled and an
//! exporter is configured, an OpenTelemetry span `{method} {route}` (gRPC calls:
//! `package.Service/Method`) of kind server.
//!
//! | setting | default |
//! |---|---|
//! | [`Sampler`] (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) | `parentbased_always_on` |
//! | trust the caller's `traceparent` ([`ObservabilityBuilder::trust_inbound_context`](crate::ObservabilityBuilder::trust_inbound_context)) | yes |
//! | `traceresponse` header ([`ObservabilityBuilder::traceresponse`](crate::ObservabilityBuilder::traceresponse)) | off |
//! | request id header ([`ObservabilityBuilder::request_id_header`](crate::ObservabilityBuilder::request_id_header)) | `x-request-id` |

pub(crate) mod client;
#[cfg(feature = "otlp")]
mod collector;
pub(crate) mod current;
pub(crate) mod export;
pub(crate) mod hex;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
#[cfg(feature = "otlp")]
mod protobuf;
#[cfg(feature = "otlp")]
mod queue;
pub(crate) mod request_id;
pub(crate) mod sampler;
#[cfg(feature = "otlp")]
mod sdk;
#[cfg(feature = "otlp")]
mod semconv;
pub(crate) mod span;
mod traceparent;
mod tracestate;

use std::fmt;

use http::HeaderMap;

pub use client::{OutboundSpan, TraceClient, TraceClientFuture, TraceClientLayer};
pub use current::{current, current_request};
pub use hex::Hex;
#[cfg(feature = "otlp")]
pub use otlp::{BatchSettings, OtlpProtocol, OtlpSettings};
pub use request_id::{RequestId, REQUEST_ID};
pub use sampler::Sampler;
pub use span::RequestContext;
pub(crate) use span::Tracing;
pub use traceparent::{TraceParent, TRACEPARENT};
pub use tracestate::{TraceState, MAX_MEMBERS, TRACESTATE};

/// `traceresponse`: the server's own span, for callers that asked for it (opt-in).
pub const TRACERESPONSE: &str = "traceresponse";

pub(crate) const TRACERESPONSE_NAME: http::HeaderName =
    http::HeaderName::from_static(TRACERESPONSE);

/// A 16-byte trace id; all zeros is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; all zeros is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A new random id. All of it is random, so the W3C Level 2 random flag holds.
    pub fn random() -> Self {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&fastrand::u64(1..).to_be_bytes());
        id[8..].copy_from_slice(&fastrand::u64(..).to_be_bytes());
        TraceId(id)
    }

    /// Whether the id is not all zeros.
    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }

    /// Lowercase hex, on the stack.
    pub fn to_hex(&self) -> hex::Hex<32> {
        hex::Hex::of(&self.0)
    }
}

impl SpanId {
    /// A new random id.
    pub fn random() -> Self {
        SpanId(fastrand::u64(1..).to_be_bytes())
    }

    /// Whether the id is not all zeros.
    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }

    /// Lowercase hex, on the stack.
    pub fn to_hex(&self) -> hex::Hex<16> {
        hex::Hex::of(&self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The `trace-flags` of a `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceFlags(pub u8);

impl TraceFlags {
    /// The caller recorded its span (bit 0).
    pub const SAMPLED: u8 = 0x01;
    /// W3C Level 2: the trace id's right 7 bytes are random (bit 1).
    pub const RANDOM: u8 = 0x02;
    /// The flags this crate knows and propagates.
    pub(crate) const KNOWN: u8 = Self::SAMPLED | Self::RANDOM;

    /// Whether the sampled bit is set.
    pub fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED != 0
    }

    /// Whether the random bit is set.
    pub fn is_random(self) -> bool {
        self.0 & Self::RANDOM != 0
    }

    pub(crate) fn with_sampled(self, sampled: bool) -> Self {
        TraceFlags(if sampled {
            self.0 | Self::SAMPLED
        } else {
            self.0 & !Self::SAMPLED
        })
    }
}

/// The context of one span: what is propagated to the services it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// Sampled and random flags.
    pub flags: TraceFlags,
    /// Vendor entries, passed along unchanged.
    pub state: TraceState,
}

impl SpanContext {
    /// The `traceparent` naming this span as the parent.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: self.flags,
        }
    }

    /// Writes `traceparent` (and `tracestate` when not empty) into outbound headers,
    /// replacing any already there.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(
            traceparent::TRACEPARENT_NAME,
            self.traceparent().to_header_value(),
        );
        match self.state.to_header_value() {
            Some(state) => headers.insert(tracestate::TRACESTATE_NAME, state),
            None => headers.remove(&tracestate::TRACESTATE_NAME),
        };
    }

    /// The caller's context from inbound headers: a valid `traceparent` (exactly one line)
    /// and its `tracestate` (every line). `None` starts a new trace.
    pub fn extract(headers: &HeaderMap) -> Option<(TraceParent, TraceState)> {
        let parent = TraceParent::from_headers(headers)?;
        Some((parent, TraceState::from_headers(headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let (a, b) = (TraceId::random(), TraceId::random());
        assert!(a.is_valid() && b.is_valid() && a != b);
        assert!(SpanId::random().is_valid());
        assert_eq!(a.to_string().len(), 32);
        assert!(a
            .to_string()
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }

    #[test]
    fn inject_then_extract_round_trips() {
        let ctx = SpanContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            flags: TraceFlags(TraceFlags::SAMPLED | TraceFlags::RANDOM),
            state: TraceState::parse("vendor=x,other@t=y z").unwrap(),
        };
        let mut headers = HeaderMap::new();
        headers.append(TRACESTATE, "stale=1".parse().unwrap());
        headers.append(TRACESTATE, "stale=2".parse().unwrap());
        ctx.inject(&mut headers);
        assert_eq!(headers.get_all(TRACESTATE).iter().count(), 1);
        let (parent, state) = SpanContext::extract(&headers).unwrap();
        assert_eq!(parent, ctx.traceparent());
        assert_eq!(state, ctx.state);
        let empty = SpanContext {
            state: TraceState::default(),
            ..ctx
        };
        empty.inject(&mut headers);
        assert!(headers.get(TRACESTATE).is_none());
    }

    #[test]
    fn invalid_tracestate_keeps_the_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.insert(TRACESTATE, "Bad Key=1".parse().unwrap());
        let (parent, state) = SpanContext::extract(&headers).unwrap();
        assert!(parent.flags.is_sampled());
        assert!(state.is_empty());
    }
}
