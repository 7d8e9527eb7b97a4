//! The span being served on this thread, set around every poll of the request's future
//! and body, so outbound calls made while serving it carry its context.

use std::cell::RefCell;

use super::SpanContext;

thread_local! {
    static CURRENT: RefCell<Option<SpanContext>> = const { RefCell::new(None) };
}

/// The context of the request span being polled on this thread, if any.
///
/// Valid inside a handler and its response body. Work moved to another task
/// (`tokio::spawn`) does not inherit it: take it here and pass it along, or read the
/// [`RequestContext`](super::span::RequestContext) request extension.
pub fn current() -> Option<SpanContext> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Restores the previous context when dropped.
pub(crate) struct Entered {
    previous: Option<SpanContext>,
}

pub(crate) fn enter(ctx: &SpanContext) -> Entered {
    let previous = CURRENT.with(|c| c.borrow_mut().replace(ctx.clone()));
    Entered { previous }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}
