//! OTLP/protobuf encoding of finished spans (`ExportTraceServiceRequest`), written straight
//! from the captured facts into one reused buffer: no SDK objects, no per-span allocation.
//! The exporter thread pays ~1,000 instructions a span instead of building a `SpanData`
//! and then the protobuf structs the SDK's exporter encodes from it.
//!
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto` and
//! `common/v1/common.proto`; the tests decode the output with the official generated types.

use std::time::{SystemTime, UNIX_EPOCH};

use super::export::{FinishedSpan, Kind};
use super::semconv::{self, AttributeSink};
use crate::wire::{
    field_len, put_bytes, put_len, put_varint, tag, varint_len, FIXED32, FIXED64, LEN, VARINT,
};

#[inline(always)]
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `KeyValue` fields (field numbers of `common.proto`).
mod kv {
    pub(super) const KEY: u8 = 1;
    pub(super) const VALUE: u8 = 2;
    // AnyValue
    pub(super) const STRING: u8 = 1;
    pub(super) const INT: u8 = 3;
    pub(super) const ARRAY: u8 = 5;
    // ArrayValue
    pub(super) const VALUES: u8 = 1;
}

/// Writes attributes as `KeyValue` messages under field `field` of the enclosing message.
struct KeyValues<'a> {
    out: &'a mut Vec<u8>,
    field: u8,
}

impl KeyValues<'_> {
    /// A `KeyValue` whose `AnyValue` body is `value_len` bytes, head written; body next.
    #[inline(always)]
    fn head(&mut self, key: &str, value_len: usize) {
        let body = field_len(key.len()) + field_len(value_len);
        put_len(self.out, self.field, body);
        put_bytes(self.out, kv::KEY, key.as_bytes());
        put_len(self.out, kv::VALUE, value_len);
    }
}

impl AttributeSink for KeyValues<'_> {
    fn string(&mut self, key: &'static str, value: &str) {
        self.utf8(key, value.as_bytes());
    }

    fn utf8(&mut self, key: &'static str, value: &[u8]) {
        self.head(key, field_len(value.len()));
        put_bytes(self.out, kv::STRING, value);
    }

    fn string_parts(&mut self, key: &'static str, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.head(key, field_len(len));
        put_len(self.out, kv::STRING, len);
        for part in parts {
            self.out.extend_from_slice(part.as_bytes());
        }
    }

    fn int(&mut self, key: &'static str, value: i64) {
        // int64 is a two's-complement varint.
        let n = value as u64;
        self.head(key, 1 + varint_len(n));
        self.out.push(tag(kv::INT, VARINT));
        put_varint(self.out, n);
    }

    fn string_list(&mut self, key: &'static str, value: &str) {
        let any = field_len(value.len());
        let array = field_len(any);
        self.head(key, field_len(array));
        put_len(self.out, kv::ARRAY, array);
        put_len(self.out, kv::VALUES, any);
        put_bytes(self.out, kv::STRING, value.as_bytes());
    }
}

/// `Span` fields.
mod span {
    pub(super) const TRACE_ID: u8 = 1;
    pub(super) const SPAN_ID: u8 = 2;
    pub(super) const TRACE_STATE: u8 = 3;
    pub(super) const PARENT_SPAN_ID: u8 = 4;
    pub(super) const NAME: u8 = 5;
    pub(super) const KIND: u8 = 6;
    pub(super) const START: u8 = 7;
    pub(super) const END: u8 = 8;
    pub(super) const ATTRIBUTES: u8 = 9;
    pub(super) const LINKS: u8 = 13;
    pub(super) const STATUS: u8 = 15;
    /// Field 16: a two-byte tag.
    pub(super) const FLAGS_TAG: [u8; 2] = [0x85, 0x01];
    // SpanKind
    pub(super) const SERVER: u64 = 2;
    pub(super) const CLIENT: u64 = 3;
    // Link
    pub(super) const LINK_TRACE_ID: u8 = 1;
    pub(super) const LINK_SPAN_ID: u8 = 2;
    pub(super) const LINK_FLAGS: u8 = 6;
    // Status
    pub(super) const STATUS_MESSAGE: u8 = 2;
    pub(super) const STATUS_CODE: u8 = 3;
    pub(super) const STATUS_ERROR: u64 = 2;
    // SpanFlags: the parent's remoteness is known (bit 8), and it is remote (bit 9).
    pub(super) const HAS_IS_REMOTE: u32 = 0x100;
    pub(super) const IS_REMOTE: u32 = 0x200;
}

/// Spans encoded so far, and the request they will be sent in.
pub(crate) struct SpanBatch {
    /// `Resource` message body, made once.
    resource: Vec<u8>,
    /// `InstrumentationScope` message body, made once.
    scope: Vec<u8>,
    /// The spans, each as field 2 of `ScopeSpans`.
    spans: Vec<u8>,
}

impl SpanBatch {
    /// A batch for spans of the service described by `resource` (key, value) attributes.
    pub(crate) fn new(resource: &[(String, String)]) -> Self {
        SpanBatch {
            resource: resource_body(resource),
            scope: scope_body(),
            spans: Vec::new(),
        }
    }

    /// Encodes `span` into the batch.
    pub(crate) fn push(&mut self, s: &FinishedSpan) {
        // ScopeSpans.spans (field 2), the body written in place after a two-byte length
        // (a span is 128 bytes to 16 KiB), patched when the body is done.
        let start = self.spans.len();
        self.spans.extend_from_slice(&[tag(2, LEN), 0, 0]);
        let out = &mut self.spans;
        put_bytes(out, span::TRACE_ID, &s.context.trace_id.0);
        put_bytes(out, span::SPAN_ID, &s.context.span_id.0);
        let state = s.context.state.as_str();
        if !state.is_empty() {
            put_bytes(out, span::TRACE_STATE, state.as_bytes());
        }
        if let Some((parent, _)) = s.parent {
            put_bytes(out, span::PARENT_SPAN_ID, &parent.0);
        }
        let name = semconv::name(s);
        put_len(out, span::NAME, name.len());
        for part in name.parts() {
            out.extend_from_slice(part.as_bytes());
        }
        out.push(tag(span::KIND, VARINT));
        put_varint(
            out,
            match s.kind {
                Kind::Server => span::SERVER,
                Kind::Client => span::CLIENT,
            },
        );
        out.push(tag(span::START, FIXED64));
        out.extend_from_slice(&unix_nanos(s.start).to_le_bytes());
        out.push(tag(span::END, FIXED64));
        out.extend_from_slice(&unix_nanos(s.end).to_le_bytes());
        semconv::attributes(
            s,
            &mut KeyValues {
                out,
                field: span::ATTRIBUTES,
            },
        );
        if let Some(link) = &s.link {
            let body = field_len(16) + field_len(8) + 5;
            put_len(out, span::LINKS, body);
            put_bytes(out, span::LINK_TRACE_ID, &link.trace_id.0);
            put_bytes(out, span::LINK_SPAN_ID, &link.parent_id.0);
            out.push(tag(span::LINK_FLAGS, FIXED32));
            let flags = u32::from(link.flags.0) | span::HAS_IS_REMOTE | span::IS_REMOTE;
            out.extend_from_slice(&flags.to_le_bytes());
        }
        if s.is_error() {
            if let Some(mut error) = semconv::error_type(s) {
                let message = error.as_str();
                put_len(out, span::STATUS, field_len(message.len()) + 2);
                put_bytes(out, span::STATUS_MESSAGE, message.as_bytes());
                out.push(tag(span::STATUS_CODE, VARINT));
                put_varint(out, span::STATUS_ERROR);
            }
        }
        let remote = match s.parent {
            Some((_, true)) => span::HAS_IS_REMOTE | span::IS_REMOTE,
            _ => span::HAS_IS_REMOTE,
        };
        out.extend_from_slice(&span::FLAGS_TAG);
        out.extend_from_slice(&(u32::from(s.context.flags.0) | remote).to_le_bytes());
        let body = out.len() - start - 3;
        if (0x80..0x4000).contains(&body) {
            out[start + 1] = (body as u8) | 0x80;
            out[start + 2] = (body >> 7) as u8;
        } else {
            // Another length size: the body moves to make room (rare).
            let moved = out.split_off(start + 3);
            out.truncate(start + 1);
            put_varint(out, body as u64);
            out.extend_from_slice(&moved);
        }
    }

    /// The batch as an `ExportTraceServiceRequest`, after `prefix` zero bytes (room for a
    /// transport's framing), in a buffer of its own to hand over without a copy; the batch
    /// is emptied and keeps its buffer.
    pub(crate) fn take(&mut self, prefix: usize) -> Vec<u8> {
        let scope_spans = field_len(self.scope.len()) + self.spans.len();
        let resource_spans = field_len(self.resource.len()) + field_len(scope_spans);
        let mut out = Vec::with_capacity(prefix + field_len(resource_spans));
        out.resize(prefix, 0);
        // ExportTraceServiceRequest.resource_spans (1)
        put_len(&mut out, 1, resource_spans);
        // ResourceSpans.resource (1), then .scope_spans (2)
        put_bytes(&mut out, 1, &self.resource);
        put_len(&mut out, 2, scope_spans);
        // ScopeSpans.scope (1), then the spans
        put_bytes(&mut out, 1, &self.scope);
        out.extend_from_slice(&self.spans);
        self.spans.clear();
        out
    }
}

/// A `Resource` message body: the service's attributes, as strings (spans and metrics
/// carry the same).
pub(crate) fn resource_body(resource: &[(String, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut kvs = KeyValues {
        out: &mut body,
        field: 1,
    };
    for (key, value) in resource {
        // Keys are owned here: written through the same path with a borrowed key.
        kvs.string_parts_owned(key, value);
    }
    body
}

/// The `InstrumentationScope` message body: the crate, and its version.
pub(crate) fn scope_body() -> Vec<u8> {
    let mut scope = Vec::new();
    put_bytes(&mut scope, 1, b"tower-observability");
    put_bytes(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    scope
}

impl KeyValues<'_> {
    fn string_parts_owned(&mut self, key: &str, value: &str) {
        let any = field_len(value.len());
        self.head(key, any);
        put_bytes(self.out, kv::STRING, value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use prost::Message;

    use super::*;
    use crate::classify::{ErrorType, GrpcCode};
    use crate::trace::export::RequestText;
    use crate::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceParent, TraceState};

    fn span(kind: Kind) -> FinishedSpan {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        FinishedSpan {
            kind,
            context: SpanContext {
                trace_id: TraceId([7; 16]),
                span_id: SpanId([8; 8]),
                flags: TraceFlags(0x03),
                state: TraceState::default(),
            },
            parent: None,
            link: None,
            method: http::Method::GET,
            route: Some(
                crate::route::RouteResolver::new(10, None)
                    .lookup("/users/{id}")
                    .route,
            ),
            text: text("/users/42?token=s3cret", "curl/8"),
            version: http::Version::HTTP_11,
            peer: Some("[::1]:5000".parse().unwrap()),
            grpc_call: false,
            start,
            end: start + Duration::from_millis(250),
            status: 200,
            grpc_status: None,
            error: None,
            over_quota: None,
        }
    }

    fn text(uri: &str, user_agent: &str) -> RequestText {
        RequestText::capture(
            &uri.parse().unwrap(),
            Some(&http::HeaderValue::from_static("api.test:8080")),
            Some(&http::HeaderValue::from_str(user_agent).unwrap()),
            None,
            false,
        )
    }

    fn decode(batch: &mut SpanBatch) -> ExportTraceServiceRequest {
        let out = batch.take(3);
        assert_eq!(out[..3], [0, 0, 0], "room for framing");
        ExportTraceServiceRequest::decode(&out[3..]).expect("valid OTLP protobuf")
    }

    fn attrs(
        span: &opentelemetry_proto::tonic::trace::v1::Span,
    ) -> std::collections::BTreeMap<String, String> {
        span.attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    Some(Value::IntValue(i)) => i.to_string(),
                    Some(Value::ArrayValue(a)) => format!("{:?}", a.values),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    #[test]
    fn a_server_span_decodes_with_the_official_types() {
        let mut batch = SpanBatch::new(&[("service.name".into(), "checkout".into())]);
        batch.push(&span(Kind::Server));
        let req = decode(&mut batch);
        // Taking the batch empties it.
        assert!(decode(&mut batch).resource_spans[0].scope_spans[0]
            .spans
            .is_empty());
        let rs = &req.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "tower-observability");
        let s = &ss.spans[0];
        assert_eq!(s.name, "GET /users/{id}");
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.span_id, vec![8; 8]);
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 250_000_000);
        assert_eq!(s.flags, 0x103);
        assert!(s.status.is_none());
        let a = attrs(s);
        assert_eq!(a["http.request.method"], "GET");
        assert_eq!(a["http.route"], "/users/{id}");
        assert_eq!(a["url.path"], "/users/42");
        assert!(!a.contains_key("url.query"), "query left out by default");
        assert_eq!(a["url.scheme"], "http");
        assert_eq!(a["user_agent.original"], "curl/8");
        assert_eq!(a["client.address"], "::1");
        assert_eq!(a["client.port"], "5000");
        assert_eq!(a["server.address"], "api.test");
        assert_eq!(a["server.port"], "8080");
        assert_eq!(a["network.protocol.version"], "1.1");
        assert_eq!(a["http.response.status_code"], "200");
        assert!(!a.contains_key("error.type"));
    }

    #[test]
    fn errors_parents_links_and_grpc_are_encoded() {
        let mut batch = SpanBatch::new(&[]);
        let mut s = span(Kind::Server);
        s.parent = Some((SpanId([9; 8]), true));
        s.context.state = TraceState::parse("congo=t61rcWkgMzE").unwrap();
        s.status = 503;
        s.error = Some(ErrorType::Status(503));
        s.grpc_call = true;
        s.text = text("/demo.Greeter/SayHello", &"x".repeat(20_000));
        s.grpc_status = Some(GrpcCode::parse(b"14").unwrap());
        s.link = Some(TraceParent {
            trace_id: TraceId([1; 16]),
            parent_id: SpanId([2; 8]),
            flags: TraceFlags(1),
        });
        // A long value takes a multi-byte length; a span over 16 KiB, a three-byte one.
        let long = "x".repeat(20_000);
        batch.push(&s);
        batch.push(&span(Kind::Client));
        let req = decode(&mut batch);
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        let s = &spans[0];
        assert_eq!(s.parent_span_id, vec![9; 8]);
        assert_eq!(s.trace_state, "congo=t61rcWkgMzE");
        assert_eq!(s.flags, 0x303);
        let status = s.status.as_ref().unwrap();
        assert_eq!(status.code, 2);
        assert_eq!(status.message, "503");
        assert_eq!(s.links.len(), 1);
        assert_eq!(s.links[0].trace_id, vec![1; 16]);
        assert_eq!(s.links[0].span_id, vec![2; 8]);
        let a = attrs(s);
        assert_eq!(a["error.type"], "503");
        assert_eq!(a["rpc.system"], "grpc");
        assert_eq!(a["rpc.service"], "demo.Greeter");
        assert_eq!(a["rpc.method"], "SayHello");
        assert_eq!(
            s.name, "demo.Greeter/SayHello",
            "RPC spans are named by the RPC conventions"
        );
        assert_eq!(a["rpc.grpc.status_code"], "14");
        assert_eq!(a["user_agent.original"], long);
        let c = &spans[1];
        assert_eq!(c.kind, SpanKind::Client as i32);
        assert_eq!(c.name, "GET");
        assert_eq!(attrs(c)["url.full"], "http://api.test:8080/users/42");
    }

    #[test]
    fn recorded_queries_and_urls_carry_no_secrets() {
        let mut server = span(Kind::Server);
        server.text = RequestText::capture(
            &"/users/42?q=1;token=s3cret&%70assword=hunter2&page=2"
                .parse()
                .unwrap(),
            Some(&http::HeaderValue::from_static("ada:pw1@api.test:8080")),
            None,
            None,
            true,
        );
        let mut client = span(Kind::Client);
        client.text = RequestText::capture(
            &"http://ada:pw2@svc.test:81/p?sig=abc&page=2"
                .parse()
                .unwrap(),
            None,
            None,
            None,
            true,
        );
        let mut batch = SpanBatch::new(&[]);
        batch.push(&server);
        batch.push(&client);
        let req = decode(&mut batch);
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        let a = attrs(&spans[0]);
        assert_eq!(
            a["url.query"],
            "q=1;token=REDACTED&%70assword=REDACTED&page=2"
        );
        assert_eq!(a["server.address"], "api.test");
        assert_eq!(a["server.port"], "8080");
        let c = attrs(&spans[1]);
        assert_eq!(
            c["url.full"],
            "http://REDACTED:REDACTED@svc.test:81/p?sig=REDACTED&page=2"
        );
        assert_eq!(c["server.address"], "svc.test");
        let all = format!("{spans:?}");
        for secret in ["s3cret", "hunter2", "pw1", "pw2", "abc"] {
            assert!(!all.contains(secret), "{secret} left in {all}");
        }
    }
}
