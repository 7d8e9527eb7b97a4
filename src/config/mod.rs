//! Configuration: every setting, from code ([`ObservabilityBuilder`]) or from the
//! environment ([`env`], through the same setters), checked once by `build()`, then handed
//! to each signal as a [`Setup`].

pub(crate) mod builder;
pub(crate) mod env;

use http::HeaderName;

use crate::cors::CompiledCors;
use crate::metrics::{ServiceInfo, Sink};
use crate::security_headers::CompiledHeaders;
pub use builder::ObservabilityBuilder;

/// What a signal is built from: the checked settings, the service's identity, where
/// metrics are registered, and what checking the settings compiled (taken by the signal
/// that uses it).
pub(crate) struct Setup<'a> {
    pub(crate) settings: &'a ObservabilityBuilder,
    pub(crate) info: &'a ServiceInfo,
    pub(crate) sink: &'a Sink,
    pub(crate) headers: Option<CompiledHeaders>,
    pub(crate) cors: Option<CompiledCors>,
    pub(crate) request_id: Option<HeaderName>,
    #[cfg(feature = "sentry")]
    pub(crate) sentry_dsn: Option<sentry_core::types::Dsn>,
}
