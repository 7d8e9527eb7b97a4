//! A finished span's name, attributes and status by the OpenTelemetry semantic conventions
//! (HTTP and RPC), written once for every output: the OTLP encoder and the SDK's
//! `SpanData` both read them from here, so the two can never disagree.

use std::net::SocketAddr;
use std::sync::Arc;

use super::export::{FinishedSpan, Kind};
use crate::classify::ErrorType;
use crate::redact::{self, REDACTED};
use crate::route::{OVERFLOW, UNMATCHED};

/// What stands for the user info of a URL (the conventions' value for `url.full`).
const REDACTED_USERINFO: &str = "REDACTED:REDACTED@";

/// Where attributes go. Values are borrowed: a sink copies what it keeps.
pub(crate) trait AttributeSink {
    /// A string attribute.
    fn string(&mut self, key: &'static str, value: &str);
    /// A string attribute whose value lives for the whole program (no copy needed).
    fn static_str(&mut self, key: &'static str, value: &'static str) {
        self.string(key, value);
    }
    /// A string attribute the sink may share instead of copying.
    fn shared(&mut self, key: &'static str, value: &Arc<str>) {
        self.string(key, value);
    }
    /// A string attribute given as UTF-8 bytes (a writer of bytes need not check them).
    fn utf8(&mut self, key: &'static str, value: &[u8]) {
        self.string(key, std::str::from_utf8(value).unwrap_or_default());
    }
    /// A string attribute made of `parts`, concatenated (no temporary string).
    fn string_parts(&mut self, key: &'static str, parts: &[&str]);
    /// An integer attribute.
    fn int(&mut self, key: &'static str, value: i64);
    /// A one-element string array (the conventions' type for header attributes).
    fn string_list(&mut self, key: &'static str, value: &str);
}

/// The span name: `{method} {route}` for an HTTP server span with a route, else
/// `{method}` (`HTTP` for a non-standard method); for a gRPC call, the RPC conventions'
/// `{package.Service}/{Method}`.
pub(crate) enum SpanName<'a> {
    Http {
        method: &'static str,
        route: Option<&'a str>,
    },
    Rpc(&'a str),
}

impl SpanName<'_> {
    /// The name's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    /// The name as parts to concatenate.
    pub(crate) fn parts(&self) -> [&str; 3] {
        match *self {
            SpanName::Http {
                method,
                route: Some(route),
            } => [method, " ", route],
            SpanName::Http {
                method,
                route: None,
            } => [method, "", ""],
            SpanName::Rpc(method) => [method, "", ""],
        }
    }

    /// The name when it is a fixed string (no route), so it need not be copied.
    pub(crate) fn as_static(&self) -> Option<&'static str> {
        match *self {
            SpanName::Http {
                method,
                route: None,
            } => Some(method),
            _ => None,
        }
    }
}

/// The standard method label (`_OTHER` for the rest).
fn standard_method(span: &FinishedSpan) -> &'static str {
    crate::method::MethodLabel::of(&span.method).as_str()
}

/// The route worth naming: the resolved one, unless it is `unmatched` or `overflow`.
fn route(span: &FinishedSpan) -> Option<&Arc<str>> {
    span.route
        .as_ref()
        .map(|r| r.shared_name())
        .filter(|r| ***r != *UNMATCHED && ***r != *OVERFLOW)
}

/// The span's name.
pub(crate) fn name(span: &FinishedSpan) -> SpanName<'_> {
    if span.grpc_call {
        if let Some(method) = rpc_method(span.text.path()) {
            return SpanName::Rpc(method);
        }
    }
    let standard = standard_method(span);
    SpanName::Http {
        method: if standard == "_OTHER" {
            "HTTP"
        } else {
            standard
        },
        route: match span.kind {
            Kind::Server => route(span).map(|r| &**r),
            Kind::Client => None,
        },
    }
}

/// `package.Service/Method` of a gRPC path `/package.Service/Method`.
fn rpc_method(path: &str) -> Option<&str> {
    let method = path.strip_prefix('/')?;
    let (service, name) = method.split_once('/')?;
    (!service.is_empty() && !name.is_empty() && !name.contains('/')).then_some(method)
}

/// `error.type` as the metrics label it, written without allocating.
pub(crate) struct ErrorText {
    digits: itoa::Buffer,
    error: ErrorType,
}

impl ErrorText {
    /// The text, when it is a fixed name (not a status code).
    pub(crate) fn static_str(&self) -> Option<&'static str> {
        self.error.static_str()
    }

    pub(crate) fn as_str(&mut self) -> &str {
        self.error.text(&mut self.digits)
    }
}

/// The span's `error.type`, if it ended in an error.
pub(crate) fn error_type(span: &FinishedSpan) -> Option<ErrorText> {
    span.error.map(|error| ErrorText {
        digits: itoa::Buffer::new(),
        error,
    })
}

