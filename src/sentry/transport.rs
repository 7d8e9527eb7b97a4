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
//! `ObservabilityBuilder::sentry_transport`; it is wrapped by [`CountingFactory`] so its
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
use tokio::sync::mpsc;

/// How long to stop sending after a 429 that did not say.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The queue's fill level and the two counters, shared by the transport and the reporter.
pub(crate) struct Delivery {
    sent: Counter,
    dropped: Counter,
    queued: AtomicUsize,
    capacity: usize,
}

impl Delivery {
    pub(crate) fn new(sent: Counter, dropped: Counter, capacity: usize) -> Self {
        Delivery {
            sent,
            dropped,
            queued: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Whether the queue can take another event (checked before building one).
    pub(crate) fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < self.capacity
    }

    pub(crate) fn dropped(&self) {
        self.dropped.increment(1);
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
}

impl HttpTransport {
    /// Starts the sender thread for `dsn`.
    pub(crate) fn start(
        dsn: &Dsn,
        delivery: Arc<Delivery>,
        send_timeout: Duration,
    ) -> std::io::Result<Self> {
        let (queue, inbox) = mpsc::channel(delivery.capacity);
        let target = Target {
            url: dsn
                .envelope_api_url()
                .as_str()
                .parse()
                .map_err(std::io::Error::other)?,
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
        let worker_delivery = delivery.clone();
        std::thread::Builder::new()
            .name("tower-observability-sentry".into())
            .spawn(move || runtime.block_on(send_all(inbox, target, worker_delivery)))?;
        Ok(HttpTransport { queue, delivery })
    }
}

impl Transport for HttpTransport {
    fn send_envelope(&self, envelope: Envelope) {
        let is_event = envelope.event().is_some();
        // Counted before the send so the worker's decrement can never come first.
        self.delivery.queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.try_send(Queued { envelope, is_event }).is_err() {
            self.delivery.queued.fetch_sub(1, Ordering::Relaxed);
            if is_event {
                self.delivery.dropped();
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
}

/// Where and how envelopes are posted.
struct Target {
    url: http::Uri,
    auth: String,
    send_timeout: Duration,
}

/// The sender thread: posts queued envelopes one at a time until the transport is dropped.
async fn send_all(mut inbox: mpsc::Receiver<Queued>, target: Target, delivery: Arc<Delivery>) {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut paused_until: Option<Instant> = None;
    while let Some(Queued { envelope, is_event }) = inbox.recv().await {
        let delivered = match paused_until {
            Some(until) if Instant::now() < until => false,
            _ => match post(&client, &target, &envelope).await {
                Posted::Accepted => true,
                Posted::RateLimited(wait) => {
                    paused_until = Some(Instant::now() + wait);
                    false
                }
                Posted::Failed => false,
            },
        };
        if is_event {
            if delivered {
                delivery.sent();
            } else {
                delivery.dropped();
            }
        }
        delivery.queued.fetch_sub(1, Ordering::Release);
    }
}

enum Posted {
    Accepted,
    RateLimited(Duration),
    Failed,
}

async fn post(
    client: &HyperClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    target: &Target,
    envelope: &Envelope,
) -> Posted {
    let mut body = Vec::new();
    if envelope.to_writer(&mut body).is_err() {
        return Posted::Failed;
    }
    let request = http::Request::post(target.url.clone())
        .header("x-sentry-auth", &target.auth)
        .header(http::header::CONTENT_TYPE, "application/x-sentry-envelope")
        .body(Full::new(Bytes::from(body)));
    let Ok(request) = request else {
        return Posted::Failed;
    };
    let exchange = async {
        let response = client.request(request).await.ok()?;
        let status = response.status();
        let wait = retry_after(response.headers());
        // Read the answer to its end so the connection can be reused.
        response.into_body().collect().await.ok()?;
        Some((status, wait))
    };
    match tokio::time::timeout(target.send_timeout, exchange).await {
        Ok(Some((status, _))) if status.is_success() => Posted::Accepted,
        Ok(Some((status, wait))) if status == http::StatusCode::TOO_MANY_REQUESTS => {
            Posted::RateLimited(wait.unwrap_or(DEFAULT_RETRY_AFTER))
        }
        _ => Posted::Failed,
    }
}

/// The pause a 429 asks for: the longest of `X-Sentry-Rate-Limits`, else `Retry-After`.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let seconds = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    let limits = headers
        .get("x-sentry-rate-limits")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|limit| seconds(limit.split(':').next()?))
                .reduce(f64::max)
        });
    let retry = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(seconds);
    limits
        .or(retry)
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
    fn rate_limit_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "x-sentry-rate-limits",
            "60:error;transaction:org, 2::project".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
    }
}
