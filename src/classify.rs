//! What counts as an error (the E of RED), decided once for every signal.
//!
//! Server errors are: responses with status >= 500, panics, errors returned by the inner
//! service or its response body, and gRPC status codes that mean a server fault, read from
//! the response headers (trailers-only responses) or the trailers. 4xx responses and gRPC
//! client-side codes (`INVALID_ARGUMENT`, `NOT_FOUND`, ...) are not server errors. A request
//! the client abandoned is recorded as `499` / `cancelled`, which is kept apart from server
//! errors so SLOs can choose.
//!
//! gRPC-Web (`application/grpc-web*`) answers over HTTP/1.1 too, so a response that is not
//! trailers-only carries its status inside the body, in a final frame flagged as trailers.
//! The layer does not decode bodies: such a response counts as its head says, which is OK
//! for a `200` and the gRPC mapping of the HTTP status otherwise (a `503` from a proxy is
//! `UNAVAILABLE`). Trailers-only errors, the way servers fail a unary call, carry
//! `grpc-status` in the head and are read exactly; a failure that only the body's trailer
//! frame reports (a stream failing after messages) is not seen. Native gRPC has no such
//! excuse: a response that ends without any `grpc-status` is `UNKNOWN`, as clients see it.

use http::HeaderMap;

/// The gRPC status codes, by number.
const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A gRPC status code (0..=16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GrpcCode(u8);

impl GrpcCode {
    pub(crate) const OK: GrpcCode = GrpcCode(0);
    pub(crate) const UNKNOWN: GrpcCode = GrpcCode(2);
    pub(crate) const INTERNAL: GrpcCode = GrpcCode(13);

    /// Parses a `grpc-status` value; anything but a known code is `None`.
    pub(crate) fn parse(value: &[u8]) -> Option<Self> {
        match value {
            [d] if d.is_ascii_digit() => Some(GrpcCode(d - b'0')),
            [b'1', d] if (b'0'..=b'6').contains(d) => Some(GrpcCode(10 + d - b'0')),
            _ => None,
        }
    }

    /// Reads `grpc-status` from a header map (response headers or trailers).
    ///
    /// The head of a gRPC-Web response without one says OK: its status, if any, is in the
    /// body, which is not decoded (see the module docs); [`Outcome::classify`] still maps
    /// a non-200 HTTP status.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        match headers.get("grpc-status") {
            // An unparsable status is a broken server: UNKNOWN, as gRPC clients treat it.
            Some(v) => Some(Self::parse(v.as_bytes()).unwrap_or(Self::UNKNOWN)),
            None if grpc_protocol(headers) == Some(GrpcProtocol::Web) => Some(Self::OK),
            None => None,
        }
    }

    /// The code a gRPC client derives from an HTTP status when no `grpc-status` came
    /// (gRPC's "HTTP to gRPC status code mapping").
    pub(crate) fn from_http_status(status: u16) -> Self {
        match status {
            400 => GrpcCode(13),
            401 => GrpcCode(16),
            403 => GrpcCode(7),
            404 => GrpcCode(12),
            429 | 502..=504 => GrpcCode(14),
            _ => Self::UNKNOWN,
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        self.0
    }

    pub(crate) fn name(self) -> &'static str {
        GRPC_CODE_NAMES[self.0 as usize]
    }

    /// Codes that mean the server failed, not the caller.
    pub(crate) fn is_server_fault(self) -> bool {
        matches!(self.0, 2 | 4 | 12 | 13 | 14 | 15)
    }
}

/// The two wire formats of gRPC over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcProtocol {
    /// `application/grpc`, `application/grpc+proto`, ...: status in HTTP trailers.
    Native,
    /// `application/grpc-web`, `application/grpc-web-text`, with `+format` suffixes.
    Web,
}

/// The gRPC format a `content-type` names, if any (media types ignore ASCII case).
pub(crate) fn grpc_protocol(headers: &HeaderMap) -> Option<GrpcProtocol> {
    const GRPC: &[u8] = b"application/grpc";
    let value = headers.get(http::header::CONTENT_TYPE)?.as_bytes();
    let rest = value
        .get(GRPC.len()..)
        .filter(|_| value[..GRPC.len()].eq_ignore_ascii_case(GRPC))?;
    // The type ends, or a `+format` suffix or parameters follow.
    let ends = |rest: &[u8]| matches!(rest.first(), None | Some(b'+' | b';' | b' '));
    if ends(rest) {
        return Some(GrpcProtocol::Native);
    }
    let web = rest.get(..4).filter(|w| w.eq_ignore_ascii_case(b"-web"))?;
    let rest = &rest[web.len()..];
    let rest = match rest.get(..5) {
        Some(text) if text.eq_ignore_ascii_case(b"-text") => &rest[5..],
        _ => rest,
    };
    ends(rest).then_some(GrpcProtocol::Web)
}

