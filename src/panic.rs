//! Panics in handlers: caught, logged with the route, answered with a 500 (or gRPC
//! `INTERNAL`), and the service keeps serving.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// A panic caught in a handler or its response body, as the body's error.
#[derive(Debug)]
pub struct PanicError {
    message: String,
}

impl PanicError {
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

/// A panic payload caught by [`catch`].
pub(crate) struct Caught(Box<dyn Any + Send>);

impl Caught {
    pub(crate) fn message(&self) -> &str {
        if let Some(s) = self.0.downcast_ref::<&'static str>() {
            s
        } else if let Some(s) = self.0.downcast_ref::<String>() {
            s
        } else {
            "panic with a non-string payload"
        }
    }

    /// Continues unwinding with the original payload unless `catch`: the layer records a
    /// panic in every case, and leaves it to an outer layer when told not to answer it.
    pub(crate) fn resume_unless(self, catch: bool) -> PanicError {
        if !catch {
            self.resume();
        }
        PanicError {
            message: self.message().to_owned(),
        }
    }

    /// Continues unwinding with the original payload.
    pub(crate) fn resume(self) -> ! {
        std::panic::resume_unwind(self.0)
    }
}

/// Runs `f`, catching a panic.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    // The inner service is not touched again after a panic, except by dropping it.
    catch_unwind(AssertUnwindSafe(f)).map_err(Caught)
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
