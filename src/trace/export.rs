//! What a finished span hands to the exporter: the raw facts of the exchange, cheap to
//! capture on the request path. Names, attributes and strings are built on the exporter's
//! own thread, not while serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

use super::{SpanContext, SpanId, TraceParent};
use crate::classify::{ErrorType, Failure, GrpcCode};
use crate::route::Route;

/// Server (an inbound request) or client (an outbound call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Server,
    Client,
}

/// One finished span, as captured.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct FinishedSpan {
    pub(crate) kind: Kind,
    pub(crate) context: SpanContext,
    /// The parent span, and whether it is remote (in another process).
    pub(crate) parent: Option<(SpanId, bool)>,
    /// The caller's context when it was not trusted as the parent.
    pub(crate) link: Option<TraceParent>,
    pub(crate) method: Method,
    /// The resolved route (server spans); `None` for client spans.
    pub(crate) route: Option<Arc<Route>>,
    /// The URL, headers and request id the attributes need, copied out of the request.
    pub(crate) text: RequestText,
    pub(crate) version: Version,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) grpc_call: bool,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    /// The response status; 0 when there was no response.
    pub(crate) status: u16,
    pub(crate) grpc_status: Option<GrpcCode>,
    pub(crate) error: Option<ErrorType>,
    /// A rate limit found the request over a quota (server spans).
    pub(crate) over_quota: Option<crate::signal::OverQuota>,
}

#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
impl FinishedSpan {
    /// Whether the span's status is Error: a server error on a server span, any error
    /// (5xx, failure) on a client span. A cancelled request is not an error of the server.
    pub(crate) fn is_error(&self) -> bool {
        match self.error {
            None | Some(ErrorType::Failure(Failure::Cancelled)) => false,
            Some(_) => true,
        }
    }
}

/// The pieces of a request's text a span keeps.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Scheme,
    Authority,
    Path,
    Query,
    UserAgent,
    CallerRequestId,
}

/// Bytes kept inline; a request whose pieces are longer spills them to the heap.
const INLINE: usize = 176;

/// The text a span keeps of its request, copied out of it. The request's own values are
/// slices of the connection's read buffer: holding them until the span is exported would
/// keep that buffer from being reused (the server allocates new ones) and free it on the
/// exporter's thread. A copy into the span costs less than the reference counts it saves.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct RequestText {
    inline: [u8; INLINE],
    spill: Option<Box<[u8]>>,
    /// Where each [`Piece`] ends in the bytes.
    ends: [u32; 6],
}

#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
impl RequestText {
    /// Copies what the span's attributes need: the URL (the query only when it will be
    /// recorded), the `Host` and `User-Agent` values when they are text, and the request
    /// id the caller sent.
    pub(crate) fn capture(
        uri: &Uri,
        host: Option<&HeaderValue>,
        user_agent: Option<&HeaderValue>,
        caller_request_id: Option<&str>,
        keep_query: bool,
    ) -> Self {
        fn text(v: Option<&HeaderValue>) -> &str {
            v.and_then(|v| v.to_str().ok()).unwrap_or("")
        }
        let authority = uri.authority().map_or_else(|| text(host), |a| a.as_str());
        let pieces: [&str; 6] = [
            uri.scheme_str().unwrap_or(""),
            authority,
            uri.path(),
            if keep_query {
                uri.query().unwrap_or("")
            } else {
                ""
            },
            text(user_agent),
            caller_request_id.unwrap_or(""),
        ];
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let mut kept = RequestText {
            inline: [0; INLINE],
            spill: None,
            ends: [0; 6],
        };
        let mut spill = (total > INLINE).then(|| Vec::with_capacity(total));
        let mut end = 0;
        for (i, piece) in pieces.iter().enumerate() {
            match &mut spill {
                Some(bytes) => bytes.extend_from_slice(piece.as_bytes()),
                None => kept.inline[end..end + piece.len()].copy_from_slice(piece.as_bytes()),
            }
            end += piece.len();
            kept.ends[i] = u32::try_from(end).unwrap_or(u32::MAX);
        }
        kept.spill = spill.map(Vec::into_boxed_slice);
        kept
    }

    /// A piece's bytes, `None` when empty. Every piece was a `&str`: valid UTF-8.
    fn bytes(&self, piece: Piece) -> Option<&[u8]> {
        let i = piece as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let bytes = match &self.spill {
            Some(spill) => &spill[..],
            None => &self.inline[..],
        };
        bytes
            .get(start..self.ends[i] as usize)
            .filter(|b| !b.is_empty())
    }

