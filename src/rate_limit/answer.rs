//! The refusal: `429 Too Many Requests` with `Retry-After`, the IETF RateLimit fields
//! (draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy` and `RateLimit`, Structured
//! Field lists) and an RFC 9457 problem body; for gRPC, `RESOURCE_EXHAUSTED` in a
//! trailers-only response.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use super::quota::Quota;

pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The `RateLimit-Policy` item of a policy, made once: `"name";q=100;w=1`.
pub(crate) fn policy_item(name: &str, quota: &Quota) -> String {
    let mut item = sf_string(name);
    let _ = write!(item, ";q={};w={}", quota.count, quota.window_seconds());
    item
}

/// A Structured Field String: printable ASCII, `"` and `\` escaped; other bytes dropped
/// (policy names are checked at build time, so none are).
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whole seconds, rounded up: a client told 0 would retry at once.
pub(crate) fn seconds_up(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

/// What a refusal says: the policy that refused and when to come back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal<'a> {
    pub(crate) policy: &'a str,
    /// `RateLimit-Policy` item of the policy.
    pub(crate) policy_item: &'a str,
    pub(crate) retry_after_nanos: u64,
    pub(crate) reset_nanos: u64,
}

impl Refusal<'_> {
    fn retry_after(&self) -> u64 {
        seconds_up(self.retry_after_nanos).max(1)
    }

    fn headers(&self, res: &mut Response<Bytes>) {
        let headers = res.headers_mut();
        let value = |s: String| HeaderValue::from_maybe_shared(Bytes::from(s)).ok();
        if let Some(v) = value(self.policy_item.to_owned()) {
            headers.insert(RATELIMIT_POLICY, v);
        }
        let mut limit = sf_string(self.policy);
        let reset = seconds_up(self.reset_nanos).max(self.retry_after());
        let _ = write!(limit, ";r=0;t={reset}");
        if let Some(v) = value(limit) {
            headers.insert(RATELIMIT, v);
        }
        headers.insert(RETRY_AFTER, HeaderValue::from(self.retry_after()));
    }

    /// `429` with the fields and an `application/problem+json` body.
    pub(crate) fn http(&self) -> Response<Bytes> {
        let retry = self.retry_after();
        let mut body = String::with_capacity(256);
        body.push_str(
            r#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"#,
        );
        json_string(
            &mut body,
            &format!(
                "The rate limit of policy {:?} is exhausted: retry in {retry} s.",
                self.policy
            ),
        );
        body.push_str(r#","policy":"#);
        json_string(&mut body, self.policy);
        let _ = write!(body, r#","retry_after":{retry}}}"#);
        let mut res = Response::new(Bytes::from(body));
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        self.headers(&mut res);
        res
    }

    /// A trailers-only gRPC response: `grpc-status: 8` (`RESOURCE_EXHAUSTED`), with the
    /// same fields, and `grpc-retry-pushback-ms` for clients with a retry policy.
    pub(crate) fn grpc(&self) -> Response<Bytes> {
        let mut res = Response::new(Bytes::new());
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("rate limit exceeded"),
        );
        headers.insert(
            "grpc-retry-pushback-ms",
            HeaderValue::from(self.retry_after() * 1000),
        );
        self.headers(&mut res);
        res
    }
}

/// The fail-closed answer while the shared backend cannot decide: `503` with
/// `Retry-After: 1` and a problem body (gRPC: `UNAVAILABLE`), a server-side failure in
/// the RED metrics, which it is.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn unavailable(grpc: bool) -> Response<Bytes> {
    let mut res = if grpc {
        let mut res = Response::new(Bytes::new());
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("rate limit backend unavailable"),
        );
        res
    } else {
        let mut res = Response::new(Bytes::from_static(
            br#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"The rate limit cannot be checked right now: retry in 1 s."}"#,
        ));
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    };
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// The `RateLimit` item of an admitted request: `"name";r=5;t=1`.
pub(crate) fn limit_item(policy: &str, remaining: u64, reset_nanos: u64) -> String {
    let mut item = sf_string(policy);
    let _ = write!(item, ";r={remaining};t={}", seconds_up(reset_nanos));
    item
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(policy_item: &str) -> Refusal<'_> {
        Refusal {
            policy: "per-client",
            policy_item,
            retry_after_nanos: 1_200_000_000,
            reset_nanos: 9_500_000_000,
        }
    }

    #[test]
    fn the_429_carries_every_field() {
        let item = policy_item("per-client", &Quota::parse("100/min").unwrap());
        assert_eq!(item, r#""per-client";q=100;w=60"#);
        let res = refusal(&item).http();
        assert_eq!(res.status(), 429);
        let h = res.headers();
        assert_eq!(h["retry-after"], "2");
        assert_eq!(h["ratelimit-policy"], r#""per-client";q=100;w=60"#);
        assert_eq!(h["ratelimit"], r#""per-client";r=0;t=10"#);
        assert_eq!(h["content-type"], "application/problem+json");
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Too Many Requests");
        assert_eq!(body["status"], 429);
        assert_eq!(body["policy"], "per-client");
        assert_eq!(body["retry_after"], 2);
        assert!(body["detail"].as_str().unwrap().contains("retry in 2 s"));
    }

    #[test]
    fn grpc_is_told_resource_exhausted_in_the_headers() {
        let res = refusal(r#""per-client";q=1;w=1"#).grpc();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["grpc-status"], "8");
        assert_eq!(res.headers()["grpc-retry-pushback-ms"], "2000");
        assert_eq!(res.headers()["content-type"], "application/grpc");
        assert!(res.body().is_empty());
    }

    #[test]
    fn names_are_structured_field_strings() {
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(limit_item("p", 4, 1), r#""p";r=4;t=1"#);
        assert_eq!(seconds_up(0), 0);
        assert_eq!(seconds_up(1), 1);
    }
}
