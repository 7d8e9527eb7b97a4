//! Graceful shutdown: the signal future a server's graceful-shutdown hook awaits, and the
//! final flush of queued telemetry when the last handle to the layer goes away.
//!
//! The order a deploy needs, with `axum::serve(..).with_graceful_shutdown(obs.shutdown_signal())`:
//! 1. the first SIGTERM or SIGINT flips `/readyz` to 503 (load balancers stop sending) and
//!    resolves the future: the server stops accepting and lets in-flight requests finish;
//! 2. the server returns, `main` ends, and the last handle to the layer is dropped: the spans
//!    and Sentry events still queued are sent, and the drop waits for them at most the
//!    shutdown timeout (default 5 s, `OBSERVABILITY_SHUTDOWN_TIMEOUT`), so `main` does not
//!    return (and the process does not exit) before they left;
//! 3. a second signal does not wait for in-flight requests: it flushes within the same
//!    timeout and exits the process (status 128 + the signal's number), as the default
//!    action of the signal would have, minus the loss.

use std::time::{Duration, Instant};

use crate::shared::Shared;

/// How long the final flush may take by default.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The log target of shutdown lines.
const TARGET: &str = "tower_observability::shutdown";

/// What every handle shares about shutting down.
pub(crate) struct Shutdown {
    /// The longest the final flush may take.
    pub(crate) timeout: Duration,
    #[cfg(feature = "signal")]
    signals: std::sync::Arc<signal::Signals>,
}

impl Shutdown {
    pub(crate) fn new(timeout: Duration) -> Self {
        Shutdown {
            timeout,
            #[cfg(feature = "signal")]
            signals: Default::default(),
        }
    }
}

/// `OBSERVABILITY_SHUTDOWN_TIMEOUT`: seconds (`5`, `2.5`) or with a unit (`500ms`, `5s`),
/// at most ten minutes.
pub(crate) fn parse_timeout(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, per_second) = match raw.strip_suffix("ms") {
        Some(ms) => (ms, 1000.0),
        None => (raw.strip_suffix('s').unwrap_or(raw), 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| n / per_second)
        .filter(|secs| (0.0..=600.0).contains(secs))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            "expected seconds (5, 2.5) or a duration with a unit (500ms, 5s), at most 600 s"
                .to_owned()
        })
}

/// The last handle to the layer is going away: send what is queued, waiting at most the
/// shutdown timeout. Called from `Shared`'s `Drop`, which runs before `main` returns.
pub(crate) fn at_last_handle(shared: &Shared) {
    flush(shared, shared.shutdown.timeout);
}

/// Sends the spans and events still queued and stops the exporters, both at once, waiting
/// at most `timeout`; false if something was not delivered. Says what happened, once.
pub(crate) fn flush(shared: &Shared, timeout: Duration) -> bool {
    let started = Instant::now();
    let deadline = started + timeout;
    let (tracing, errors) = (&shared.signals.tracing, &shared.signals.errors);
    // The last metrics push goes out on its own thread meanwhile.
    let metrics = shared.signals.metrics.close_push();
    let spans = Tally::start(tracing.pending(), tracing.dropped());
    // The transport sends on its own thread while the span exporter drains.
    errors.begin_close(deadline);
    let events = Tally::start(errors.pending(), errors.dropped());
    let spans_done = tracing.shutdown(timeout);
    let spans = spans.end(tracing.pending(), tracing.dropped());
    let events_done = errors.close(deadline);
    let events = events.end(errors.pending(), errors.dropped());
    let metrics_done = metrics.wait(deadline);
    let took = started.elapsed();
    let done = spans_done && events_done && metrics_done;
    if spans.left + events.left > 0 {
        warning!(
            target: TARGET,
            { spans = spans.left, events = events.left, },
            "{} spans and {} Sentry events were still queued when the {timeout:?} shutdown \
             timeout passed: they are lost",
            spans.left,
            events.left
        );
    } else if spans.dropped + events.dropped > 0 {
        warning!(
            target: TARGET,
            { spans = spans.dropped, events = events.dropped, },
            "at shutdown {} spans and {} Sentry events could not be delivered (the failing \
             endpoints are named above)",
            spans.dropped,
            events.dropped
        );
    } else if spans.pending + events.pending > 0 {
        tracing::info!(
            target: TARGET,
            spans = spans.pending,
            events = events.pending,
            "queued telemetry sent in {took:.1?}: {} spans, {} Sentry events",
            spans.pending,
            events.pending
        );
    }
    done
}