    fn piece(&self, piece: Piece) -> Option<&str> {
        std::str::from_utf8(self.bytes(piece)?).ok()
    }

    /// The URL's scheme, if the request target had one.
    pub(crate) fn scheme(&self) -> Option<&str> {
        self.piece(Piece::Scheme)
    }

    /// The URL's authority, else the `Host` header.
    pub(crate) fn authority(&self) -> Option<&str> {
        self.piece(Piece::Authority)
    }

    /// The path (`/` at least).
    pub(crate) fn path(&self) -> &str {
        self.piece(Piece::Path).unwrap_or("/")
    }

    /// The path's UTF-8 bytes, for writers that need no `&str` (`/` at least).
    pub(crate) fn path_bytes(&self) -> &[u8] {
        self.bytes(Piece::Path).unwrap_or(b"/")
    }

    /// The query, when it is recorded (as sent: its secrets are redacted when written).
    pub(crate) fn query(&self) -> Option<&str> {
        self.piece(Piece::Query)
    }

    /// The `User-Agent`'s UTF-8 bytes, when it was text.
    pub(crate) fn user_agent_bytes(&self) -> Option<&[u8]> {
        self.bytes(Piece::UserAgent)
    }

    /// The `User-Agent`, when it was text.
    #[cfg(test)]
    pub(crate) fn user_agent(&self) -> Option<&str> {
        self.piece(Piece::UserAgent)
    }

    /// The request id the caller sent (a generated one is the trace id).
    pub(crate) fn caller_request_id(&self) -> Option<&str> {
        self.piece(Piece::CallerRequestId)
    }
}

/// Where finished spans go: a bounded queue in front of an exporter, or a user's
/// OpenTelemetry tracer provider. `submit` never blocks and never fails the request.
pub(crate) trait SpanSink: Send + Sync {
    /// Whether to capture a span for this sink now (one atomic load); when not (the
    /// exporter backs off, its queue is full, it has shut down), the span is counted as
    /// dropped, by reason, and the request captures nothing.
    fn admit(&self) -> bool {
        true
    }
    /// Hands over a finished span; false if it was dropped instead (counted by reason), so
    /// no exemplar points to a trace the backend will not have.
    fn submit(&self, span: FinishedSpan) -> bool;
    /// Spans queued or being exported.
    fn pending(&self) -> usize {
        0
    }
    /// Spans dropped so far, whatever the reason (for the shutdown's account).
    fn dropped(&self) -> u64 {
        0
    }
    /// Exports what is queued; false if that did not finish within `timeout`.
    fn flush(&self, timeout: Duration) -> bool;
    /// Flushes, then stops the exporter.
    fn shutdown(&self, timeout: Duration) -> bool;
}

#[cfg(test)]
mod tests {
    use super::RequestText;
    use http::HeaderValue;

    #[test]
    fn request_text_keeps_each_piece_inline_or_spilled() {
        let host = HeaderValue::from_static("api.test");
        let ua = HeaderValue::from_static("curl/8");
        let t = RequestText::capture(
            &"/a/b?x=1".parse().unwrap(),
            Some(&host),
            Some(&ua),
            Some("req-7"),
            false,
        );
        assert_eq!(t.scheme(), None);
        assert_eq!(t.authority(), Some("api.test"));
        assert_eq!(t.path(), "/a/b");
        assert_eq!(t.query(), None, "the query is not kept unless recorded");
        assert_eq!(t.user_agent(), Some("curl/8"));
        assert_eq!(t.caller_request_id(), Some("req-7"));
        assert!(t.spill.is_none());

        // An absolute URL names its own authority; long pieces spill, whole.
        let long_ua = HeaderValue::from_str(&"u".repeat(300)).unwrap();
        let t = RequestText::capture(
            &"https://svc.test:8443/p?q=2".parse().unwrap(),
            Some(&host),
            Some(&long_ua),
            None,
            true,
        );
        assert!(t.spill.is_some());
        assert_eq!(t.scheme(), Some("https"));
        assert_eq!(t.authority(), Some("svc.test:8443"));
        assert_eq!(t.path(), "/p");
        assert_eq!(t.query(), Some("q=2"));
        assert_eq!(t.user_agent().map(str::len), Some(300));
        assert_eq!(t.caller_request_id(), None);

        // A header value that is not text is left out, not mangled.
        let odd = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        let t = RequestText::capture(&"/".parse().unwrap(), None, Some(&odd), None, false);
        assert_eq!((t.user_agent(), t.authority(), t.path()), (None, None, "/"));
    }
}
