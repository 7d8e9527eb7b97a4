//! Rate limiting as a signal of the one pass: decided when the request arrives, before the
//! application is called. A refusal is the signal's answer to the request, so it leaves
//! through every other signal like any response: a 429 in the RED metrics, on the span,
//! with the security headers and the CORS grant. A decision shared through Redis cannot be
//! made at once: it is handed to the pass as a deferred decision, awaited before the
//! application is called.

use std::sync::{Arc, OnceLock};

use http::Request;

use super::{Admission, LimitHeaders, Limiter};
use crate::config::Setup;
use crate::error::BuildError;
use crate::signal::{Arrival, Head, OverQuotaFinding, Signal};

/// The rate-limit signal: `None` when no policy is configured (every hook a no-op).
pub(crate) struct RateLimitSignal(Option<Arc<Limiter>>);

/// The fields for an admitted response, when asked for: boxed, so requests that need none
/// carry one word (the exchange rides in every future and body).
pub(crate) type LimitState = Option<Box<Fields>>;

/// Where an admitted response's fields come from.
pub(crate) enum Fields {
    Now(LimitHeaders),
    /// Filled by a deferred (Redis) decision that admitted the request.
    Later(Arc<OnceLock<LimitHeaders>>),
}

impl Signal for RateLimitSignal {
    type Exchange = LimitState;
    type Entered<'a> = ();

    fn build(setup: &mut Setup<'_>) -> Result<Self, BuildError> {
        let Some(limits) = setup.settings.rate_limit.as_ref() else {
            return Ok(RateLimitSignal(None));
        };
        let limiter = Limiter::build(
            limits,
            setup.trusted.clone(),
            // Probes and scrapes are never limited, observed or not.
            &crate::config::builder::ADMIN_PATHS,
            &setup.info.name,
            setup.sink,
        )?;
        Ok(RateLimitSignal(Some(Arc::new(limiter))))
    }

    #[inline]
    fn arrive<B>(&self, req: &Request<B>, arrival: &mut Arrival<'_>) -> LimitState {
        let limiter = self.0.as_ref()?;
        // A request another signal answered (a CORS preflight) is not limited.
        if arrival.answer.is_some() {
            return None;
        }
        match limiter.admit(req, arrival.route.name(), Some(arrival.started)) {
            Admission::Pass => None,
            Admission::Admitted(headers) => Some(Box::new(Fields::Now(headers))),
            Admission::Shadowed(over) => {
                arrival.over_quota = Some(OverQuotaFinding::Now(over));
                None
            }
            Admission::Refused(res, over) => {
                arrival.answer = Some(Box::new(res));
                arrival.over_quota = Some(OverQuotaFinding::Now(over));
                None
            }
            Admission::Answer(res) => {
                arrival.answer = Some(Box::new(res));
                None
            }
            Admission::Pending(pending) => {
                let later = limiter
                    .headers_on_admitted()
                    .then(|| Arc::new(OnceLock::new()));
                let fill = later.clone();
                let found = Arc::new(OnceLock::new());
                arrival.over_quota = Some(OverQuotaFinding::Later(found.clone()));
                arrival.deferred = Some(Box::pin(async move {
                    match pending.await {
                        Admission::Answer(res) => Some(Box::new(res)),
                        Admission::Refused(res, over) => {
                            let _ = found.set(over);
                            Some(Box::new(res))
                        }
                        Admission::Shadowed(over) => {
                            let _ = found.set(over);
                            None
                        }
                        Admission::Admitted(headers) => {
                            if let Some(cell) = fill {
                                let _ = cell.set(headers);
                            }
                            None
                        }
                        Admission::Pass | Admission::Pending(_) => None,
                    }
                }));
                later.map(|cell| Box::new(Fields::Later(cell)))
            }
        }
    }

    fn enter<'a>(&'a self, _exchange: &'a LimitState) -> Self::Entered<'a> {}

    fn respond(&self, exchange: &mut LimitState, head: &mut Head<'_>) {
        match exchange.as_deref() {
            Some(Fields::Now(headers)) => headers.apply(head.headers),
            Some(Fields::Later(cell)) => {
                if let Some(headers) = cell.get() {
                    headers.apply(head.headers);
                }
            }
            None => {}
        }
    }

    fn end(&self, _exchange: &mut LimitState, _ending: &mut crate::signal::Ending<'_>) {}
}
