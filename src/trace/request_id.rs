//! The request id: the caller's when it is valid and short, else generated; on the span,
//! in every log line of the request, and echoed in the response.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::TraceId;

/// `x-request-id`, the default request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest request id taken from a caller; longer ones are replaced.
const MAX_LEN: usize = 128;

/// The id of one request, available to handlers in the [`RequestContext`](super::RequestContext)
/// and as `request_id` in log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Id);

/// A generated id is the trace id: kept as bytes, written as hex only when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Caller(HeaderValue),
    Generated(TraceId),
}

impl RequestId {
    /// The caller's id from `header` when there is exactly one valid value, else a new one
    /// (the trace id in hex: unique, and it leads straight to the trace).
    pub(crate) fn take_or_make(headers: &HeaderMap, header: &HeaderName, trace: TraceId) -> Self {
        let mut values = headers.get_all(header).iter();
        if let (Some(value), None) = (values.next(), values.next()) {
            if is_valid(value.as_bytes()) {
                return RequestId(Id::Caller(value.clone()));
            }
        }
        RequestId(Id::Generated(trace))
    }

    /// The id the caller sent, if it was taken (`None` when it was generated).
    pub fn from_caller(&self) -> Option<&str> {
        match &self.0 {
            // Only ids checked by `is_valid` are kept: visible ASCII.
            Id::Caller(value) => value.to_str().ok(),
            Id::Generated(_) => None,
        }
    }

    pub(crate) fn header_value(&self) -> HeaderValue {
        match &self.0 {
            Id::Caller(value) => value.clone(),
            Id::Generated(trace) => HeaderValue::from_bytes(trace.to_hex().as_bytes())
                .expect("hex is a valid header value"),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Id::Caller(_) => f.write_str(self.from_caller().unwrap_or("")),
            Id::Generated(trace) => f.write_str(trace.to_hex().as_str()),
        }
    }
}

/// 1 to 128 characters that are safe in a header, a log line and a JSON string: letters,
/// digits and `-_.:/+=@`.
fn is_valid(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_when_valid_else_generated() {
        let name = HeaderName::from_static(REQUEST_ID);
        let trace = TraceId::random();
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(REQUEST_ID, HeaderValue::from_str(v).unwrap());
            }
            RequestId::take_or_make(&h, &name, trace).to_string()
        };
        let generated = trace.to_string();
        let long = "a".repeat(129);
        let table: &[(&[&str], &str)] = &[
            (&["abc-123"], "abc-123"),
            (
                &["f47ac10b-58cc-4372-a567-0e02b2c3d479"],
                "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            ),
            (&["svc:1/req=9+x@y_z.w"], "svc:1/req=9+x@y_z.w"),
            (&[&long[..128]], &long[..128]),
            (&[], &generated),
            (&[""], &generated),
            (&[&long], &generated),
            (&["has space"], &generated),
            (&["quote\"inside"], &generated),
            (&["<script>"], &generated),
            (&["one", "two"], &generated),
        ];
        for (input, want) in table {
            assert_eq!(with(input), *want, "{input:?}");
        }
    }
}
