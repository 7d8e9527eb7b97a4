//! Configuration errors: every mistake is a [`BuildError`] at start-up, never a panic later.

use std::fmt;

/// A configuration mistake found by [`ObservabilityBuilder::build`](crate::ObservabilityBuilder::build)
/// or [`Observability::from_env`](crate::Observability::from_env).
///
/// The message names what was wrong and, for environment variables, which variable.
///
/// ```
/// use tower_observability::Observability;
///
/// let err = Observability::builder("checkout")
///     .duration_buckets([0.5, 0.1])
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("increasing"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// An environment variable holds a value that cannot be used.
    InvalidEnv {
        /// The variable's name.
        var: String,
        /// The value found (cut to 100 characters).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A builder setting cannot be used.
    InvalidSetting {
        /// The setting's name, as the builder method is called.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl BuildError {
    pub(crate) fn env(var: &str, value: &str, reason: impl Into<String>) -> Self {
        let value = value.chars().take(100).collect();
        BuildError::InvalidEnv {
            var: var.to_owned(),
            value,
            reason: reason.into(),
        }
    }

    pub(crate) fn setting(setting: &'static str, reason: impl Into<String>) -> Self {
        BuildError::InvalidSetting {
            setting,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidEnv { var, value, reason } => {
                write!(
                    f,
                    "environment variable {var}={value:?} is invalid: {reason}"
                )
            }
            BuildError::InvalidSetting { setting, reason } => {
                write!(f, "invalid `{setting}` setting: {reason}")
            }
        }
    }
}

impl std::error::Error for BuildError {}
