//! The response-header policy of the one pass: security headers and CORS, decided when the
//! request arrives and applied to whatever response leaves (the application's, an error, a
//! panic's 500, or a preflight answer the layer makes itself).
//!
//! Applying it is one clone of a header map made at build time, plus the response's own
//! few headers moved into it: far cheaper than inserting a dozen headers one by one, each
//! hashed and the map grown on the way.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};

use crate::config::Setup;
use crate::cors::{CompiledCors, CorsDecision, Grant, TemplateGrant};
use crate::error::BuildError;
use crate::security_headers::CompiledHeaders;
use crate::signal::{Arrival, Ending, Head, Signal};

/// Security headers and CORS, compiled by `build()`.
#[derive(Debug)]
pub(crate) struct ResponsePolicy {
    headers: Option<CompiledHeaders>,
    cors: Option<CompiledCors>,
    /// The headers the layer adds, made once per grant: the common case copies its answer
    /// and inserts nothing.
    templates: Templates,
    /// Names the application may not set: overrides and the removal list.
    owned: Vec<HeaderName>,
}

/// The complete headers of each grant, each without and with HSTS (`[hsts]`).
#[derive(Debug)]
struct Templates {
    /// No CORS grant (not a CORS request, or refused).
    none: [HeaderMap; 2],
    /// `Access-Control-Allow-Origin: *`: public policies, and the slot an echoed origin
    /// (or an exact origin beyond [`EXACT_TEMPLATES`]) replaces.
    star: [HeaderMap; 2],
    /// Each of the first [`EXACT_TEMPLATES`] exact origins' grant.
    exact: Vec<[HeaderMap; 2]>,
}

/// The policy decided for one request, to be applied to its response head.
#[derive(Debug)]
pub(crate) struct PolicyFor {
    policy: Arc<ResponsePolicy>,
    hsts: bool,
    grant: Grant,
}

/// Exact origins beyond this many share the `*` slot template and insert their value.
const EXACT_TEMPLATES: usize = 32;

/// The CORS headers of a grant: the layer's alone on CORS requests.
const CORS_GRANT: [HeaderName; 3] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
];

impl ResponsePolicy {
    /// `None` when there is nothing to do, so requests pay nothing.
    pub(crate) fn new(
        headers: Option<CompiledHeaders>,
        cors: Option<CompiledCors>,
    ) -> Option<Arc<Self>> {
        if headers.is_none() && cors.is_none() {
            return None;
        }
        let template = |grant: TemplateGrant, hsts: bool| {
            let mut map = HeaderMap::new();
            if let Some(h) = &headers {
                h.add_to(&mut map, hsts);
            }
            if let Some(c) = &cors {
                c.add_to(&mut map, grant);
            }
            // Room for the response's own headers, so moving them in never rehashes (a
            // clone keeps the index table's size).
            let mut sized = HeaderMap::with_capacity(map.len() + 8);
            sized.extend(map);
            sized
        };
        let both = |grant: TemplateGrant| [template(grant, false), template(grant, true)];
        let exact = cors
            .as_ref()
            .map_or(0, |c| c.exact_origins().min(EXACT_TEMPLATES));
        let templates = Templates {
            none: both(TemplateGrant::None),
            star: both(TemplateGrant::Star),
            exact: (0..exact).map(|i| both(TemplateGrant::Exact(i))).collect(),
        };
        let owned = headers
            .as_ref()
            .map(CompiledHeaders::owned)
            .unwrap_or_default();
        Some(Arc::new(ResponsePolicy {
            headers,
            cors,
            templates,
            owned,
        }))
    }

    /// The policy for one request's response, and the answer to it when the layer
    /// answers it itself (a CORS preflight, which carries its own CORS headers).
    fn decide<B>(policy: &Arc<Self>, req: &Request<B>) -> (PolicyFor, Option<Response<Bytes>>) {
        let hsts = policy.headers.as_ref().is_some_and(|h| h.hsts_for(req));
        let mut this = PolicyFor {
            policy: policy.clone(),
            hsts,
            grant: Grant::NotCors,
        };
        match policy.cors.as_ref().map(|cors| cors.decide(req)) {
            Some(CorsDecision::Answer(res)) => (this, Some(res)),
            Some(CorsDecision::Pass(grant)) => {
                this.grant = grant;
                (this, None)
            }
            None => (this, None),
        }
    }
}

