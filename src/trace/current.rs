//! The request being served on this thread, set around every poll of the request's
//! future and body, so outbound calls and log lines made while serving it carry its
//! context.

use std::cell::RefCell;

use super::span::RequestContext;
use super::SpanContext;

thread_local! {
    static CURRENT: RefCell<Option<RequestContext>> = const { RefCell::new(None) };
}

/// The context of the request span being polled on this thread, if any.
///
/// Valid inside a handler and its response body. Work moved to another task
/// (`tokio::spawn`) does not inherit it: take it here and pass it along.
pub fn current() -> Option<SpanContext> {
    CURRENT.with(|c| c.borrow().as_ref().map(|r| r.span.clone()))
}

/// The request being served on this thread: its span's context and its request id.
pub fn current_request() -> Option<RequestContext> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Restores the previous context when dropped.
pub(crate) struct CurrentGuard {
    previous: Option<RequestContext>,
}

pub(crate) fn enter(ctx: &RequestContext) -> CurrentGuard {
    let previous = CURRENT.with(|c| c.borrow_mut().replace(ctx.clone()));
    CurrentGuard { previous }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}
