//! The bounded queue between requests and the exporter thread (feature `otlp`).
//!
//! A request only moves its captured span into the queue (an uncontended lock and a push,
//! never blocking on the exporter); names, attributes and the encoding are made on the
//! exporter thread. The push that fills a batch wakes that thread (one wake per batch, not
//! per span), so bursts are exported as they come rather than on the next timer; otherwise
//! a partial batch leaves after `scheduled_delay`.
//!
//! A collector that is down, refuses, hangs or rate-limits costs requests nothing: a failed
//! export drops its batch (counted by reason) and the exporter waits before the next try
//! ([`Outage`]: exponential backoff with jitter, `Retry-After` honoured). Meanwhile, and
//! while the queue is full, the [`Gate`] is closed: requests see it with one atomic load
//! ([`SpanSink::admit`]) and neither capture nor queue their span, they count it. When the
//! wait is over the gate opens and the next spans are tried soon after ([`PROBE_DELAY`]),
//! so a collector that is back receives again within one backoff period. Memory stays at
//! the queue's size.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Counter;

use super::export::{FinishedSpan, SpanSink};
use super::otlp::BatchSettings;
use crate::delivery::{self, DropReason, Dropped, Failure, Gate, Outage};
use crate::error::BuildError;

/// How soon after a backoff ends the first spans captured again are sent: the try that
/// tells whether the collector is back.
const PROBE_DELAY: Duration = Duration::from_millis(250);

/// What a starting sink needs from the layer.
pub(crate) struct ExportSetup {
    /// The service's resource attributes (`service.name`, ...), in order; later keys win.
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) batch: BatchSettings,
    pub(crate) exported: Counter,
    pub(crate) dropped: Arc<Dropped>,
}

/// Where the exporter thread sends batches: the crate's own OTLP encoder and collector
/// client, or an OpenTelemetry SDK exporter.
pub(crate) trait Backend {
    /// Exports one batch within `timeout`; the failure says why it was not taken.
    fn export(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        spans: &mut dyn Iterator<Item = FinishedSpan>,
        timeout: Duration,
    ) -> Result<(), Failure>;

    /// The layer is going away: release what the backend holds; false if that failed.
    fn shutdown(&mut self, runtime: &tokio::runtime::Runtime) -> bool;

    /// Where batches go, for the log (never a credential).
    fn endpoint(&self) -> String;
}

enum Control {
    /// Export what is queued, within the deadline.
    Flush(SyncSender<bool>, Instant),
    /// Export what is queued within the deadline, then stop.
    Shutdown(SyncSender<bool>, Instant),
}

