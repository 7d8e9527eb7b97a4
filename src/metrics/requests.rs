//! The RED metrics of requests, the signal: the in-flight gauge when a request arrives,
//! its duration, sizes and outcome when it ends, and the crate's own request counters.

use http::Request;
use metrics::{Counter, Gauge, Label};

use super::names::*;
use super::series::Sample;
use super::Sink;
use crate::classify::{ErrorType, Failure};
use crate::config::Setup;
use crate::error::BuildError;
use crate::method::MethodLabel;
use crate::signal::{Arrival, Ending, Signal};

/// The handles that do not depend on the route; the route's own are cached on it.
pub(crate) struct RequestMetrics {
    sink: Sink,
    active: [Gauge; MethodLabel::ALL.len()],
    routes_overflowed: Counter,
    panics: Counter,
    _target_info: Gauge,
}

impl RequestMetrics {
    fn active(&self, method: MethodLabel) -> &Gauge {
        &self.active[method.index()]
    }
}

impl Signal for RequestMetrics {
    /// Whether the request is counted (its path is not excluded).
    type Exchange = bool;
    type Entered<'a> = ();

    fn build(setup: &mut Setup<'_>) -> Result<Self, BuildError> {
        let (sink, info) = (setup.sink, setup.info);
        let active = MethodLabel::ALL.map(|m| {
            sink.gauge(
                HTTP_SERVER_ACTIVE_REQUESTS,
                vec![Label::new(LABEL_METHOD, m.as_str())],
            )
        });
        let target_info = sink.gauge(
            TARGET_INFO,
            vec![
                Label::new(LABEL_SERVICE_NAME, info.name.clone()),
                Label::new(LABEL_SERVICE_VERSION, info.version.clone()),
                Label::new(LABEL_DEPLOYMENT_ENVIRONMENT, info.environment.clone()),
            ],
        );
        target_info.set(1.0);
        Ok(RequestMetrics {
            sink: sink.clone(),
            active,
            routes_overflowed: sink.counter_at_zero(ROUTES_OVERFLOWED),
            panics: sink.counter_at_zero(PANICS),
            _target_info: target_info,
        })
    }

    #[inline]
    fn arrive<B>(&self, _req: &Request<B>, arrival: &mut Arrival<'_>) -> bool {
        if arrival.observed {
            if arrival.overflowed {
                self.routes_overflowed.increment(1);
            }
            self.active(arrival.method).increment(1.0);
        }
        arrival.observed
    }

    fn enter<'a>(&'a self, _: &'a bool) {}

    #[inline]
    fn end(&self, observed: &mut bool, ending: &mut Ending<'_>) {
        if !*observed {
            return;
        }
        let sample = Sample {
            nanos: ending.nanos,
            request_bytes: ending.request_bytes,
            response_bytes: ending.response_bytes,
        };
        let route = ending.route;
        let outcome = &ending.outcome;
        (route.series).record(&self.sink, route.name(), ending.method, outcome, &sample);
        self.active(ending.method).decrement(1.0);
        if outcome.error == Some(ErrorType::Failure(Failure::Panic)) {
            self.panics.increment(1);
        }
    }
}
