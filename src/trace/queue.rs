//! The bounded queue between requests and the exporter thread (feature `otlp`).
//!
//! A request only moves its captured span into the queue (an uncontended lock and a push,
//! never blocking on the exporter); names, attributes and the encoding are made on the
//! exporter thread. The push that fills a batch wakes that thread (one wake per batch, not
//! per span), so bursts are exported as they come rather than on the next timer; otherwise
//! a partial batch leaves after `scheduled_delay`. A full queue drops the span and counts
//! it; an export that fails or outlasts its timeout counts its batch as dropped. So a
//! collector that is down or hangs costs requests nothing, and memory stays at the queue's
//! size.

use std::sync::mpsc::{self, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Counter;

use super::export::{FinishedSpan, SpanSink};
use super::otlp::BatchSettings;
use crate::error::BuildError;

/// What a starting sink needs from the layer.
pub(crate) struct Worker {
    /// The service's resource attributes (`service.name`, ...), in order; later keys win.
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) batch: BatchSettings,
    pub(crate) exported: Counter,
    pub(crate) dropped: Counter,
}

/// Where the exporter thread sends batches: the crate's own OTLP encoder and collector
/// client, or an OpenTelemetry SDK exporter.
pub(crate) trait Backend {
    /// Exports one batch within `timeout`; the error says why it was not taken.
    fn export(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        spans: &mut dyn Iterator<Item = FinishedSpan>,
        timeout: Duration,
    ) -> Result<(), String>;

    /// The layer is going away: release what the backend holds; false if that failed.
    fn shutdown(&mut self, runtime: &tokio::runtime::Runtime) -> bool;
}

enum Control {
    Flush(SyncSender<bool>),
    Shutdown(SyncSender<bool>),
}

/// The queue. The push that makes it `wake_at` long wakes the exporter (an atomic swap, or
/// one futex wake if it sleeps: once per batch).
struct Queue {
    spans: Mutex<Vec<FinishedSpan>>,
    capacity: usize,
    /// A full batch (or a full queue, when batches are larger than the queue).
    wake_at: usize,
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
    dropped: Counter,
}

