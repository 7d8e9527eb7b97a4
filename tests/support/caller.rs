//! A caller that sends its trace context: the ids of the W3C Trace Context specification's
//! example, so a test tells the caller's trace from one the layer started.

/// The caller's trace id.
pub const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The caller's span id: the parent of the server span that continues its trace.
pub const CALLER: &str = "00f067aa0ba902b7";

/// The caller's `traceparent`, sampled (`TRACE`, `CALLER`, flags `01`).
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
