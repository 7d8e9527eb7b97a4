//! Delivering telemetry to an endpoint that may be down, refusing, slow or hanging: what the
//! OTLP span exporter and the Sentry transport share.
//!
//! - [`Dropped`]: telemetry that could not be delivered, counted by [`DropReason`] (the
//!   `reason` label of `tower_observability_{spans,sentry_events}_dropped_total`);
//! - [`Gate`]: whether a sender takes more now: one atomic load, read where a request would
//!   capture its span or build its event, so while a sender backs off, is rate limited, is
//!   full or has shut down, a request pays a counter increment and nothing else;
//! - [`Outage`]: the sender's side: exponential backoff with jitter and a cap (`Retry-After`
//!   and the like honoured), the gate closed meanwhile, and one warn line at each change of
//!   state (down, back up) naming the endpoint and the drop count, never one per request.
// Each sender uses its part; a build with one of them leaves the other's unused.
#![cfg_attr(not(all(feature = "otlp", feature = "sentry")), allow(dead_code))]

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Label};

use crate::metrics::names::LABEL_DROP_REASON;
use crate::metrics::Sink;

/// The first wait after a failure; each further failure doubles it, up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries: after an outage, what is lost before the endpoint is
/// tried again is at most this long.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest pause an endpoint may ask for (`Retry-After` and the like).
const MAX_ASKED: Duration = Duration::from_secs(3600);

