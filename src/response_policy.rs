//! The response-header policy of the one pass: security headers and CORS, decided when the
//! request arrives and applied to whatever response leaves (the application's, an error, a
//! panic's 500, or a preflight answer the layer makes itself).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};

use crate::cors::{CompiledCors, CorsDecision, Grant};
use crate::security_headers::CompiledHeaders;

/// Security headers and CORS, compiled by `build()`.
#[derive(Debug)]
pub(crate) struct ResponsePolicy {
    pub(crate) headers: Option<CompiledHeaders>,
    pub(crate) cors: Option<CompiledCors>,
}

/// What the layer does with one request.
pub(crate) enum Verdict {
    /// Answer it without the application (a CORS preflight), with the policy applied.
    Answer(Response<Bytes>),
    /// Pass it on; apply the policy to the response.
    Pass(PolicyFor),
}

/// The policy decided for one request, to be applied to its response head.
#[derive(Debug)]
pub(crate) struct PolicyFor {
    policy: Arc<ResponsePolicy>,
    hsts: bool,
    grant: Grant,
}

impl ResponsePolicy {
    /// `None` when there is nothing to do, so requests pay nothing.
    pub(crate) fn new(
        headers: Option<CompiledHeaders>,
        cors: Option<CompiledCors>,
    ) -> Option<Arc<Self>> {
        (headers.is_some() || cors.is_some()).then(|| Arc::new(ResponsePolicy { headers, cors }))
    }

    pub(crate) fn decide<B>(policy: &Arc<Self>, req: &Request<B>) -> Verdict {
        let hsts = policy.headers.as_ref().is_some_and(|h| h.hsts_for(req));
        let decision = match &policy.cors {
            Some(cors) => cors.decide(req),
            None => CorsDecision::Pass(Grant::NotCors),
        };
        let (grant, answer) = match decision {
            CorsDecision::Pass(grant) => (grant, None),
            // The preflight answer carries its own CORS headers; only security headers remain.
            CorsDecision::Answer(res) => (Grant::NotCors, Some(res)),
        };
        match answer {
            Some(mut res) => {
                if let Some(headers) = &policy.headers {
                    headers.apply(res.headers_mut(), hsts);
                }
                Verdict::Answer(res)
            }
            None => Verdict::Pass(PolicyFor {
                policy: policy.clone(),
                hsts,
                grant,
            }),
        }
    }
}

impl PolicyFor {
    /// Applies security headers and the CORS grant to a response head.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        if let Some(security) = &self.policy.headers {
            security.apply(headers, self.hsts);
        }
        if let Some(cors) = &self.policy.cors {
            cors.apply(headers, &self.grant);
        }
    }
}
