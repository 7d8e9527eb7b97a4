//! The crate's warnings are never silent.
//!
//! What the crate warns about is rare and matters: a variable that cannot take effect in
//! this build, an endpoint that went down or came back, a rate limit deciding without Redis,
//! telemetry lost at shutdown. They are `tracing` events (target `tower_observability::*`),
//! so they land in the application's logs. An application that installed no `tracing`
//! subscriber (the README's minimal service) would never see them: then the same line goes
//! to stderr as well.

/// `tracing::warn!` with a target, fields and a message, and the message on stderr when no
/// global `tracing` subscriber is installed.
///
/// `warning!(target: "tower_observability::x", { field = value, }, "message {arg}")`: the
/// fields (each followed by a comma) go to `tracing` only; the message is formatted for
/// both.
macro_rules! warning {
    (target: $target:expr, { $($fields:tt)* }, $($message:tt)+) => {{
        tracing::warn!(target: $target, $($fields)* $($message)+);
        if !tracing::dispatcher::has_been_set() {
            $crate::warning::to_stderr($target, format_args!($($message)+));
        }
    }};
}

/// Writes a warning to stderr, as one line with the level and the target.
pub(crate) fn to_stderr(target: &str, message: std::fmt::Arguments<'_>) {
    eprintln!("WARN {target}: {message}");
}
