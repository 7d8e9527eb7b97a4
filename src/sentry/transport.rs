//! Getting events to Sentry without ever making a request wait.
//!
//! [`HttpTransport`] puts envelopes in a bounded queue (`try_send`, never blocking) read by
//! one thread of its own, which posts them with hyper, one at a time, each bounded by a
//! timeout. A full queue, a closed port, a hanging endpoint, an error status or a 429 drop the
//! event and count it in `tower_observability_sentry_events_dropped_total`; delivered events
//! are counted in `tower_observability_sentry_events_sent_total`. After a 429 the transport
//! drops everything until `Retry-After` (or Sentry's `X-Sentry-Rate-Limits`) has passed.
//!
//! It speaks plain HTTP: a Sentry Relay beside the service, or a self-hosted Sentry on the
//! network. For `https` DSNs the application plugs a TLS transport of its choice (sentry's
//! own reqwest transport, with the TLS stack the application already uses) through
//! `Sentry::transport`; it is wrapped by [`CountingFactory`] so its
//! hand-offs are still counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use metrics::Counter;
use sentry_core::types::Dsn;
use sentry_core::{Envelope, Transport, TransportFactory, TransportOptions};
use tokio::sync::{mpsc, watch};

use crate::delivery::{self, DropReason, Dropped, Failure, Gate, Outage};

/// How long to stop sending after a 429 that did not say.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The queue's fill level, the gate requests read before building an event, and the
/// counters; shared by the transport and the reporter.
pub(crate) struct Delivery {
    sent: Counter,
    dropped: Arc<Dropped>,
    queued: AtomicUsize,
    capacity: usize,
    gate: Gate,
}

impl Delivery {
    pub(crate) fn new(sent: Counter, dropped: Arc<Dropped>, capacity: usize) -> Self {
        Delivery {
            sent,
            dropped,
            queued: AtomicUsize::new(0),
            capacity,
            gate: Gate::default(),
        }
    }

    /// Whether the transport takes an event now: not while it backs off, is rate limited,
    /// is full or has shut down.
    #[inline]
    pub(crate) fn accepting(&self) -> bool {
        self.gate.is_open() && self.queued.load(Ordering::Relaxed) < self.capacity
    }

    /// Whether to build an event now (checked before building one); when not, the event is
    /// counted as dropped, by reason, and never made.
    pub(crate) fn admit(&self) -> bool {
        if self.accepting() {
            return true;
        }
        self.refuse();
        false
    }

    /// Counts an event the transport could not take, by why (a report begun while it could
    /// not take one counts as `backoff` if it can by now).
    pub(crate) fn refuse(&self) {
        let reason = match self.gate.reason() {
            Some(reason) => reason,
            None if self.queued.load(Ordering::Relaxed) >= self.capacity => DropReason::QueueFull,
            None => DropReason::Backoff,
        };
        self.dropped.add(reason, 1);
    }

    /// Events queued or being sent.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.total()
    }

    pub(crate) fn pending(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn sent(&self) {
        self.sent.increment(1);
    }
}

/// What travels through the queue.
struct Queued {
    envelope: Envelope,
    is_event: bool,
}

