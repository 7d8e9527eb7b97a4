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
use crate::signal::{Deferred, Failed};

pin_project! {
    #[project = StateProj]
    enum State<F, S, R> {
        // A signal's deferred decision (a rate limit shared through Redis) runs; the ready
        // inner service and the request wait for it.
        Deferred { #[pin] decision: Deferred, call: Option<(S, R)> },
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
    /// only while a deferred decision (a rate limit shared through Redis) runs.
    pub struct ResponseFuture<F, S, R> {
        #[pin]
        state: State<F, S, R>,
        // Taken when the response leaves: by the body, or ended here.
        exchange: Option<Exchange>,
        catch_panics: bool,
    }
}

impl<F, S, R> ResponseFuture<F, S, R> {
    pub(crate) fn deferred(
        decision: Deferred,
        service: S,
        request: R,
        exchange: Exchange,
        catch_panics: bool,
    ) -> Self {
        let state = State::Deferred {
            decision,
            call: Some((service, request)),
        };
        Self::new(state, exchange, catch_panics)
    }

    pub(crate) fn called(future: F, exchange: Exchange, catch_panics: bool) -> Self {
        Self::new(State::Called { future }, exchange, catch_panics)
    }

    pub(crate) fn panicked(error: Caught, exchange: Exchange, catch_panics: bool) -> Self {
        let state = State::Panicked { error: Some(error) };
        Self::new(state, exchange, catch_panics)
    }

    pub(crate) fn answered(response: Response<Bytes>, exchange: Exchange) -> Self {
        let state = State::Answered {
            response: Some(response),
        };
        Self::new(state, exchange, true)
    }

    fn new(state: State<F, S, R>, exchange: Exchange, catch_panics: bool) -> Self {
        ResponseFuture {
            state,
            exchange: Some(exchange),
            catch_panics,
        }
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
        if let StateProj::Deferred { decision, call } = this.state.as_mut().project() {
            let next = match std::task::ready!(decision.poll(cx)) {
                // The signal's answer leaves like any other (below).
                Some(response) => State::Answered {
                    response: Some(response),
                },
                None => {
                    let Some((mut service, req)) = call.take() else {
                        unreachable!("a deferred decision resolves once")
                    };
                    let called = {
                        let _entered = this.exchange.as_ref().map(Exchange::enter);
                        catch(|| service.call(req))
                    };
                    match called {
                        Ok(future) => State::Called { future },
                        Err(error) => State::Panicked { error: Some(error) },
                    }
                }
            };
            this.state.set(next);
        }
        if let StateProj::Answered { response } = this.state.as_mut().project() {
            if let Some(mut res) = response.take() {
                // Bodiless or made here: the exchange is over as soon as the head leaves.
                if let Some(mut exchange) = this.exchange.take() {
                    exchange.on_made_response(&mut res);
                    exchange.finish(End::Complete);
                }
                return Poll::Ready(Ok(res.map(ResponseBody::made)));
            }
        }
        let polled = {
            // The handler runs inside the request's context.
            let _entered = this.exchange.as_ref().map(Exchange::enter);
            match this.state.project() {
                StateProj::Called { future } => catch(|| future.poll(cx)),
                StateProj::Panicked { error } => match error.take() {
                    Some(caught) => Err(caught),
                    None => catch(|| panic!("ResponseFuture polled after completion")),
                },
                StateProj::Answered { .. } | StateProj::Deferred { .. } => {
                    catch(|| panic!("ResponseFuture polled after completion"))
                }
            }
        };
        let mut exchange = this.exchange.take();
        match polled {
            Ok(Poll::Pending) => {
                *this.exchange = exchange;
                Poll::Pending
            }
            Ok(Poll::Ready(Ok(mut res))) => {
                let over = exchange.as_mut().is_some_and(|e| e.on_response(&mut res));
                if over {
                    // Servers never poll a body that is over, or has none by HTTP's rules.
                    if let Some(exchange) = exchange.take() {
                        exchange.finish(End::Complete);
                    }
                }
                let catch_panics = *this.catch_panics;
                Poll::Ready(Ok(
                    res.map(|body| ResponseBody::inner(body, exchange, catch_panics))
                ))
            }
            Ok(Poll::Ready(Err(error))) => {
                if let Some(mut exchange) = exchange {
                    exchange.on_failure(&Failed::Service {
                        type_name: std::any::type_name::<E>(),
                        error: &error,
                    });
                    exchange.finish(End::Failed(Failure::ServiceError));
                }
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
                    exchange.on_failure(&Failed::Panic(&panic));
                }
                if !*this.catch_panics {
                    // Recorded, then left to an outer layer to answer.
                    if let Some(exchange) = exchange {
                        exchange.finish(End::Failed(Failure::Panic));
                    }
                    panic.resume();
                }
                // The 500 leaves like any response: headers, CORS grant and request id.
                let mut res = panic_response(grpc);
                if let Some(mut exchange) = exchange {
                    exchange.on_made_response(&mut res);
                    exchange.finish(End::Failed(Failure::Panic));
                }
                Poll::Ready(Ok(res.map(ResponseBody::made)))
            }
        }
    }
}