/// The queue. The push that makes it `wake_at` long wakes the exporter (an atomic swap, or
/// one futex wake if it sleeps: once per batch).
struct Queue {
    spans: Mutex<Vec<FinishedSpan>>,
    capacity: usize,
    /// A full batch (or a full queue, when batches are larger than the queue).
    wake_at: usize,
    /// Closed while the queue is full, the exporter backs off, or after the shutdown.
    gate: Gate,
    /// Spans the exporter took from the queue and has not finished with.
    in_flight: AtomicUsize,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FinishedSpan>> {
        // A panic while pushing leaves a valid Vec behind.
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the layer holds: the queue, and the line to the exporter thread.
struct QueueSink {
    queue: Arc<Queue>,
    /// `None` once dropped, so the exporter sees the line closed as soon as it wakes.
    control: Mutex<Option<mpsc::Sender<Control>>>,
    /// The exporter thread, woken by a full batch, an order, or the sink's end.
    worker: std::thread::Thread,
    dropped: Arc<Dropped>,
}

impl SpanSink for QueueSink {
    #[inline]
    fn admit(&self) -> bool {
        let gate = &self.queue.gate;
        if gate.is_open() {
            return true;
        }
        self.dropped
            .add(gate.reason().unwrap_or(DropReason::QueueFull), 1);
        false
    }

    fn submit(&self, span: FinishedSpan) -> bool {
        let gate = &self.queue.gate;
        if gate.is_shut() {
            self.dropped.add(DropReason::Shutdown, 1);
            return false;
        }
        let mut spans = self.queue.lock();
        let len = spans.len();
        if len < self.queue.capacity {
            spans.push(span);
            if len + 1 == self.queue.capacity {
                // Under the lock, so the exporter's swap cannot reopen it before this.
                gate.close(Gate::FULL);
            }
            drop(spans);
            if len + 1 == self.queue.wake_at {
                self.worker.unpark();
            }
            true
        } else {
            drop(spans);
            self.dropped.add(DropReason::QueueFull, 1);
            false
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.ask(Control::Flush, timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.queue.gate.close(Gate::CLOSED);
        self.ask(Control::Shutdown, timeout)
    }

    fn dropped(&self) -> u64 {
        self.dropped.total()
    }

    fn pending(&self) -> usize {
        self.queue.lock().len() + self.queue.in_flight.load(Ordering::Relaxed)
    }
}

impl QueueSink {
    fn ask(&self, make: fn(SyncSender<bool>, Instant) -> Control, timeout: Duration) -> bool {
        let (ack, done) = mpsc::sync_channel(1);
        let deadline = Instant::now() + timeout;
        let sent = self
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|control| control.send(make(ack, deadline)).is_ok());
        self.worker.unpark();
        // Not sent: the exporter has stopped (shut down), nothing can be exported.
        sent && done.recv_timeout(timeout).unwrap_or(false)
    }
}

impl Drop for QueueSink {
    fn drop(&mut self) {
        // Close the line first, then wake the exporter: it sends what is left and stops.
        drop(
            self.control
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        self.worker.unpark();
    }
}

/// Starts the exporter thread; the backend is made on it, inside its runtime (HTTP clients
/// need one). `setting` names what the user configured, for errors.
pub(crate) fn spawn<B, F>(
    setup: ExportSetup,
    setting: &'static str,
    make: F,
) -> Result<Arc<dyn SpanSink>, BuildError>
where
    B: Backend + 'static,
    F: FnOnce(&ExportSetup) -> Result<B, String> + Send + 'static,
{
    let queue = Arc::new(Queue {
        spans: Mutex::new(Vec::with_capacity(setup.batch.max_queue_size)),
        capacity: setup.batch.max_queue_size,
        wake_at: setup
            .batch
            .max_export_batch_size
            .min(setup.batch.max_queue_size),
        gate: Gate::default(),
        in_flight: AtomicUsize::new(0),
    });
    let (control, orders) = mpsc::channel();
    let dropped = setup.dropped.clone();
    let worker_queue = queue.clone();
    let worker = delivery::start_sender(
        "tower-observability-otlp",
        move || make(&setup).map(|backend| (backend, setup)),
        move |runtime, (backend, setup): (B, ExportSetup)| {
            let spare = Vec::with_capacity(worker_queue.capacity);
            let outage = Outage::new("span export", "span", backend.endpoint());
            Export {
                runtime,
                backend,
                setup,
                outage,
                queue: worker_queue,
                spare,
            }
            .run(orders)
        },
    )
    .map_err(|e| BuildError::setting(setting, e))?;
    Ok(Arc::new(QueueSink {
        queue,
        control: Mutex::new(Some(control)),
        worker,
        dropped,
    }))
}

struct Export<B> {
    runtime: tokio::runtime::Runtime,
    backend: B,
    setup: ExportSetup,
    /// Whether the collector is failing, and until when the exporter waits.
    outage: Outage,
    queue: Arc<Queue>,
    /// Swapped with the queue's buffer, so draining allocates nothing.
    spare: Vec<FinishedSpan>,
}

impl<B: Backend> Export<B> {
    fn run(mut self, orders: mpsc::Receiver<Control>) {
        let delay = self.setup.batch.scheduled_delay;
        let mut due = Instant::now() + delay;
        loop {
            loop {
                match orders.try_recv() {
                    // Asked for: tried even while backing off (once: a failure drops the rest).
                    Ok(Control::Flush(ack, deadline)) => {
                        let ok = self.drain(Some(deadline));
                        let _ = ack.send(ok);
                    }
                    Ok(Control::Shutdown(ack, deadline)) => {
                        let ok = self.drain(Some(deadline));
                        let ok = self.backend.shutdown(&self.runtime) && ok;
                        let _ = ack.send(ok);
                        return;
                    }
                    // The layer is gone: send what is left and stop.
                    Err(TryRecvError::Disconnected) => {
                        self.drain(None);
                        self.backend.shutdown(&self.runtime);
                        return;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            if self.outage.reopen_if_due(now, &self.queue.gate) {
                // Spans are captured again: try the first ones soon.
                due = due.min(now + PROBE_DELAY);
            }
            let queued = self.queue.lock().len();
            let waiting = self.outage.until().filter(|until| now < *until);
            if waiting.is_none() && (queued >= self.queue.wake_at || (queued > 0 && now >= due)) {
                self.drain(None);
                due = Instant::now() + delay;
                // Look again at once: the queue filled on while this batch was out.
                continue;
            }
            // Until a batch fills, an order comes, the partial batch is due, or the wait
            // after a failure ends. An empty queue sleeps a whole delay: a span arriving
            // meanwhile is then due.
            if queued == 0 && now >= due {
                due = now + delay;
            }
            let wake = waiting.unwrap_or(due);
            std::thread::park_timeout(wake.saturating_duration_since(now));
        }
    }

    /// Exports everything queued now, in batches, by `deadline` if given; true if every
    /// export succeeded. After a failure the rest is dropped (counted as `backoff`), not
    /// tried batch after batch against a collector that is down.
    fn drain(&mut self, deadline: Option<Instant>) -> bool {
        {
            let mut queued = self.queue.lock();
            std::mem::swap(&mut *queued, &mut self.spare);
            self.queue.gate.open(Gate::FULL);
        }
        let mut spans = std::mem::take(&mut self.spare);
        let queue = self.queue.clone();
        let in_flight = &queue.in_flight;
        in_flight.store(spans.len(), Ordering::Relaxed);
        let mut ok = true;
        let size = self.setup.batch.max_export_batch_size;
        let mut left = spans.len();
        // One pass from the front: draining batch by batch would move the rest each time.
        let mut queued = spans.drain(..);
        while left > 0 {
            let now = Instant::now();
            let timeout = match deadline {
                Some(deadline) => deadline.saturating_duration_since(now),
                None => self.setup.batch.export_timeout,
            };
            let skip = if !ok {
                Some(DropReason::Backoff)
            } else if timeout.is_zero() {
                Some(DropReason::Shutdown)
            } else {
                None
            };
            if let Some(reason) = skip {
                self.setup.dropped.add(reason, left as u64);
                in_flight.store(0, Ordering::Relaxed);
                break;
            }
            let n = left.min(size);
            let timeout = timeout.min(self.setup.batch.export_timeout);
            ok &= self.export(&mut queued.by_ref().take(n), n as u64, timeout);
            left -= n;
            in_flight.fetch_sub(n, Ordering::Relaxed);
        }
        drop(queued);
        self.spare = spans;
        ok
    }

    fn export(
        &mut self,
        batch: &mut dyn Iterator<Item = FinishedSpan>,
        n: u64,
        timeout: Duration,
    ) -> bool {
        let (gate, dropped) = (&self.queue.gate, &self.setup.dropped);
        match self.backend.export(&self.runtime, batch, timeout) {
            Ok(()) => {
                self.setup.exported.increment(n);
                self.outage.succeeded(gate, dropped);
                true
            }
            Err(failure) => {
                dropped.add(failure.reason, n);
                self.outage.failed(&failure, n, gate, dropped);
                false
            }
        }
    }
}

/// Runs `future` on the exporter's runtime, bounded by `timeout`.
pub(crate) fn within<T>(
    runtime: &tokio::runtime::Runtime,
    timeout: Duration,
    future: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    runtime
        .block_on(async { tokio::time::timeout(timeout, future).await })
        .unwrap_or_else(|_| {
            Err(Failure::new(
                DropReason::Timeout,
                format!("no answer within {timeout:?}"),
            ))
        })
}