/// The built-in transport: a bounded queue and one sender thread.
pub(crate) struct HttpTransport {
    queue: mpsc::Sender<Queued>,
    delivery: Arc<Delivery>,
    /// Set when closing: the sender sends what is queued until then, and stops.
    closing: watch::Sender<Option<Instant>>,
    /// Disconnected when the sender thread has finished.
    finished: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl HttpTransport {
    /// Starts the sender thread for `dsn`.
    pub(crate) fn start(
        dsn: &Dsn,
        delivery: Arc<Delivery>,
        send_timeout: Duration,
    ) -> std::io::Result<Self> {
        let (queue, inbox) = mpsc::channel(delivery.capacity);
        let url: http::Uri = dsn
            .envelope_api_url()
            .as_str()
            .parse()
            .map_err(std::io::Error::other)?;
        let target = Target {
            // The envelope URL carries no key (that goes in `x-sentry-auth`).
            shown: delivery::endpoint_for_log(&url),
            url,
            auth: dsn
                .to_auth(Some(concat!(
                    "tower-observability/",
                    env!("CARGO_PKG_VERSION")
                )))
                .to_string(),
            send_timeout,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (closing, closed) = watch::channel(None);
        let (done, finished) = std::sync::mpsc::channel();
        let worker_delivery = delivery.clone();
        std::thread::Builder::new()
            .name("tower-observability-sentry".into())
            .spawn(move || {
                runtime.block_on(send_all(inbox, target, worker_delivery, closed, done));
                // A name lookup may still run on a blocking thread: do not wait for it.
                runtime.shutdown_background();
            })?;
        Ok(HttpTransport {
            queue,
            delivery,
            closing,
            finished: std::sync::Mutex::new(finished),
        })
    }

    /// Stops taking events; the sender sends what is queued until `deadline`, then stops.
    pub(crate) fn close(&self, deadline: Instant) {
        self.delivery.gate.close(Gate::CLOSED);
        self.closing.send_if_modified(|closing| {
            let earlier = closing.is_none_or(|current| deadline < current);
            if earlier {
                *closing = Some(deadline);
            }
            earlier
        });
    }

    /// Waits until the sender has finished, at most until `deadline`; false if it has not.
    pub(crate) fn wait(&self, deadline: Instant) -> bool {
        let finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        let left = deadline.saturating_duration_since(Instant::now());
        matches!(
            finished.recv_timeout(left),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        )
    }
}

impl Transport for HttpTransport {
    fn send_envelope(&self, envelope: Envelope) {
        let is_event = envelope.event().is_some();
        // Counted before the send so the worker's decrement can never come first.
        self.delivery.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.queue.try_send(Queued { envelope, is_event }) {
            self.delivery.queued.fetch_sub(1, Ordering::Relaxed);
            if is_event {
                let reason = match error {
                    mpsc::error::TrySendError::Full(_) => DropReason::QueueFull,
                    mpsc::error::TrySendError::Closed(_) => DropReason::Shutdown,
                };
                self.delivery.dropped.add(reason, 1);
            }
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.delivery.queued.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.close(deadline);
        self.wait(deadline)
    }
}

/// Where and how envelopes are posted.
struct Target {
    url: http::Uri,
    /// The URL for the log.
    shown: String,
    auth: String,
    send_timeout: Duration,
}

/// The sender thread: posts queued envelopes one at a time, waits after failures (events
/// are then not even built: the gate is closed), and on closing sends what is queued until
/// the deadline. `_done` is dropped when it returns: the transport's `wait` sees it.
async fn send_all(
    mut inbox: mpsc::Receiver<Queued>,
    target: Target,
    delivery: Arc<Delivery>,
    mut closing: watch::Receiver<Option<Instant>>,
    _done: std::sync::mpsc::Sender<()>,
) {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut outage = Outage::new("Sentry", "event", target.shown.clone());
    let mut deadline: Option<Instant> = None;
    // Whether an event was tried since closing began: one try even while backing off.
    let mut tried_at_close = false;
    let (gate, dropped) = (&delivery.gate, &*delivery.dropped);
    loop {
        let reopen = outage.until().filter(|_| deadline.is_none());
        let Queued { envelope, is_event } = tokio::select! {
            item = inbox.recv() => match item {
                Some(item) => item,
                None => return,
            },
            // The wait is over: events are built again.
            _ = sleep_until(reopen), if reopen.is_some() => {
                outage.reopen_if_due(Instant::now(), gate);
                continue;
            }
            changed = closing.changed(), if deadline.is_none() => {
                // Dropped without closing: give what is queued one send timeout.
                let by = match changed {
                    Ok(()) => *closing.borrow(),
                    Err(_) => None,
                };
                deadline = Some(by.unwrap_or_else(|| Instant::now() + target.send_timeout));
                inbox.close();
                continue;
            }
        };
        let now = Instant::now();
        outage.reopen_if_due(now, gate);
        let outcome = match (deadline, outage.waiting(now)) {
            (Some(deadline), _) if now >= deadline => Err(DropReason::Shutdown),
            // At the end a sender backing off tries once more; a pause asked for holds.
            (Some(_), Some(DropReason::Backoff)) if !tried_at_close => Ok(()),
            (_, Some(reason)) => Err(reason),
            (_, None) => Ok(()),
        };
        match outcome {
            Err(reason) if is_event => dropped.add(reason, 1),
            Err(_) => {}
            Ok(()) => {
                tried_at_close = deadline.is_some();
                let timeout = deadline.map_or(target.send_timeout, |deadline| {
                    target
                        .send_timeout
                        .min(deadline.saturating_duration_since(now))
                });
                // A post under way when closing begins is cut at the deadline.
                let cut = closing_deadline(closing.clone());
                let posted = tokio::select! {
                    posted = post(&client, &target, &envelope, timeout) => posted,
                    _ = cut => Err(Failure::new(DropReason::Shutdown, "cut at the shutdown deadline")),
                };
                match posted {
                    Ok(pause) => {
                        if is_event {
                            delivery.sent();
                        }
                        outage.succeeded(gate, dropped);
                        if let Some(pause) = pause {
                            outage.pause(pause, gate);
                        }
                    }
                    Err(failure) => {
                        // Counted first: the warn line of a first failure includes it.
                        if is_event {
                            dropped.add(failure.reason, 1);
                        }
                        if failure.reason != DropReason::Shutdown {
                            outage.failed(&failure, u64::from(is_event), gate, dropped);
                        }
                    }
                }
            }
        }
        delivery.queued.fetch_sub(1, Ordering::Release);
    }
}

/// Resolves when the shutdown deadline passes (never, if closing never begins).
async fn closing_deadline(mut closing: watch::Receiver<Option<Instant>>) {
    loop {
        if let Some(deadline) = *closing.borrow_and_update() {
            return tokio::time::sleep_until(deadline.into()).await;
        }
        if closing.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Posts one envelope within `timeout`: `Ok` with the pause Sentry asks for from now on,
/// if any, or why it was not taken.
async fn post(
    client: &HyperClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    target: &Target,
    envelope: &Envelope,
    timeout: Duration,
) -> Result<Option<Duration>, Failure> {
    let mut body = Vec::new();
    envelope.to_writer(&mut body).map_err(|e| {
        Failure::new(
            DropReason::Rejected,
            format!("cannot write the envelope: {e}"),
        )
    })?;
    let request = http::Request::post(target.url.clone())
        .header("x-sentry-auth", &target.auth)
        .header(http::header::CONTENT_TYPE, "application/x-sentry-envelope")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Failure::new(DropReason::Rejected, e.to_string()))?;
    let exchange =
        async {
            let response = client
                .request(request)
                .await
                .map_err(|e| Failure::new(DropReason::Refused, delivery::error_chain(&e)))?;
            let status = response.status();
            let limits = sentry_rate_limits(response.headers());
            let retry_after = delivery::retry_after(response.headers());
            // Read the answer to its end so the connection can be reused.
            response.into_body().collect().await.map_err(|e| {
                Failure::new(DropReason::Refused, format!("reading the answer: {e}"))
            })?;
            if status.is_success() {
                return Ok(limits);
            }
            let (reason, retry_after) = if status == http::StatusCode::TOO_MANY_REQUESTS {
                let wait = limits.or(retry_after).unwrap_or(DEFAULT_RETRY_AFTER);
                (DropReason::RateLimited, Some(wait))
            } else {
                (DropReason::Rejected, retry_after)
            };
            Err(Failure {
                retry_after,
                ..Failure::new(reason, format!("Sentry answered {status}"))
            })
        };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            DropReason::Timeout,
            format!("no answer within {timeout:?}"),
        )),
    }
}

/// The pause `X-Sentry-Rate-Limits` asks for error events: the longest limit whose
/// categories are empty (all), `error` or `default`. It may come with any status.
fn sentry_rate_limits(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("x-sentry-rate-limits")?.to_str().ok()?;
    value
        .split(',')
        .filter_map(|limit| {
            let mut parts = limit.trim().split(':');
            let seconds = parts.next()?.trim().parse::<f64>().ok()?;
            let categories = parts.next().unwrap_or("");
            let ours = categories.is_empty()
                || categories
                    .split(';')
                    .any(|c| matches!(c.trim(), "error" | "default"));
            (ours && seconds.is_finite() && seconds >= 0.0).then_some(seconds)
        })
        .reduce(f64::max)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

/// Wraps an application's own transport so what it is handed is counted as sent.
pub(crate) struct CountingFactory {
    inner: Arc<dyn TransportFactory>,
    delivery: Arc<Delivery>,
}

impl CountingFactory {
    pub(crate) fn new(inner: Arc<dyn TransportFactory>, delivery: Arc<Delivery>) -> Self {
        CountingFactory { inner, delivery }
    }
}

impl TransportFactory for CountingFactory {
    fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn Transport> {
        Arc::new(Counting {
            inner: self.inner.create_transport_with_options(options),
            delivery: self.delivery.clone(),
        })
    }
}

struct Counting {
    inner: Arc<dyn Transport>,
    delivery: Arc<Delivery>,
}

impl Transport for Counting {
    fn send_envelope(&self, envelope: Envelope) {
        if envelope.event().is_some() {
            self.delivery.sent();
        }
        self.inner.send_envelope(envelope);
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.inner.flush(timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.shutdown(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentry_rate_limits_count_for_error_events_only() {
        let limits = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("x-sentry-rate-limits", v.parse().unwrap());
            sentry_rate_limits(&h)
        };
        assert_eq!(sentry_rate_limits(&http::HeaderMap::new()), None);
        assert_eq!(
            limits("60:error;transaction:org, 2::project"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            limits("30:transaction:key"),
            None,
            "transactions are not ours"
        );
        assert_eq!(
            limits("5::organization"),
            Some(Duration::from_secs(5)),
            "all categories"
        );
        assert_eq!(limits("7:default:key:reason"), Some(Duration::from_secs(7)));
        assert_eq!(limits("soon:error"), None);
    }
}
