//! What the builder and the `SENTRY_*` variables configure.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sentry_core::protocol::Event;
use sentry_core::types::Dsn;
use sentry_core::TransportFactory;

use crate::error::BuildError;

/// The user's last look at an event before it is sent: return `None` to drop it.
pub(crate) type BeforeSend = Arc<dyn Fn(Event<'static>) -> Option<Event<'static>> + Send + Sync>;

/// Default bound on events waiting for the transport.
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 64;
/// Default time one send may take, connection included.
pub(crate) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct SentrySettings {
    /// Empty or absent: reporting is off.
    pub(crate) dsn: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) release: Option<String>,
    pub(crate) sample_rate: f32,
    pub(crate) before_send: Option<BeforeSend>,
    pub(crate) send_pii: bool,
    pub(crate) report_client_errors: bool,
    pub(crate) queue_capacity: usize,
    pub(crate) send_timeout: Duration,
    pub(crate) transport: Option<Arc<dyn TransportFactory>>,
}

impl Default for SentrySettings {
    fn default() -> Self {
        SentrySettings {
            dsn: None,
            environment: None,
            release: None,
            sample_rate: 1.0,
            before_send: None,
            send_pii: false,
            report_client_errors: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            transport: None,
        }
    }
}

impl fmt::Debug for SentrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The DSN holds the project's public key: say whether there is one, not what it is.
        f.debug_struct("SentrySettings")
            .field("dsn", &self.dsn.as_ref().map(|_| "<set>"))
            .field("environment", &self.environment)
            .field("release", &self.release)
            .field("sample_rate", &self.sample_rate)
            .field("send_pii", &self.send_pii)
            .field("report_client_errors", &self.report_client_errors)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

impl SentrySettings {
    /// The DSN, checked; `None` when reporting is off.
    pub(crate) fn parsed_dsn(&self) -> Result<Option<Dsn>, BuildError> {
        let Some(raw) = self.dsn.as_deref().map(str::trim).filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(BuildError::setting(
                "sentry_sample_rate",
                format!("{} is outside 0.0..=1.0", self.sample_rate),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(BuildError::setting(
                "sentry_queue_capacity",
                "must be at least 1",
            ));
        }
        parse_dsn(raw)
            .map(Some)
            .map_err(|reason| BuildError::setting("sentry_dsn", reason))
    }
}

/// Parses a DSN; the error says why without repeating the key.
pub(crate) fn parse_dsn(raw: &str) -> Result<Dsn, String> {
    Dsn::from_str(raw.trim())
        .map_err(|e| format!("not a Sentry DSN ({e}); expected https://<key>@<host>/<project>"))
}

/// Parses `SENTRY_SAMPLE_RATE`-style values.
pub(crate) fn parse_sample_rate(raw: &str) -> Result<f32, String> {
    raw.trim()
        .parse::<f32>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| "expected a number from 0.0 to 1.0".to_owned())
}