/// Why telemetry was not delivered: the `reason` label of the drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The sender's queue had no room.
    QueueFull,
    /// The sender was waiting before trying a failing endpoint again.
    Backoff,
    /// The endpoint asked for a pause (HTTP 429, `Retry-After`, `X-Sentry-Rate-Limits`,
    /// gRPC `RESOURCE_EXHAUSTED`).
    RateLimited,
    /// No connection: refused, reset, or a host that does not resolve.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// The endpoint answered with an error.
    Rejected,
    /// Still queued when the shutdown timeout passed, or made after the shutdown.
    Shutdown,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 7] = [
        DropReason::QueueFull,
        DropReason::Backoff,
        DropReason::RateLimited,
        DropReason::Refused,
        DropReason::Timeout,
        DropReason::Rejected,
        DropReason::Shutdown,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Backoff => "backoff",
            DropReason::RateLimited => "rate_limited",
            DropReason::Refused => "refused",
            DropReason::Timeout => "timeout",
            DropReason::Rejected => "rejected",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// A drop counter, one series per reason, registered up front so each reads 0, not absent.
pub(crate) struct Dropped {
    counters: [Counter; DropReason::ALL.len()],
    /// Every drop, for the log lines' counts (a `Counter` cannot be read back).
    total: AtomicU64,
}

impl Dropped {
    pub(crate) fn register(sink: &Sink, name: &'static str) -> Self {
        Dropped {
            counters: DropReason::ALL.map(|reason| {
                let counter =
                    sink.counter(name, vec![Label::new(LABEL_DROP_REASON, reason.as_str())]);
                counter.increment(0);
                counter
            }),
            total: AtomicU64::new(0),
        }
    }

    /// Counts `n` dropped for `reason`.
    #[inline]
    pub(crate) fn add(&self, reason: DropReason, n: u64) {
        self.counters[reason as usize].increment(n);
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Everything dropped so far, whatever the reason.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Whether a sender takes more now. Open is 0: reading it is one relaxed load.
#[derive(Debug, Default)]
pub(crate) struct Gate(AtomicU8);

impl Gate {
    /// The queue is full.
    pub(crate) const FULL: u8 = 1;
    /// The endpoint failed: waiting before the next try.
    pub(crate) const BACKOFF: u8 = 2;
    /// The endpoint asked for a pause.
    pub(crate) const RATE_LIMITED: u8 = 4;
    /// The sender has shut down.
    pub(crate) const CLOSED: u8 = 8;

    /// Whether the sender takes more now.
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }

    pub(crate) fn close(&self, why: u8) {
        self.0.fetch_or(why, Ordering::Relaxed);
    }

    pub(crate) fn open(&self, why: u8) {
        self.0.fetch_and(!why, Ordering::Relaxed);
    }

    /// Whether the sender has shut down.
    #[inline]
    pub(crate) fn is_shut(&self) -> bool {
        self.0.load(Ordering::Relaxed) & Gate::CLOSED != 0
    }

    /// Why the gate is closed (the most lasting cause first); `None` when open.
    pub(crate) fn reason(&self) -> Option<DropReason> {
        let state = self.0.load(Ordering::Relaxed);
        [
            (Gate::CLOSED, DropReason::Shutdown),
            (Gate::RATE_LIMITED, DropReason::RateLimited),
            (Gate::BACKOFF, DropReason::Backoff),
            (Gate::FULL, DropReason::QueueFull),
        ]
        .into_iter()
        .find_map(|(bit, reason)| (state & bit != 0).then_some(reason))
    }
}

/// Why one delivery failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// `Refused`, `Timeout`, `Rejected` or `RateLimited`.
    pub(crate) reason: DropReason,
    /// What went wrong, for the log (never a credential).
    pub(crate) message: String,
    /// The pause the endpoint asked for, if it did.
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn new(reason: DropReason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Since when an endpoint is down, and the drop count then.
#[derive(Debug, Clone, Copy)]
struct Down {
    since: Instant,
    dropped_before: u64,
}

/// A sender's view of its endpoint: healthy, or down and waiting until the next try.
#[derive(Debug)]
pub(crate) struct Outage {
    /// `"span export"`, `"Sentry"`: who speaks in the log.
    sender: &'static str,
    /// `"span"`, `"event"`.
    item: &'static str,
    /// The endpoint, without credentials.
    endpoint: String,
    /// Failures in a row.
    failures: u32,
    down: Option<Down>,
    /// The end of the current wait (backoff or asked pause).
    until: Option<Instant>,
    /// Why the sender waits: `Backoff` or `RateLimited`.
    waiting_for: DropReason,
}

impl Outage {
    pub(crate) fn new(sender: &'static str, item: &'static str, endpoint: String) -> Self {
        Outage {
            sender,
            item,
            endpoint,
            failures: 0,
            down: None,
            until: None,
            waiting_for: DropReason::Backoff,
        }
    }

    /// The end of the current wait, if the sender is waiting.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Why the sender is still waiting at `now` (`Backoff`, `RateLimited`), if it is.
    pub(crate) fn waiting(&self, now: Instant) -> Option<DropReason> {
        self.until
            .filter(|until| now < *until)
            .map(|_| self.waiting_for)
    }

    /// A delivery of `lost` items failed (they are counted by the caller): wait before
    /// the next try, close the gate meanwhile, and say so if the endpoint was up.
    pub(crate) fn failed(&mut self, failure: &Failure, lost: u64, gate: &Gate, dropped: &Dropped) {
        let wait = match failure.retry_after {
            Some(asked) => asked.min(MAX_ASKED),
            None => backoff(self.failures),
        };
        self.failures = self.failures.saturating_add(1);
        self.until = Some(Instant::now() + wait);
        let rate_limited = failure.reason == DropReason::RateLimited;
        self.waiting_for = if rate_limited {
            DropReason::RateLimited
        } else {
            DropReason::Backoff
        };
        gate.close(if rate_limited {
            Gate::RATE_LIMITED
        } else {
            Gate::BACKOFF
        });
        let (sender, item, endpoint) = (self.sender, self.item, &self.endpoint);
        if self.down.is_some() {
            tracing::debug!(
                target: "tower_observability::delivery",
                sender, endpoint = %endpoint, reason = failure.reason.as_str(), error = %failure.message,
                "{sender} to {endpoint} still failing: next try in {wait:?}"
            );
            return;
        }
        self.down = Some(Down {
            since: Instant::now(),
            dropped_before: dropped.total().saturating_sub(lost),
        });
        warning!(
            target: "tower_observability::delivery",
            { sender, endpoint = %endpoint, reason = failure.reason.as_str(), dropped = lost, },
            "{sender} to {endpoint} failed ({}): {} dropped; next try in {wait:.1?}, until \
             then new {item}s are dropped and counted without being made",
            failure.message,
            count(lost, item)
        );
    }

    /// The endpoint asked for a pause while taking what was sent (Sentry's rate limits on
    /// a success): close the gate until then, saying so once.
    pub(crate) fn pause(&mut self, wait: Duration, gate: &Gate) {
        let wait = wait.min(MAX_ASKED);
        let until = Instant::now() + wait;
        if self.until.is_some_and(|current| current >= until) {
            return;
        }
        self.until = Some(until);
        self.waiting_for = DropReason::RateLimited;
        gate.close(Gate::RATE_LIMITED);
        let (sender, item, endpoint) = (self.sender, self.item, &self.endpoint);
        warning!(
            target: "tower_observability::delivery",
            { sender, endpoint = %endpoint, },
            "{endpoint} asks {sender} to pause for {wait:.1?} (rate limited): new {item}s are \
             dropped and counted until then"
        );
    }

    /// The wait is over at `now`: open the gate so the next items are made and tried.
    /// True if it was closed for the wait.
    pub(crate) fn reopen_if_due(&mut self, now: Instant, gate: &Gate) -> bool {
        match self.until {
            Some(until) if now >= until => {
                self.until = None;
                gate.open(Gate::BACKOFF | Gate::RATE_LIMITED);
                true
            }
            _ => false,
        }
    }

    /// A delivery succeeded: if the endpoint was down, say it is back and what was lost.
    pub(crate) fn succeeded(&mut self, gate: &Gate, dropped: &Dropped) {
        self.failures = 0;
        let Some(down) = self.down.take() else {
            return;
        };
        self.until = None;
        gate.open(Gate::BACKOFF | Gate::RATE_LIMITED);
        let lost = dropped.total().saturating_sub(down.dropped_before);
        let (sender, item, endpoint) = (self.sender, self.item, &self.endpoint);
        warning!(
            target: "tower_observability::delivery",
            { sender, endpoint = %endpoint, dropped = lost, },
            "{sender} to {endpoint} works again after {:.1?} down: {} dropped meanwhile",
            down.since.elapsed(),
            count(lost, item)
        );
    }
}

/// `1 span`, `3 spans`.
fn count(n: u64, item: &str) -> String {
    format!("{n} {item}{}", if n == 1 { "" } else { "s" })
}

/// The wait after `failures` failures in a row: [`FIRST_BACKOFF`] doubled each time up to
/// [`MAX_BACKOFF`], then a random share of its second half ("equal jitter"), so senders
/// that failed together do not all come back at once.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << failures.min(16))
        .min(MAX_BACKOFF);
    let half = base / 2;
    half + half.mul_f64(fastrand::f64())
}

/// The pause a `Retry-After` header asks for: seconds, or an HTTP date.
#[cfg(any(feature = "otlp", feature = "sentry"))]
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(MAX_ASKED.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A URL for the log: scheme, host, port and path, never the user information.
pub(crate) fn endpoint_for_log(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{}", uri.path())
}

/// An error and its sources, one line (`connection refused` is at the bottom of the chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Starts the sender thread `name` with a current-thread runtime of its own: `make` builds
/// the sender inside it (HTTP clients need one), then `run` runs it. Returns once `make`
/// has answered, with its error if it failed, so `build()` says why a sender cannot start.
#[cfg(feature = "otlp")]
pub(crate) fn start_sender<T, M, R>(
    name: &str,
    make: M,
    run: R,
) -> Result<std::thread::Thread, String>
where
    M: FnOnce() -> Result<T, String> + Send + 'static,
    R: FnOnce(tokio::runtime::Runtime, T) + Send + 'static,
{
    let (ready, started) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            let made = {
                let _guard = runtime.enter();
                make()
            };
            match made {
                Ok(sender) => {
                    let _ = ready.send(Ok(()));
                    run(runtime, sender);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        })
        .map_err(|e| format!("cannot start: {e}"))?;
    match started.recv() {
        Ok(Ok(())) => Ok(thread.thread().clone()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("the thread {name} ended before it started")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_are_the_documented_label_values() {
        let names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, crate::metrics::names::DROP_REASONS);
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(
                *reason as usize, i,
                "counters are indexed by the discriminant"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        for failures in 0..40 {
            let base = (FIRST_BACKOFF * 2u32.pow(failures.min(10))).min(MAX_BACKOFF);
            for _ in 0..50 {
                let wait = backoff(failures);
                assert!(wait >= base / 2 && wait <= base, "{failures}: {wait:?}");
            }
        }
        // Jitter: waits after the same failure differ.
        let waits: std::collections::HashSet<_> = (0..20).map(|_| backoff(3)).collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn the_gate_opens_only_when_every_cause_is_gone() {
        let gate = Gate::default();
        assert!(gate.is_open() && gate.reason().is_none());
        gate.close(Gate::FULL);
        gate.close(Gate::BACKOFF);
        assert_eq!(gate.reason(), Some(DropReason::Backoff));
        gate.open(Gate::BACKOFF);
        assert_eq!(gate.reason(), Some(DropReason::QueueFull));
        gate.open(Gate::FULL);
        assert!(gate.is_open());
        gate.close(Gate::CLOSED);
        assert_eq!(gate.reason(), Some(DropReason::Shutdown));
    }

    #[test]
    fn an_outage_waits_longer_each_failure_and_honours_an_asked_pause() {
        let gate = Gate::default();
        let (sink, _) = crate::metrics::open_backend(
            &crate::MetricsBackend::IsolatedPrometheus,
            &[1.0],
            &[1.0],
            None,
        );
        let dropped = Dropped::register(&sink, "test_dropped_total");
        let mut outage = Outage::new("test", "item", "http://collector:4318/v1/traces".into());
        let refused = Failure::new(DropReason::Refused, "connection refused");
        dropped.add(DropReason::Refused, 3);
        outage.failed(&refused, 3, &gate, &dropped);
        assert_eq!(gate.reason(), Some(DropReason::Backoff));
        let first = outage.until().unwrap() - Instant::now();
        assert!(first <= FIRST_BACKOFF, "{first:?}");
        assert!(!outage.reopen_if_due(Instant::now(), &gate));
        assert!(outage.reopen_if_due(Instant::now() + FIRST_BACKOFF, &gate));
        assert!(gate.is_open());
        outage.failed(&refused, 1, &gate, &dropped);
        outage.failed(&refused, 1, &gate, &dropped);
        let third = outage.until().unwrap() - Instant::now();
        assert!(
            third > FIRST_BACKOFF,
            "the third wait doubled twice: {third:?}"
        );
        let asked = Failure {
            retry_after: Some(Duration::from_secs(120)),
            ..Failure::new(DropReason::RateLimited, "429")
        };
        outage.failed(&asked, 1, &gate, &dropped);
        let wait = outage.until().unwrap() - Instant::now();
        assert!(wait > Duration::from_secs(119), "{wait:?}");
        assert_eq!(gate.reason(), Some(DropReason::RateLimited));
        outage.succeeded(&gate, &dropped);
        assert!(gate.is_open() && outage.until().is_none());
    }

    #[cfg(any(feature = "otlp", feature = "sentry"))]
    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        let later = std::time::SystemTime::now() + Duration::from_secs(90);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date past");
    }

    #[test]
    fn endpoints_are_logged_without_credentials() {
        let uri: http::Uri = "http://user:s3cret@collector:4318/v1/traces"
            .parse()
            .unwrap();
        assert_eq!(endpoint_for_log(&uri), "http://collector:4318/v1/traces");
    }
}
