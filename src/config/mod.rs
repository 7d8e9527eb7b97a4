//! Configuration: every setting, from code ([`ObservabilityBuilder`]) or from the
//! environment ([`env`], through the same setters), checked once by `build()`, then handed
//! to each signal as a [`Setup`].

pub(crate) mod builder;
pub(crate) mod env;

use http::HeaderName;

use crate::cors::CompiledCors;
use crate::error::BuildError;
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
    /// The one trusted-proxies setting: the client address, `X-Forwarded-Proto`.
    pub(crate) trusted: crate::client_address::TrustedProxies,
    #[cfg(feature = "sentry")]
    pub(crate) sentry_dsn: Option<sentry_core::types::Dsn>,
}

/// Where the environment set settings: an error about one names its variable, and a
/// variable for a cargo feature this build does not have is said once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins {
    set: Vec<Origin>,
    /// `(variable, feature)`: set, but for a feature not compiled in.
    inert: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, Clone)]
struct Origin {
    setting: &'static str,
    var: &'static str,
    /// `None` when the value is a secret (a DSN's key).
    value: Option<String>,
}

impl Origins {
    /// `setting` (as its builder method, or error, names it) was read from `var`.
    pub(crate) fn note(&mut self, setting: &'static str, var: &'static str, value: &str) {
        let value = Some(value.to_owned());
        self.set.push(Origin {
            setting,
            var,
            value,
        });
    }

    /// As [`note`](Self::note), for a value never to be repeated in an error.
    #[cfg_attr(not(feature = "sentry"), allow(dead_code))]
    pub(crate) fn note_secret(&mut self, setting: &'static str, var: &'static str) {
        let value = None;
        self.set.push(Origin {
            setting,
            var,
            value,
        });
    }

    /// `var` is set, but its `feature` is not compiled in.
    pub(crate) fn inert(&mut self, var: &'static str, feature: &'static str) {
        self.inert.push((var, feature));
    }

    /// `error`, naming the variable when the environment set the setting it is about.
    pub(crate) fn name(&self, error: BuildError) -> BuildError {
        let BuildError::InvalidSetting { setting, reason } = &error else {
            return error;
        };
        match self.set.iter().rev().find(|o| o.setting == *setting) {
            Some(origin) => {
                let value = origin.value.as_deref().unwrap_or("<hidden>");
                BuildError::env(origin.var, value, reason.clone())
            }
            None => error,
        }
    }

    /// Says once, at `build()`, which variables cannot take effect in this build; with
    /// `strict`, the first is an error.
    pub(crate) fn warn_inert(&self, strict: bool) -> Result<(), BuildError> {
        for &(var, feature) in &self.inert {
            let reason = format!(
                "tower-observability was built without its `{feature}` cargo feature, so \
                 {var} has no effect: enable the feature, or unset the variable"
            );
            if strict {
                return Err(BuildError::env(var, "<set>", reason));
            }
            warning!(
                target: "tower_observability::config",
                { variable = var, feature, },
                "{reason}"
            );
        }
        Ok(())
    }
}
