//! Backtraces of handler panics.
//!
//! `catch_unwind` hands over only the payload; the stack is gone by then. So a panic hook,
//! installed once when reporting is on and chained to the one before it (whose output is
//! kept), captures the backtrace, but only on threads where a request's hub is bound
//! ([`Armed`]): panics elsewhere in the application cost nothing more. The catch site then
//! [`take`]s it.

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::sync::Once;

use sentry_core::protocol::{Frame, Stacktrace};

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static CAPTURED: RefCell<Option<Backtrace>> = const { RefCell::new(None) };
}

/// Installs the capturing hook in front of the current one, once per process.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ARMED.with(Cell::get) {
                let backtrace = Backtrace::force_capture();
                let _ = CAPTURED.try_with(|c| c.replace(Some(backtrace)));
            }
            previous(info);
        }));
    });
}

/// Backtraces are captured while this guard lives (nested guards restore the outer state).
pub(crate) struct Armed(bool);

impl Armed {
    pub(crate) fn new() -> Self {
        Armed(ARMED.with(|a| a.replace(true)))
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.with(|a| a.set(self.0));
    }
}

/// The backtrace of the last panic caught on this thread while armed.
pub(crate) fn take() -> Option<Backtrace> {
    CAPTURED.try_with(|c| c.take()).ok().flatten()
}

/// A Sentry stack trace from a captured backtrace: oldest call first, the panic machinery
/// cut off, frames outside the runtime and libraries marked as the application's.
pub(crate) fn stacktrace(backtrace: &Backtrace) -> Option<Stacktrace> {
    let text = backtrace.to_string();
    let mut frames: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(location) = line.strip_prefix("at ") {
            if let Some(frame) = frames.last_mut() {
                let mut parts = location.rsplitn(3, ':');
                let (col, lineno, file) = (parts.next(), parts.next(), parts.next());
                if let (Some(file), Some(lineno)) = (file, lineno.and_then(|l| l.parse().ok())) {
                    frame.abs_path = Some(file.to_owned());
                    frame.filename = file.rsplit('/').next().map(str::to_owned);
                    frame.lineno = Some(lineno);
                    frame.colno = col.and_then(|c| c.parse().ok());
                }
            }
        } else if let Some((index, function)) = line.split_once(": ") {
            if index.chars().all(|c| c.is_ascii_digit()) {
                frames.push(Frame {
                    function: Some(function.to_owned()),
                    in_app: Some(is_in_app(function)),
                    ..Frame::default()
                });
            }
        }
    }
    let name = |f: &Frame| f.function.clone().unwrap_or_default();
    // Innermost first: the panic machinery between `panic!` and the hook goes...
    let machinery = frames
        .iter()
        .take_while(|f| PANIC_MACHINERY.iter().any(|p| name(f).starts_with(p)))
        .count();
    frames.drain(..machinery);
    // ...and so does what runs the thread, below std's short-backtrace marker.
    if let Some(marker) = frames
        .iter()
        .position(|f| name(f).contains("__rust_begin_short_backtrace"))
    {
        frames.truncate(marker);
    }
    if frames.is_empty() {
        return None;
    }
    frames.reverse();
    Some(Stacktrace {
        frames,
        ..Stacktrace::default()
    })
}

/// Functions that run between `panic!` and the hook.
const PANIC_MACHINERY: &[&str] = &[
    "std::backtrace",
    "std::sys::backtrace",
    "std::panicking",
    "std::panic::",
    "core::panicking",
    "rust_begin_unwind",
    "__rustc::",
    "<alloc::boxed::Box<",
    "tower_observability::sentry::panic_capture::install_hook",
];

/// Frames of the standard library, the runtime, this crate and the usual server stack are
/// not the application's.
fn is_in_app(function: &str) -> bool {
    const NOT_APP: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "tokio::",
        "hyper::",
        "hyper_util::",
        "tower::",
        "tower_http::",
        "tower_observability::",
        "axum::",
        "tonic::",
        "futures_util::",
        "futures_core::",
        "__rust",
        "<",
    ];
    !NOT_APP.iter().any(|p| function.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_an_armed_section_leaves_its_backtrace() {
        install_hook();
        fn handler_that_panics() {
            panic!("boom");
        }
        let caught = {
            let _armed = Armed::new();
            std::panic::catch_unwind(handler_that_panics)
        };
        assert!(caught.is_err());
        let backtrace = take().expect("armed panics are captured");
        let trace = stacktrace(&backtrace).expect("frames were parsed");
        let names: Vec<_> = trace
            .frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .collect();
        let last = names.last().unwrap();
        assert!(last.contains("handler_that_panics"), "{names:#?}");
        assert!(trace.frames.last().unwrap().lineno.is_some());

        // Unarmed: nothing captured.
        let _ = std::panic::catch_unwind(|| panic!("elsewhere"));
        assert!(take().is_none());
    }
}