/// Whether a request is a gRPC call, native or gRPC-Web.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    grpc_protocol(headers).is_some()
}

/// How an exchange ended, when it did not simply complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The handler (or its body) panicked.
    Panic,
    /// The inner service returned an error instead of a response.
    ServiceError,
    /// The response body failed mid-stream.
    BodyError,
    /// The client went away before the response body ended.
    Cancelled,
}

impl Failure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Panic => "panic",
            Failure::ServiceError => "service_error",
            Failure::BodyError => "body_error",
            Failure::Cancelled => "cancelled",
        }
    }
}

/// `error.type` of a finished exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorType {
    /// A failure that ended the exchange early.
    Failure(Failure),
    /// A gRPC server-fault code.
    Grpc(GrpcCode),
    /// A 5xx response; the label is the status code, as the semantic conventions say.
    Status(u16),
}

/// The `error_type` label and `error.type` attribute: the failure's name, the gRPC code's
/// name, or the 5xx status, as the semantic conventions say.
impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text(&mut itoa::Buffer::new()))
    }
}

impl ErrorType {
    /// The text, a status code written into `digits`: no allocation.
    pub(crate) fn text<'a>(&self, digits: &'a mut itoa::Buffer) -> &'a str {
        match *self {
            ErrorType::Status(status) => digits.format(status),
            _ => self.static_str().unwrap_or_default(),
        }
    }

    /// The text, when it is a fixed name (not a status code).
    pub(crate) fn static_str(&self) -> Option<&'static str> {
        match *self {
            ErrorType::Failure(failure) => Some(failure.as_str()),
            ErrorType::Grpc(code) => Some(code.name()),
            ErrorType::Status(_) => None,
        }
    }
}

/// The classified outcome of one exchange: the status code to record and its error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) grpc: Option<GrpcCode>,
    pub(crate) error: Option<ErrorType>,
}

impl Outcome {
    /// Classifies an exchange from what was observed of it.
    ///
    /// `status` is the response status (0 when no response was produced), `grpc_status` the
    /// `grpc-status` seen in headers or trailers, `failure` how it ended early, if it did.
    pub(crate) fn classify(
        status: u16,
        grpc_call: bool,
        grpc_status: Option<GrpcCode>,
        failure: Option<Failure>,
    ) -> Self {
        let status = match failure {
            Some(Failure::Cancelled) => 499,
            Some(Failure::Panic | Failure::ServiceError) => 500,
            _ => status,
        };
        let grpc = grpc_call.then(|| match (grpc_status, failure) {
            (_, Some(Failure::Cancelled)) => GrpcCode(1),
            (_, Some(Failure::Panic | Failure::ServiceError | Failure::BodyError)) => {
                grpc_status.unwrap_or(GrpcCode::INTERNAL)
            }
            // Only gRPC-Web's OK comes without a `grpc-status`: a non-200 head overrides it.
            (Some(code), None) if status == 200 || code != GrpcCode::OK => code,
            (None, None) if status == 200 => GrpcCode::UNKNOWN,
            (_, None) => GrpcCode::from_http_status(status),
        });
        let error = match (failure, grpc) {
            (Some(f), _) => Some(ErrorType::Failure(f)),
            (None, Some(code)) if code.is_server_fault() => Some(ErrorType::Grpc(code)),
            (None, _) if status >= 500 => Some(ErrorType::Status(status)),
            _ => None,
        };
        Outcome {
            status,
            grpc,
            error,
        }
    }

