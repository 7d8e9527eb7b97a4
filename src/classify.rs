//! What counts as an error (the E of RED), decided once for every signal.
//!
//! Server errors are: responses with status >= 500, panics, errors returned by the inner
//! service or its response body, and gRPC status codes that mean a server fault, read from
//! the response headers (trailers-only responses) or the trailers. 4xx responses and gRPC
//! client-side codes (`INVALID_ARGUMENT`, `NOT_FOUND`, ...) are not server errors. A request
//! the client abandoned is recorded as `499` / `cancelled`, which is kept apart from server
//! errors so SLOs can choose.

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
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        // An unparsable status is a broken server: UNKNOWN, as gRPC clients treat it.
        headers
            .get("grpc-status")
            .map(|v| Self::parse(v.as_bytes()).unwrap_or(Self::UNKNOWN))
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

/// Whether a request is a gRPC call: `content-type: application/grpc` or `application/grpc+...`.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
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
            (Some(code), None) => code,
            (None, None) if status == 200 => GrpcCode::UNKNOWN,
            (None, None) => GrpcCode::from_http_status(status),
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

    #[test]
    fn grpc_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc-web",
        ] {
            h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
            assert!(is_grpc(&h), "{ct}");
        }
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        assert!(!is_grpc(&h));
    }
}