/// What one sender had at the start of the flush, and what became of it.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Queued at the start.
    pending: usize,
    /// Dropped during the flush (the endpoint failing).
    dropped: u64,
    /// Still queued at the end.
    left: usize,
}

/// A sender's count at the start of the flush.
struct Start {
    pending: usize,
    dropped_before: u64,
}

impl Tally {
    fn start(pending: usize, dropped: u64) -> Start {
        Start {
            pending,
            dropped_before: dropped,
        }
    }
}

impl Start {
    fn end(self, left: usize, dropped: u64) -> Tally {
        Tally {
            pending: self.pending,
            dropped: dropped.saturating_sub(self.dropped_before),
            left,
        }
    }
}

#[cfg(feature = "signal")]
pub use signal::ShutdownSignal;

#[cfg(feature = "signal")]
mod signal {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex, Weak};
    use std::task::{Context, Poll};

    use tokio::sync::watch;

    use super::{flush, TARGET};
    use crate::shared::Shared;
    use crate::Observability;

    /// The signal watcher of one [`Observability`]: started by the first
    /// `shutdown_signal()`, shared by every future it returns.
    pub(super) struct Signals {
        /// True once the first signal arrived.
        received: watch::Sender<bool>,
        /// Whether the watcher runs (started once, at the first call inside a runtime).
        started: Mutex<bool>,
    }

    impl Default for Signals {
        fn default() -> Self {
            Signals {
                received: watch::Sender::new(false),
                started: Mutex::new(false),
            }
        }
    }

    /// A future that resolves on the first SIGTERM or SIGINT (Ctrl-C; on Windows, Ctrl-C),
    /// made by [`Observability::shutdown_signal`].
    #[must_use = "a future does nothing unless awaited: pass it to the server's graceful shutdown"]
    pub struct ShutdownSignal {
        inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    }

    impl std::fmt::Debug for ShutdownSignal {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ShutdownSignal").finish_non_exhaustive()
        }
    }

    impl Future for ShutdownSignal {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.inner.as_mut().poll(cx)
        }
    }

    impl Observability {
        /// A future that resolves on the first SIGTERM or SIGINT: give it to the server's
        /// graceful shutdown, and a deploy loses no telemetry.
        ///
        /// On the first signal `/readyz` answers 503 (load balancers stop sending) and the
        /// future resolves, so the server stops accepting and lets the requests in flight
        /// finish. When the server has returned and the last handle to the layer is dropped
        /// (at the end of `main`), the spans and Sentry events still queued are sent: the
        /// drop waits for them at most the shutdown timeout
        /// ([`shutdown_timeout`](crate::ObservabilityBuilder::shutdown_timeout), default
        /// 5 s, `OBSERVABILITY_SHUTDOWN_TIMEOUT`), so the process does not exit before they
        /// left. A second signal does not wait for the requests in flight: telemetry is
        /// flushed within the same timeout and the process exits with status 128 + the
        /// signal's number. Each step is logged (target `tower_observability::shutdown`).
        ///
        /// The signals are listened to from the first call (inside a Tokio runtime; else
        /// from the first poll): create the future before a slow start-up to have a signal
        /// during it end the server as soon as it starts. Every call returns a future that
        /// resolves on the same first signal.
        ///
        /// With axum:
        ///
        /// ```no_run
        /// # use tower_observability::Observability;
        /// # #[tokio::main]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let obs = Observability::from_env("checkout")?.build()?;
        /// let app = axum::Router::new().layer(obs.layer());
        /// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
        /// axum::serve(listener, app)
        ///     .with_graceful_shutdown(obs.shutdown_signal())
        ///     .await?;
        /// Ok(()) // `obs` dropped here: what is still queued is sent first
        /// # }
        /// ```
        ///
        /// With tonic: `Server::builder().layer(obs.layer()).add_service(svc)
        /// .serve_with_shutdown(addr, obs.shutdown_signal())`.
        pub fn shutdown_signal(&self) -> ShutdownSignal {
            let signals = self.shared.shutdown.signals.clone();
            let mut received = signals.received.subscribe();
            let shared = std::sync::Arc::downgrade(&self.shared);
            // Listening now, when possible, so a signal before the first poll is not lost.
            let mut pending = match tokio::runtime::Handle::try_current() {
                Ok(_) => {
                    start(&signals, &shared);
                    None
                }
                Err(_) => Some((signals, shared)),
            };
            ShutdownSignal {
                inner: Box::pin(async move {
                    if let Some((signals, shared)) = pending.take() {
                        start(&signals, &shared);
                    }
                    // An error means the watcher is gone (the runtime is shutting down).
                    let _ = received.wait_for(|received| *received).await;
                }),
            }
        }
    }

    /// Starts the watcher, once per [`Observability`].
    fn start(signals: &Arc<Signals>, shared: &Weak<Shared>) {
        let mut started = signals.started.lock().unwrap_or_else(|e| e.into_inner());
        if *started {
            return;
        }
        let listener = match Listener::new() {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(
                    target: TARGET,
                    %error,
                    "cannot listen for SIGTERM and SIGINT: shutdown_signal() will never resolve"
                );
                return;
            }
        };
        *started = true;
        tokio::spawn(watch(listener, signals.clone(), shared.clone()));
    }

    /// Waits for the first signal (readiness off, futures resolved), then for a second
    /// (flush and exit).
    async fn watch(mut listener: Listener, signals: Arc<Signals>, shared: Weak<Shared>) {
        let (name, _) = listener.next().await;
        let timeout = match shared.upgrade() {
            Some(shared) => {
                shared.readiness.set_ready(false);
                shared.shutdown.timeout
            }
            None => return,
        };
        tracing::info!(
            target: TARGET,
            signal = name,
            "{name} received: /readyz answers 503, the requests in flight finish, then \
             queued telemetry is sent (at most {timeout:?}); a second signal exits at once"
        );
        signals.received.send_replace(true);
        let (name, number) = listener.next().await;
        warning!(
            target: TARGET,
            { signal = name, },
            "{name} received again: exiting without waiting for the requests in flight; \
             sending queued telemetry first (at most {timeout:?})"
        );
        if let Some(shared) = shared.upgrade() {
            flush(&shared, timeout);
        }
        std::process::exit(128 + number);
    }

    /// The signals that stop a service.
    struct Listener {
        #[cfg(unix)]
        terminate: tokio::signal::unix::Signal,
        #[cfg(unix)]
        interrupt: tokio::signal::unix::Signal,
    }

    impl Listener {
        fn new() -> std::io::Result<Self> {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                Ok(Listener {
                    terminate: signal(SignalKind::terminate())?,
                    interrupt: signal(SignalKind::interrupt())?,
                })
            }
            #[cfg(not(unix))]
            Ok(Listener {})
        }

        /// The next signal: its name and number.
        async fn next(&mut self) -> (&'static str, i32) {
            #[cfg(unix)]
            {
                tokio::select! {
                    _ = self.terminate.recv() => ("SIGTERM", 15),
                    _ = self.interrupt.recv() => ("SIGINT", 2),
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
                ("Ctrl-C", 2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_timeouts_read_as_seconds_or_with_a_unit() {
        for (raw, expected) in [
            ("5", 5000),
            (" 2.5 ", 2500),
            ("500ms", 500),
            ("3s", 3000),
            ("0", 0),
        ] {
            assert_eq!(
                parse_timeout(raw),
                Ok(Duration::from_millis(expected)),
                "{raw}"
            );
        }
        for bad in ["", "five", "-1", "5m", "1e9", "NaN", "601"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
