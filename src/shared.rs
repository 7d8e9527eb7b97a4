//! What every clone of the layer shares: the pass's own settings (exclusions, routes,
//! panics), the signals, and what the admin endpoints serve.

use crate::exclude::PathFilter;
use crate::metrics::exposition::ScrapeBuffer;
use crate::metrics::{Exposition, ServiceInfo};
use crate::observability::Readiness;
use crate::route::RouteResolver;
use crate::signal::Signals;

pub(crate) struct Shared {
    pub(crate) info: ServiceInfo,
    pub(crate) routes: RouteResolver,
    /// Paths kept out of the request signals (the response policy still applies).
    pub(crate) excluded: PathFilter,
    pub(crate) catch_panics: bool,
    pub(crate) signals: Signals,
    /// What `/metrics` renders.
    pub(crate) exposition: Exposition,
    /// The buffer `/metrics` renders into, reused between scrapes.
    pub(crate) scrape_buffer: ScrapeBuffer,
    pub(crate) readiness: Readiness,
    /// The shutdown timeout and signal watcher.
    pub(crate) shutdown: crate::shutdown::Shutdown,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Before the signals' exporters are dropped: they would stop without waiting.
        crate::shutdown::at_last_handle(self);
    }
}
