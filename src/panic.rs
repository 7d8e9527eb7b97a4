//! Panics in handlers: caught, logged with the route, answered with a 500 (or gRPC
//! `INTERNAL`), and the service keeps serving.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// A panic caught in a handler or its response body.
#[derive(Debug)]
pub struct PanicError {
    message: String,
}

impl PanicError {
    pub(crate) fn new(payload: Box<dyn Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_owned()
        };
        PanicError { message }
    }

    /// The panic's message, when it had one.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler panicked: {}", self.message)
    }
}

impl std::error::Error for PanicError {}

/// Runs `f`, turning a panic into a [`PanicError`].
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, PanicError> {
    // The inner service is not touched again after a panic, except by dropping it.
    catch_unwind(AssertUnwindSafe(f)).map_err(PanicError::new)
}

/// The response sent in place of one a panicking handler never produced.
pub(crate) fn panic_response(grpc: bool) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    if !grpc {
        *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        *res.body_mut() = Bytes::from_static(b"Internal Server Error");
    }
    let headers = res.headers_mut();
    if grpc {
        // A trailers-only gRPC response: status INTERNAL.
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("13"));
        headers.insert("grpc-message", HeaderValue::from_static("internal%20error"));
    } else {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    res
}