/// The response policy as a signal of the pass: every response leaves with it, the
/// application's, the layer's own answers, and the 500 of a panic.
pub(crate) struct PolicySignal(Option<Arc<ResponsePolicy>>);

impl Signal for PolicySignal {
    type Exchange = Option<PolicyFor>;
    type Entered<'a> = ();

    fn build(setup: &mut Setup<'_>) -> Result<Self, BuildError> {
        let mut cors = setup.cors.take();
        if let Some(cors) = &mut cors {
            cors.register(setup.sink);
        }
        Ok(PolicySignal(ResponsePolicy::new(
            setup.headers.take(),
            cors,
        )))
    }

    #[inline]
    fn arrive<B>(&self, req: &Request<B>, arrival: &mut Arrival<'_>) -> Self::Exchange {
        let policy = self.0.as_ref()?;
        let (policy, answered) = ResponsePolicy::decide(policy, req);
        if answered.is_some() {
            arrival.answer = answered;
        }
        Some(policy)
    }

    fn enter<'a>(&'a self, _: &'a Self::Exchange) {}

    #[inline]
    fn respond(&self, policy: &mut Self::Exchange, head: &mut Head<'_>) {
        if let Some(policy) = policy {
            policy.apply(head.headers);
        }
    }

    fn end(&self, _: &mut Self::Exchange, _: &mut Ending<'_>) {}
}

impl PolicyFor {
    /// Applies security headers and the CORS grant to a response head: the layer's headers,
    /// then the response's own over them, except those the layer owns.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let policy = &*self.policy;
        let templates = &policy.templates;
        let (template, echo) = match &self.grant {
            Grant::NotCors | Grant::Refused => (&templates.none, None),
            Grant::Any => (&templates.star, None),
            Grant::Exact(i) if *i < EXACT_TEMPLATES => (&templates.exact[*i], None),
            Grant::Exact(i) => (
                &templates.star,
                policy.cors.as_ref().map(|c| c.exact_origin(*i)),
            ),
            Grant::Echo(origin) => (&templates.star, Some(origin)),
        };
        let template = &template[usize::from(self.hsts)];
        let own = std::mem::replace(headers, template.clone());
        if let Some(origin) = echo {
            // Replaces the template's `*` slot: no new entry.
            let _ = headers.try_insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        }
        let cors_request = !matches!(self.grant, Grant::NotCors);
        let vary_ours = policy.cors.as_ref().is_some_and(|c| c.varies());
        let mut vary_merge = false;
        let mut keep = false;
        let mut last: Option<HeaderName> = None;
        for (name, value) in own {
            if let Some(name) = name {
                keep =
                    !(policy.owned.contains(&name) || cors_request && CORS_GRANT.contains(&name));
                if keep {
                    if vary_ours && name == header::VARY {
                        vary_merge = true;
                    }
                    // The application's value replaces the layer's default.
                    let _ = headers.try_insert(&name, value);
                }
                last = Some(name);
            } else if let (true, Some(name)) = (keep, &last) {
                let _ = headers.try_append(name, value);
            }
        }
        if vary_merge {
            crate::cors::merge_vary(headers);
        }
    }
}

#[cfg(test)]
pub(crate) fn apply_for_test(
    policy: &Arc<ResponsePolicy>,
    headers: &mut HeaderMap,
    hsts: bool,
    grant: Grant,
) {
    PolicyFor {
        policy: policy.clone(),
        hsts,
        grant,
    }
    .apply(headers);
}

/// Adds `value` under `name` when a template does not have it yet (first setting wins).
pub(crate) fn add(map: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    if !map.contains_key(name) {
        map.insert(name.clone(), value.clone());
    }
}
