//! The body wrappers: the request body counts the bytes the service reads; the response
//! body counts the bytes it sends and ends the [`Exchange`] at the last byte, on error, or
//! when it is dropped early.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::classify::Failure;
use crate::exchange::{End, Exchange};
use crate::panic::{catch, PanicError};
use crate::signal::Failed;

/// The error type of [`ResponseBody`]: the inner body's error, boxed, or [`PanicError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The request body handed to the inner service: the original body, counted.
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        read: Option<Arc<AtomicU64>>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, read: Option<Arc<AtomicU64>>) -> Self {
        RequestBody { inner, read }
    }

    /// The original body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(read), Some(Ok(frame))) = (this.read.as_ref(), frame.as_ref()) {
            if let Some(data) = frame.data_ref() {
                read.fetch_add(data.remaining() as u64, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // A response the layer made itself (after a panic): the bytes still to send.
        Made { data: Option<Bytes> },
    }
}

pin_project! {
    /// The response body: the inner service's body, observed to its end.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
        exchange: Option<Exchange>,
        catch_panics: bool,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B, exchange: Option<Exchange>, catch_panics: bool) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
            exchange,
            catch_panics,
        }
    }

    pub(crate) fn made(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Made {
                data: (!data.is_empty()).then_some(data),
            },
            exchange: None,
            catch_panics: false,
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut body = match this.kind.project() {
            KindProj::Inner { body } => body,
            KindProj::Made { data } => {
                return Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into()))));
            }
        };
        let polled = {
            // The body streams with the request's context current.
            let _entered = this.exchange.as_ref().map(Exchange::enter);
            catch(|| body.as_mut().poll_frame(cx))
        };
        let end = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Some(Ok(frame)))) => {
                if let Some(exchange) = this.exchange.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        exchange.on_data(data.remaining());
                    } else if let Some(trailers) = frame.trailers_ref() {
                        exchange.on_trailers(trailers);
                    }
                    // Servers stop polling once the body says it is over, and after the
                    // trailers, which are its last frame (hyper polls no further): end here.
                    if frame.is_trailers() || body.is_end_stream() {
                        if let Some(exchange) = this.exchange.take() {
                            exchange.finish(End::Complete);
                        }
                    }
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Ok(Poll::Ready(None)) => (End::Complete, Poll::Ready(None)),
            Ok(Poll::Ready(Some(Err(error)))) => {
                let error: BoxError = error.into();
                if let Some(exchange) = this.exchange.as_mut() {
                    exchange.on_failure(&Failed::Body(&*error));
                }
                (
                    End::Failed(Failure::BodyError),
                    Poll::Ready(Some(Err(error))),
                )
            }
            Err(panic) => {
                tracing::error!(panic = panic.message(), "response body panicked");
                if let Some(mut exchange) = this.exchange.take() {
                    exchange.on_failure(&Failed::Panic(&panic));
                    exchange.finish(End::Failed(Failure::Panic));
                }
                let panic = panic.resume_unless(*this.catch_panics);
                return Poll::Ready(Some(Err(Box::new(panic) as BoxError)));
            }
        };
        if let Some(exchange) = this.exchange.take() {
            exchange.finish(end.0);
        }
        end.1
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Made { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Made { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

// The `PanicError` of a body must be inspectable by callers that downcast.
const _: fn() = || {
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<PanicError>();
};
