//! The response future: polls the inner service, catches its panics, and hands the
//! [`Exchange`] to the response body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::classify::Failure;
use crate::exchange::{End, Exchange};
use crate::panic::{catch, panic_response, Caught};
use crate::rate_limit::{Admission, LimitHeaders, Pending};
use crate::response_policy::PolicyFor;

pin_project! {
    #[project = StateProj]
    enum State<F, S, R> {
        // An asynchronous admission (a rate limit decided by Redis) runs; the inner service
        // (the ready one, a clone took its place) and the request wait for it.
        Admitting { #[pin] pending: Pending, call: Option<(S, R)> },
        Called { #[pin] future: F },
        // `call` itself panicked: answer with a 500 on first poll.
        Panicked { error: Option<Caught> },
        // The layer answered itself (a CORS preflight): the response, until polled.
        Answered { response: Option<Response<Bytes>> },
    }
}

pin_project! {
    /// Response future of [`ObservabilityService`](crate::ObservabilityService): `F` is the
    /// inner service's future; `S` and `R` are the inner service and its request, held
    /// only while an asynchronous admission (a rate limit shared through Redis) decides.
    pub struct ResponseFuture<F, S, R> {
        #[pin]
        state: State<F, S, R>,
        exchange: Option<Exchange>,
        catch_panics: bool,
        // Security headers and CORS for whichever response leaves.
        policy: Option<PolicyFor>,
        // The rate limit's fields for an admitted request's response, when asked for.
        limit: Option<Box<LimitHeaders>>,
    }
}

impl<F, S, R> ResponseFuture<F, S, R> {
    pub(crate) fn admitting(
        pending: Pending,
        service: S,
        request: R,
        exchange: Option<Exchange>,
        catch_panics: bool,
    ) -> Self {
        ResponseFuture {
            state: State::Admitting {
                pending,
                call: Some((service, request)),
            },
            exchange,
            catch_panics,
            policy: None,
            limit: None,
        }
    }

    pub(crate) fn called(future: F, exchange: Option<Exchange>, catch_panics: bool) -> Self {
        ResponseFuture {
            state: State::Called { future },
            exchange,
            catch_panics,
            policy: None,
            limit: None,
        }
    }

    pub(crate) fn panicked(error: Caught, exchange: Option<Exchange>, catch_panics: bool) -> Self {
        ResponseFuture {
            state: State::Panicked { error: Some(error) },
            exchange,
            catch_panics,
            policy: None,
            limit: None,
        }
    }

    pub(crate) fn answered(response: Response<Bytes>, exchange: Option<Exchange>) -> Self {
        ResponseFuture {
            state: State::Answered {
                response: Some(response),
            },
            exchange,
            catch_panics: true,
            policy: None,
            limit: None,
        }
    }

    pub(crate) fn with_policy(mut self, policy: Option<PolicyFor>) -> Self {
        self.policy = policy;
        self
    }

    pub(crate) fn with_limit(mut self, limit: Option<Box<LimitHeaders>>) -> Self {
        self.limit = limit;
        self
    }
}

impl<F, S, R> std::fmt::Debug for ResponseFuture<F, S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, S, R, B, E> Future for ResponseFuture<F, S, R>
where
    S: Service<R, Future = F>,
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    // Error reports carry the message, as tower-http's `TraceLayer` does.
    E: std::fmt::Display,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Admitting { pending, call } = this.state.as_mut().project() {
            match std::task::ready!(pending.poll(cx)) {
                Admission::Answer(mut res) => {
                    if let Some(policy) = this.policy.as_ref() {
                        policy.apply(res.headers_mut());
                    }
                    this.state.set(State::Answered {
                        response: Some(res),
                    });
                }
                admitted @ (Admission::Pass | Admission::Admitted(_) | Admission::Pending(_)) => {
                    if let Admission::Admitted(headers) = admitted {
                        *this.limit = Some(Box::new(headers));
                    }
                    let Some((mut service, req)) = call.take() else {
                        unreachable!("an admission resolves once")
                    };
                    let called = {
                        let _entered = this.exchange.as_ref().map(Exchange::enter);
                        catch(|| service.call(req))
                    };
                    this.state.set(match called {
                        Ok(future) => State::Called { future },
                        Err(error) => State::Panicked { error: Some(error) },
                    });
                }
            }
        }
        if let StateProj::Answered { response } = this.state.as_mut().project() {
            if let Some(mut res) = response.take() {
                // Bodiless: the exchange is over as soon as the head leaves.
                if let Some(mut exchange) = this.exchange.take() {
                    exchange.on_response(&mut res);
                    exchange.finish(End::Complete);
                }
                return Poll::Ready(Ok(res.map(ResponseBody::made)));
            }
        }
        let polled = {
            // The handler runs inside the request's span.
            let _entered = this.exchange.as_ref().map(Exchange::enter);
            match this.state.project() {
                StateProj::Called { future } => catch(|| future.poll(cx)),
                StateProj::Panicked { error } => match error.take() {
                    Some(caught) => Err(caught),
                    None => catch(|| panic!("ResponseFuture polled after completion")),
                },
                StateProj::Answered { .. } | StateProj::Admitting { .. } => {
                    catch(|| panic!("ResponseFuture polled after completion"))
                }
            }
        };
        let mut exchange = this.exchange.take();
        let finish = |exchange: Option<Exchange>, end| {
            if let Some(exchange) = exchange {
                exchange.finish(end);
            }
        };
        match polled {
            Ok(Poll::Pending) => {
                *this.exchange = exchange;
                Poll::Pending
            }
            Ok(Poll::Ready(Ok(mut res))) => {
                if let Some(policy) = this.policy.as_ref() {
                    policy.apply(res.headers_mut());
                }
                if let Some(limit) = this.limit.take() {
                    limit.apply(res.headers_mut());
                }
                if let Some(exchange) = exchange.as_mut() {
                    exchange.on_response(&mut res);
                }
                // A body that is already over may never be polled: the exchange ends here.
                if res.body().is_end_stream() {
                    finish(exchange.take(), End::Complete);
                }
                let catch_panics = *this.catch_panics;
                Poll::Ready(Ok(
                    res.map(|body| ResponseBody::inner(body, exchange, catch_panics))
                ))
            }
            Ok(Poll::Ready(Err(error))) => {
                if let Some(exchange) = exchange.as_mut() {
                    exchange.on_service_error(&error);
                }
                finish(exchange, End::Failed(Failure::ServiceError));
                Poll::Ready(Err(error))
            }
            Err(panic) => {
                let grpc = exchange.as_ref().is_some_and(Exchange::is_grpc);
                tracing::error!(
                    route = exchange.as_ref().map_or("-", Exchange::route_name),
                    panic = panic.message(),
                    "request handler panicked"
                );
                if let Some(exchange) = exchange.as_mut() {
                    exchange.on_panic(&panic);
                }
                finish(exchange, End::Failed(Failure::Panic));
                // Recorded either way; answered here only when the layer owns panics.
                panic.resume_unless(*this.catch_panics);
                let mut res = panic_response(grpc);
                if let Some(policy) = this.policy.as_ref() {
                    policy.apply(res.headers_mut());
                }
                Poll::Ready(Ok(res.map(ResponseBody::made)))
            }
        }
    }
}
