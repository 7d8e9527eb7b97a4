//! What of a request may leave the process in an event.
//!
//! With PII off (the default), headers are an allowlist ([`KEPT_HEADERS`]: host, user
//! agent, content type and length, accept, origin, request id), so credentials
//! (`Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, API-key and token
//! headers), client addresses (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`, ...) and
//! whatever custom header an application invents never leave; the URL loses its user and
//! password, and the values of secret-looking query keys (`token`, `password`, `pw`, `sid`,
//! `key`, `session`, `signature`, ...: the list is [`redact`](crate::redact)'s, shared with
//! spans) become `[Filtered]`. With PII on, every header is sent and the query is kept.
//! Either way, a header value marked [`http::HeaderValue::is_sensitive`] is never sent.
//!
//! What is kept of each request is in [`kept`](super::kept).

use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, USER_AGENT};
use http::HeaderName;

/// What replaces a secret value.
pub(crate) const FILTERED: &str = "[Filtered]";

/// How many headers are kept when PII is off.
pub(crate) const KEPT: usize = 7;

/// The headers an event carries when PII is off, useful to debug and never personal: six
/// fixed ones, and the request id header the layer is configured with (when it has one).
#[derive(Debug, Clone)]
pub(crate) struct KeptHeaders([Option<HeaderName>; KEPT]);

impl KeptHeaders {
    pub(crate) fn new(request_id: Option<HeaderName>) -> Self {
        let fixed = [
            HOST,
            USER_AGENT,
            CONTENT_TYPE,
            CONTENT_LENGTH,
            ACCEPT,
            ORIGIN,
        ];
        let [a, b, c, d, e, f] = fixed.map(Some);
        KeptHeaders([a, b, c, d, e, f, request_id])
    }

    /// Where `name` is kept, if it is.
    pub(crate) fn position(&self, name: &HeaderName) -> Option<usize> {
        self.0.iter().position(|kept| kept.as_ref() == Some(name))
    }

    /// The kept headers, by position.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &HeaderName)> {
        (self.0.iter().enumerate()).filter_map(|(i, name)| Some((i, name.as_ref()?)))
    }
}

/// The query string with the values of secret-looking keys replaced by `[Filtered]` (the
/// key list is [`redact`](crate::redact)'s, the one spans use too); as sent with PII on.
pub(crate) fn query(raw: &str, send_pii: bool) -> String {
    if send_pii {
        return raw.to_owned();
    }
    crate::redact::query(raw, FILTERED).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_are_filtered() {
        let q = "page=2&token=abc&Password=p&api_key=k&pass%77ord=x&sig&q=rust";
        assert_eq!(
            query(q, false),
            "page=2&token=[Filtered]&Password=[Filtered]&api_key=[Filtered]&pass%77ord=[Filtered]&[Filtered]&q=rust"
        );
        assert_eq!(query(q, true), q);
        // What the issue found sent in clear.
        let q = "pass=a&pw=b&sid=c&bearer=d&q=1;token=e";
        assert_eq!(
            query(q, false),
            "pass=[Filtered]&pw=[Filtered]&sid=[Filtered]&bearer=[Filtered]&q=1;token=[Filtered]"
        );
    }
}
