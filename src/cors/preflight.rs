//! Preflights: `OPTIONS` with `Origin` and `Access-Control-Request-Method`, answered by the
//! layer itself and never passed to the application.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::origin::Matched;
use super::{CompiledCors, Refusal, ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK};

/// Whether a request is a CORS preflight (Fetch: an `OPTIONS` request with `Origin` and
/// `Access-Control-Request-Method`); every other `OPTIONS` reaches the application.
pub(crate) fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && headers.contains_key(header::ORIGIN)
}

const ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK: header::HeaderName =
    header::HeaderName::from_static("access-control-allow-private-network");

/// The `Vary` of every preflight answer: it depends on all three request headers.
static PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

/// Answers a preflight: `204` with the grant when the policy allows every part of it,
/// otherwise `403` without a single grant header (the browser then blocks the request).
pub(crate) fn answer(
    cors: &CompiledCors,
    origin: &HeaderValue,
    req: &HeaderMap,
) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    let headers = res.headers_mut();
    super::vary::merge(headers, &PREFLIGHT_VARY);
    match check(cors, origin, req) {
        Err(refusal) => {
            cors.refuse(refusal, origin, "preflight");
            *res.status_mut() = StatusCode::FORBIDDEN;
        }
        Ok(grant) => {
            *res.status_mut() = StatusCode::NO_CONTENT;
            let headers = res.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, grant.origin);
            if cors.credentials {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    super::TRUE.clone(),
                );
            }
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                cors.methods_value.clone(),
            );
            if let Some(requested) = grant.headers {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
            }
            if let Some(max_age) = &cors.max_age {
                headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
            }
            if grant.private_network {
                headers.insert(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, super::TRUE.clone());
            }
        }
    }
    res
}

/// What an allowed preflight is granted.
struct Grant {
    origin: HeaderValue,
    /// The requested headers, every one of them checked, echoed back.
    headers: Option<HeaderValue>,
    private_network: bool,
}

fn check(cors: &CompiledCors, origin: &HeaderValue, req: &HeaderMap) -> Result<Grant, Refusal> {
    let origin = match cors.origins.matches(origin) {
        None => return Err(Refusal::Origin),
        Some(Matched::Any) => super::ANY.clone(),
        Some(Matched::Exact(i)) => cors.origins.exact()[i].clone(),
        Some(Matched::Echo(origin)) => origin,
    };
    let method = req
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .map_or(&[][..], HeaderValue::as_bytes);
    if !cors.method_allowed(method) {
        return Err(Refusal::Method);
    }
    let mut requested = req.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS).iter();
    let headers = match (requested.next(), requested.next()) {
        (None, _) => None,
        (Some(one), None) => Some(one.clone()),
        // Several lines are one list (RFC 9110 §5.3): joined, so the echo is exact.
        (Some(first), Some(second)) => {
            let mut joined = first.as_bytes().to_vec();
            for more in std::iter::once(second).chain(requested) {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(more.as_bytes());
            }
            Some(HeaderValue::from_bytes(&joined).map_err(|_| Refusal::Headers)?)
        }
    };
    if let Some(list) = &headers {
        let list = list.to_str().map_err(|_| Refusal::Headers)?;
        let names = list.split(',').map(str::trim).filter(|n| !n.is_empty());
        if !names.into_iter().all(|name| cors.header_allowed(name)) {
            return Err(Refusal::Headers);
        }
    }
    let private_network = req
        .get(ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if private_network && !cors.private_network {
        return Err(Refusal::PrivateNetwork);
    }
    Ok(Grant {
        origin,
        headers,
        private_network,
    })
}