impl SpanSink for QueueSink {
    fn submit(&self, span: FinishedSpan) {
        let mut spans = self.queue.lock();
        let len = spans.len();
        if len < self.queue.capacity {
            spans.push(span);
            drop(spans);
            if len + 1 == self.queue.wake_at {
                self.worker.unpark();
            }
        } else {
            drop(spans);
            self.dropped.increment(1);
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.ask(Control::Flush, timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.ask(Control::Shutdown, timeout)
    }
}

impl QueueSink {
    fn ask(&self, make: fn(SyncSender<bool>) -> Control, timeout: Duration) -> bool {
        let (ack, done) = mpsc::sync_channel(1);
        let sent = self
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|control| control.send(make(ack)).is_ok());
        self.worker.unpark();
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
    worker: Worker,
    setting: &'static str,
    make: F,
) -> Result<Arc<dyn SpanSink>, BuildError>
where
    B: Backend + 'static,
    F: FnOnce(&Worker) -> Result<B, String> + Send + 'static,
{
    let queue = Arc::new(Queue {
        spans: Mutex::new(Vec::with_capacity(worker.batch.max_queue_size)),
        capacity: worker.batch.max_queue_size,
        wake_at: worker
            .batch
            .max_export_batch_size
            .min(worker.batch.max_queue_size),
    });
    let (control, orders) = mpsc::channel();
    let (ready, started) = mpsc::sync_channel::<Result<(), String>>(1);
    let dropped = worker.dropped.clone();
    let worker_queue = queue.clone();
    let thread = std::thread::Builder::new()
        .name("tower-observability-otlp".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            let backend = {
                let _guard = runtime.enter();
                make(&worker)
            };
            match backend {
                Ok(backend) => {
                    let _ = ready.send(Ok(()));
                    let spare = Vec::with_capacity(worker_queue.capacity);
                    Export {
                        runtime,
                        backend,
                        worker,
                        failing: false,
                        queue: worker_queue,
                        spare,
                    }
                    .run(orders);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        })
        .map_err(|e| BuildError::setting(setting, format!("cannot start: {e}")))?;
    match started.recv() {
        Ok(Ok(())) => Ok(Arc::new(QueueSink {
            queue,
            control: Mutex::new(Some(control)),
            worker: thread.thread().clone(),
            dropped,
        })),
        Ok(Err(e)) => Err(BuildError::setting(setting, e)),
        Err(_) => Err(BuildError::setting(setting, "the exporter thread died")),
    }
}

struct Export<B> {
    runtime: tokio::runtime::Runtime,
    backend: B,
    worker: Worker,
    /// Whether the last export failed (failures are logged on change, not every time).
    failing: bool,
    queue: Arc<Queue>,
    /// Swapped with the queue's buffer, so draining allocates nothing.
    spare: Vec<FinishedSpan>,
}

impl<B: Backend> Export<B> {
    fn run(mut self, orders: mpsc::Receiver<Control>) {
        let delay = self.worker.batch.scheduled_delay;
        let mut due = Instant::now() + delay;
        loop {
            loop {
                match orders.try_recv() {
                    Ok(Control::Flush(ack)) => {
                        let ok = self.drain();
                        let _ = ack.send(ok);
                    }
                    Ok(Control::Shutdown(ack)) => {
                        let ok = self.drain();
                        let ok = self.backend.shutdown(&self.runtime) && ok;
                        let _ = ack.send(ok);
                        return;
                    }
                    // The layer is gone: send what is left and stop.
                    Err(TryRecvError::Disconnected) => {
                        self.drain();
                        self.backend.shutdown(&self.runtime);
                        return;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            let queued = self.queue.lock().len();
            let now = Instant::now();
            if queued >= self.queue.wake_at || (queued > 0 && now >= due) {
                self.drain();
                due = Instant::now() + delay;
                // Look again at once: the queue filled on while this batch was out.
                continue;
            }
            // Until a batch fills, an order comes, or the partial batch is due. An empty
            // queue sleeps a whole delay: a span arriving meanwhile is then due.
            let wait = if queued > 0 {
                due.saturating_duration_since(now)
            } else {
                due = now + delay;
                delay
            };
            std::thread::park_timeout(wait);
        }
    }

    /// Exports everything queued now, in batches; true if every export succeeded.
    fn drain(&mut self) -> bool {
        std::mem::swap(&mut *self.queue.lock(), &mut self.spare);
        let mut spans = std::mem::take(&mut self.spare);
        let mut ok = true;
        let size = self.worker.batch.max_export_batch_size;
        let mut left = spans.len();
        // One pass from the front: draining batch by batch would move the rest each time.
        let mut queued = spans.drain(..);
        while left > 0 {
            let n = left.min(size);
            ok &= self.export(&mut queued.by_ref().take(n), n as u64);
            left -= n;
        }
        drop(queued);
        self.spare = spans;
        ok
    }

    fn export(&mut self, batch: &mut dyn Iterator<Item = FinishedSpan>, n: u64) -> bool {
        let timeout = self.worker.batch.export_timeout;
        match self.backend.export(&self.runtime, batch, timeout) {
            Ok(()) => {
                self.worker.exported.increment(n);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(target: "tower_observability::otlp", "span export recovered");
                }
                true
            }
            Err(error) => {
                self.worker.dropped.increment(n);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(target: "tower_observability::otlp", %error, spans = n, "span export failed; spans are dropped and counted until it recovers");
                }
                false
            }
        }
    }
}

/// Runs `future` on the exporter's runtime, bounded by `timeout`.
pub(crate) fn within<T>(
    runtime: &tokio::runtime::Runtime,
    timeout: Duration,
    future: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    runtime
        .block_on(async { tokio::time::timeout(timeout, future).await })
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}