/// Host and port of an authority (`host`, `host:port`, `[v6]:port`); `None` if it has
/// user info or a port that is not a number.
pub(crate) fn host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.rfind(':') {
        // `[::1]` alone: the colon is inside the brackets.
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    // An IPv6 address is named without its brackets.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

/// Writes an IP address into `buf` and returns it as text.
fn ip_text<'a>(peer: &SocketAddr, buf: &'a mut [u8; 64]) -> &'a str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // 64 bytes hold any IPv6 text form (at most 45).
    let _ = write!(cursor, "{}", peer.ip());
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

/// Every attribute of `span`, by the HTTP (and, for gRPC calls, RPC) conventions.
pub(crate) fn attributes(span: &FinishedSpan, out: &mut impl AttributeSink) {
    let standard = standard_method(span);
    out.static_str("http.request.method", standard);
    if standard == "_OTHER" {
        out.string("http.request.method_original", span.method.as_str());
    }
    let text = &span.text;
    // User info (`user:pw@`) is never recorded, whether the URL or the `Host` header had it.
    let (userinfo, authority) = match text.authority() {
        Some(a) => match redact::userinfo(a.as_bytes()) {
            Some(at) => (REDACTED_USERINFO, &a[at.end..]),
            None => ("", a),
        },
        None => ("", ""),
    };
    let server = host_port(authority);
    match span.kind {
        Kind::Server => {
            if let Some(route) = route(span) {
                out.shared("http.route", route);
            }
            out.utf8("url.path", text.path_bytes());
            match text.scheme() {
                None | Some("http") => out.static_str("url.scheme", "http"),
                Some("https") => out.static_str("url.scheme", "https"),
                Some(other) => out.string("url.scheme", other),
            }
            if let Some(query) = text.query() {
                out.string("url.query", &redact::query(query, REDACTED));
            }
            if let Some(ua) = text.user_agent_bytes() {
                out.utf8("user_agent.original", ua);
            }
            if let Some(peer) = &span.peer {
                let mut buf = [0u8; 64];
                out.string("client.address", ip_text(peer, &mut buf));
                out.int("client.port", i64::from(peer.port()));
            }
            // A generated request id is the trace id: only the caller's is worth recording.
            if let Some(id) = text.caller_request_id() {
                out.string_list("http.request.header.x-request-id", id);
            }
            // No convention names rate limits: the labels of
            // `tower_observability_rate_limited_total`, under the same names.
            if let Some(over) = &span.over_quota {
                out.shared("rate_limit.policy", &over.policy);
                let mode = if over.shadow { "shadow" } else { "enforce" };
                out.static_str("rate_limit.mode", mode);
            }
        }
        Kind::Client => {
            let (scheme, path) = (text.scheme().unwrap_or("http"), text.path());
            match text.query() {
                Some(query) => {
                    let query = redact::query(query, REDACTED);
                    let full = [scheme, "://", userinfo, authority, path, "?", &query];
                    out.string_parts("url.full", &full);
                }
                None => out.string_parts("url.full", &[scheme, "://", userinfo, authority, path]),
            }
        }
    }
    if let Some((host, port)) = server {
        out.string("server.address", host);
        if let Some(port) = port {
            out.int("server.port", i64::from(port));
        }
    }
    let version = match span.version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    };
    out.static_str("network.protocol.version", version);
    if span.status != 0 {
        out.int("http.response.status_code", i64::from(span.status));
    }
    if span.grpc_call {
        out.static_str("rpc.system", "grpc");
        if let Some((service, method)) = rpc_method(text.path()).and_then(|m| m.split_once('/')) {
            out.string("rpc.service", service);
            out.string("rpc.method", method);
        }
        if let Some(code) = span.grpc_status {
            out.int("rpc.grpc.status_code", i64::from(code.as_u8()));
        }
    }
    if let Some(mut error) = error_type(span) {
        match error.static_str() {
            Some(name) => out.static_str("error.type", name),
            None => out.string("error.type", error.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(host_port("api.test"), Some(("api.test", None)));
        assert_eq!(host_port("api.test:8080"), Some(("api.test", Some(8080))));
        assert_eq!(host_port("[::1]:3000"), Some(("::1", Some(3000))));
        assert_eq!(host_port("[::1]"), Some(("::1", None)));
        assert_eq!(host_port("api.test:"), Some(("api.test", None)));
        assert_eq!(host_port("api.test:http"), None);
        assert_eq!(host_port("api.test:99999"), None);
        assert_eq!(host_port("user:pw@api.test"), None);
        assert_eq!(host_port(""), None);
        assert_eq!(host_port(":80"), None);
    }
}