    /// True when the exchange is a server error (the E of RED); cancellations are not.
    #[cfg(any(test, feature = "sentry"))]
    pub(crate) fn is_server_error(&self) -> bool {
        !matches!(
            self.error,
            None | Some(ErrorType::Failure(Failure::Cancelled))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_status_parses_every_code_and_nothing_else() {
        for code in 0u8..=16 {
            let parsed = GrpcCode::parse(code.to_string().as_bytes()).unwrap();
            assert_eq!(parsed.as_u8(), code);
        }
        for bad in ["17", "-1", "", "01", "1a", "99", "abc", "14 "] {
            assert_eq!(GrpcCode::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn server_faults_are_the_six_codes_of_the_design() {
        let faults: Vec<_> = (0u8..=16)
            .map(GrpcCode)
            .filter(|c| c.is_server_fault())
            .map(GrpcCode::name)
            .collect();
        assert_eq!(
            faults,
            [
                "UNKNOWN",
                "DEADLINE_EXCEEDED",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS"
            ]
        );
    }

    #[test]
    fn http_classification() {
        let ok = Outcome::classify(200, false, None, None);
        assert_eq!(ok.error, None);
        assert!(!ok.is_server_error());
        let not_found = Outcome::classify(404, false, None, None);
        assert!(!not_found.is_server_error());
        let unavailable = Outcome::classify(503, false, None, None);
        assert_eq!(unavailable.error, Some(ErrorType::Status(503)));
        assert!(unavailable.is_server_error());
        let cancelled = Outcome::classify(200, false, None, Some(Failure::Cancelled));
        assert_eq!(cancelled.status, 499);
        assert!(!cancelled.is_server_error());
        let panic = Outcome::classify(0, false, None, Some(Failure::Panic));
        assert_eq!((panic.status, panic.is_server_error()), (500, true));
        let body = Outcome::classify(200, false, None, Some(Failure::BodyError));
        assert_eq!(body.status, 200);
        assert_eq!(body.error, Some(ErrorType::Failure(Failure::BodyError)));
    }

    #[test]
    fn grpc_classification() {
        let unavailable = Outcome::classify(200, true, Some(GrpcCode(14)), None);
        assert_eq!(unavailable.error, Some(ErrorType::Grpc(GrpcCode(14))));
        let invalid = Outcome::classify(200, true, Some(GrpcCode(3)), None);
        assert_eq!(invalid.error, None);
        let missing = Outcome::classify(200, true, None, None);
        assert_eq!(missing.grpc, Some(GrpcCode::UNKNOWN));
        assert!(missing.is_server_error());
        let proxy_404 = Outcome::classify(404, true, None, None);
        assert_eq!(proxy_404.grpc.map(GrpcCode::name), Some("UNIMPLEMENTED"));
        let cancelled = Outcome::classify(200, true, None, Some(Failure::Cancelled));
        assert_eq!(cancelled.grpc.map(GrpcCode::name), Some("CANCELLED"));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(GrpcCode::from_headers(&trailers), Some(GrpcCode(14)));
        trailers.insert("grpc-status", "banana".parse().unwrap());
        assert_eq!(GrpcCode::from_headers(&trailers), Some(GrpcCode::UNKNOWN));
    }

    fn content_type(ct: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_bytes(ct).unwrap(),
        );
        h
    }

    #[test]
    fn grpc_content_types() {
        assert_eq!(grpc_protocol(&HeaderMap::new()), None);
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc; charset=utf-8",
            "Application/GRPC",
        ] {
            let native = Some(GrpcProtocol::Native);
            assert_eq!(grpc_protocol(&content_type(ct.as_bytes())), native, "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpc-web-text+proto",
            "application/grpc-WEB",
        ] {
            let web = Some(GrpcProtocol::Web);
            assert_eq!(grpc_protocol(&content_type(ct.as_bytes())), web, "{ct}");
        }
        for ct in [
            &b"application/json"[..],
            b"application/grpcx",
            b"application/grpc-webby",
            b"application/grpc-web-textual",
            b"application/grp",
            b"application/grpc\xff",
            b"\xff\xfe",
        ] {
            let h = content_type(ct);
            assert!(!is_grpc(&h), "{}", String::from_utf8_lossy(ct));
        }
    }

    #[test]
    fn grpc_web_status_comes_from_the_head_or_the_http_status() {
        let web = content_type(b"application/grpc-web+proto");
        // Status in the body, not decoded: the head says OK.
        assert_eq!(GrpcCode::from_headers(&web), Some(GrpcCode::OK));
        let ok = Outcome::classify(200, true, GrpcCode::from_headers(&web), None);
        assert_eq!((ok.grpc, ok.error), (Some(GrpcCode::OK), None));
        // Trailers-only: the status is in the head and read exactly.
        let mut trailers_only = web.clone();
        trailers_only.insert("grpc-status", "14".parse().unwrap());
        let code = GrpcCode::from_headers(&trailers_only);
        let failed = Outcome::classify(200, true, code, None);
        assert_eq!(failed.error, Some(ErrorType::Grpc(GrpcCode(14))));
        // A proxy's 503 without any status: the gRPC mapping of the HTTP status.
        let proxy = Outcome::classify(503, true, GrpcCode::from_headers(&web), None);
        assert_eq!(proxy.grpc.map(GrpcCode::name), Some("UNAVAILABLE"));
        assert!(proxy.is_server_error());
        let missing = Outcome::classify(404, true, GrpcCode::from_headers(&web), None);
        assert_eq!(missing.grpc.map(GrpcCode::name), Some("UNIMPLEMENTED"));
        // Native gRPC: no status anywhere is a broken server.
        let native = content_type(b"application/grpc");
        assert_eq!(GrpcCode::from_headers(&native), None);
        // Trailers never carry a content-type: only a real status there counts.
        assert_eq!(GrpcCode::from_headers(&HeaderMap::new()), None);
        let mut bad = HeaderMap::new();
        bad.insert(
            "grpc-status",
            http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(GrpcCode::from_headers(&bad), Some(GrpcCode::UNKNOWN));
    }
}
