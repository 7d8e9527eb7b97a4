//! OTLP metrics push (feature `otlp`): every `OTEL_METRIC_EXPORT_INTERVAL`, the whole
//! exposition goes to `OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT` over HTTP/protobuf or gRPC,
//! encoded by [`otlp`](super::otlp), alongside `/metrics` (pull and push together).
//!
//! Bounded like the span exporter: the push runs on its own thread and reads the counters
//! requests write, so a collector that is down, refuses or hangs never slows a request; an
//! export that fails is counted (`tower_observability_metric_exports_failed_total`) and
//! logged once per change of state, and loses nothing (cumulative totals, and delta
//! baselines that only move when the collector took an export). An export larger than
//! `max_request_bytes` goes as several requests ([`otlp_split`](super::otlp_split)), in
//! order; in delta, one the collector took only in part within the export timeout loses
//! the points of the requests it did not take, counted and warned, rather than sending
//! again those it took (see `PushLoop::export`). Requests leave through the span exporter's
//! collector client (`trace::collector`), calling the metrics service: the pause a collector
//! asks for (`Retry-After`, gRPC `RetryInfo`) is honoured before a request is tried again.
//! Shutdown pushes a final export.

use crate::error::BuildError;

#[cfg(feature = "otlp")]
pub use settings::MetricsPush;

/// What the builder holds: the push asked for, if any (always nothing without `otlp`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    #[cfg(feature = "otlp")]
    pub(crate) push: Option<MetricsPush>,
}

impl Config {
    /// Whether the push asked for can run (`build()` checks it before starting anything).
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        #[cfg(feature = "otlp")]
        if let Some(push) = &self.push {
            push.check()?;
        }
        Ok(())
    }
}

/// The push of one layer: a thread that exports on a timer, or nothing.
#[derive(Default)]
pub(crate) struct Push {
    #[cfg(feature = "otlp")]
    worker: Option<worker::Worker>,
}

impl Push {
    /// Starts the push `builder` asks for, if any.
    #[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
    pub(crate) fn start(setup: &crate::config::Setup<'_>) -> Result<Push, BuildError> {
        #[cfg(feature = "otlp")]
        if let Some(settings) = &setup.settings.metrics_push.push {
            let settings_all = setup.settings;
            let resource =
                crate::trace::otlp::resource(setup.info, &settings_all.resource_attributes);
            let exposition = super::Exposition::of(setup.sink, &settings_all.backend);
            return Ok(Push {
                worker: Some(worker::Worker::start(
                    settings, exposition, resource, setup.sink,
                )?),
            });
        }
        Ok(Push::default())
    }

    /// Exports now; false if that failed or did not end within `timeout` (or no push).
    pub(crate) fn flush(&self, _timeout: std::time::Duration) -> bool {
        #[cfg(feature = "otlp")]
        if let Some(worker) = &self.worker {
            return worker.ask(false, _timeout);
        }
        false
    }

    /// Asks for the last export and returns at once; [`Closing::wait`] for its end.
    pub(crate) fn begin_shutdown(&self) -> Closing {
        #[cfg(feature = "otlp")]
        if let Some(worker) = &self.worker {
            return Closing(Some(worker.order(true)));
        }
        Closing(None)
    }
}

/// A last export under way.
pub(crate) struct Closing(Option<std::sync::mpsc::Receiver<bool>>);

impl Closing {
    /// Whether the last export was taken by `deadline` (true when there is no push).
    pub(crate) fn wait(self, deadline: std::time::Instant) -> bool {
        self.0.is_none_or(|done| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            done.recv_timeout(left).unwrap_or(false)
        })
    }
}

#[cfg(feature = "otlp")]
mod settings {
    use std::time::Duration;

    use crate::error::BuildError;
    use crate::metrics::otlp::Temporality;
    use crate::trace::{OtlpProtocol, OtlpSettings};

    /// Where and how often the metrics are pushed with OTLP (feature `otlp`); read from the
    /// standard variables by `from_env` when `OTEL_METRICS_EXPORTER` includes `otlp`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_observability::metrics::{MetricsPush, Temporality};
    /// use tower_observability::trace::{OtlpProtocol, OtlpSettings};
    /// # use tower_observability::{MetricsBackend, Observability};
    ///
    /// let obs = Observability::builder("checkout")
    ///     .otlp_metrics(MetricsPush {
    ///         otlp: OtlpSettings {
    ///             protocol: OtlpProtocol::Grpc,
    ///             endpoint: Some("http://127.0.0.1:4317".into()),
    ///             ..Default::default()
    ///         },
    ///         interval: Duration::from_secs(15),
    ///         temporality: Temporality::Delta,
    ///         ..Default::default()
    ///     })
    /// #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
    ///     .build()?;
    /// # obs.shutdown(Duration::from_millis(100));
    /// # Ok::<(), tower_observability::BuildError>(())
    /// ```
    #[derive(Debug, Clone, PartialEq)]
    pub struct MetricsPush {
        /// The collector: protocol, endpoint (the full URL, `.../v1/metrics` for HTTP;
        /// `None`: `http://localhost:4318/v1/metrics` or `http://localhost:4317`), headers,
        /// and the timeout of one call (`OTEL_EXPORTER_OTLP_(METRICS_)*`).
        pub otlp: OtlpSettings,
        /// Time between exports (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds; 60 s).
        pub interval: Duration,
        /// Longest an export may take, encoding and sending (`OTEL_METRIC_EXPORT_TIMEOUT`,
        /// milliseconds; 30 s).
        pub export_timeout: Duration,
        /// Cumulative (default) or delta
        /// (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: `cumulative`, `delta`;
        /// `lowmemory` is taken as `delta`).
        pub temporality: Temporality,
        /// Largest request sent, in bytes of encoded protobuf (1 MiB; at least 1 KiB): an
        /// export larger than this goes as several requests, in order, each with the
        /// resource and scope, a metric with too many data points cut into several metrics
        /// of the same name. Collectors refuse larger messages (the OpenTelemetry
        /// Collector's gRPC receiver, over 4 MiB by default) and ingest endpoints limit
        /// bodies; a single data point larger than this still goes, alone.
        pub max_request_bytes: usize,
    }

    /// The default [`MetricsPush::max_request_bytes`]: a quarter of the OpenTelemetry
    /// Collector's default gRPC limit (4 MiB).
    const MAX_REQUEST_BYTES: usize = 1024 * 1024;
    /// The smallest [`MetricsPush::max_request_bytes`] taken.
    const MIN_REQUEST_BYTES: usize = 1024;

    impl Default for MetricsPush {
        fn default() -> Self {
            MetricsPush {
                otlp: OtlpSettings::default(),
                interval: Duration::from_secs(60),
                export_timeout: Duration::from_secs(30),
                temporality: Temporality::Cumulative,
                max_request_bytes: MAX_REQUEST_BYTES,
            }
        }
    }

    impl MetricsPush {
        /// The URL exports go to.
        pub(crate) fn endpoint(&self) -> String {
            self.otlp.endpoint.clone().unwrap_or_else(|| {
                match self.otlp.protocol {
                    OtlpProtocol::Grpc => "http://localhost:4317",
                    OtlpProtocol::HttpProtobuf => "http://localhost:4318/v1/metrics",
                }
                .to_owned()
            })
        }

        pub(crate) fn check(&self) -> Result<(), BuildError> {
            if self.interval.is_zero() || self.export_timeout.is_zero() {
                return Err(BuildError::setting(
                    "otlp_metrics",
                    "interval and export_timeout must be longer than zero",
                ));
            }
            if self.max_request_bytes < MIN_REQUEST_BYTES {
                return Err(BuildError::setting(
                    "otlp_metrics",
                    format!("max_request_bytes must be at least {MIN_REQUEST_BYTES}"),
                ));
            }
            Ok(())
        }
    }
}

#[cfg(feature = "otlp")]
mod worker {
    use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
    use std::sync::Mutex;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use metrics::Counter;

    use super::settings::MetricsPush;
    use crate::delivery;
    use crate::error::BuildError;
    use crate::metrics::names::{METRIC_EXPORTS, METRIC_EXPORTS_FAILED};
    use crate::metrics::otlp::MetricsEncoder;
    use crate::metrics::otlp_split;
    use crate::metrics::{Exposition, Sink};
    use crate::trace::collector::{Collector, OtlpService};
    use crate::trace::OtlpSettings;

    enum Order {
        Flush(SyncSender<bool>),
        Shutdown(SyncSender<bool>),
    }

    /// The line to the push thread.
    pub(super) struct Worker {
        /// `None` once shut down; dropping it tells the thread to push a last time and stop.
        orders: Mutex<Option<mpsc::Sender<Order>>>,
    }

    impl Worker {
        pub(super) fn start(
            settings: &MetricsPush,
            exposition: Exposition,
            resource: Vec<(String, String)>,
            sink: &Sink,
        ) -> Result<Worker, BuildError> {
            settings.check()?;
            let exported = sink.counter_at_zero(METRIC_EXPORTS);
            let failed = sink.counter_at_zero(METRIC_EXPORTS_FAILED);
            let (orders, received) = mpsc::channel();
            let settings = settings.clone();
            let interval = settings.interval;
            delivery::start_sender(
                "tower-observability-metrics-push",
                {
                    let settings = settings.clone();
                    move || sender(&settings)
                },
                move |runtime, sender| {
                    PushLoop {
                        encoder: MetricsEncoder::new(&resource, settings.temporality, unix_nanos()),
                        runtime,
                        sender,
                        exposition,
                        timeout: settings.export_timeout,
                        max_request_bytes: settings.max_request_bytes,
                        exported,
                        failed,
                        failing: false,
                    }
                    .run(received, interval)
                },
            )
            .map_err(|e| BuildError::setting("otlp_metrics", e))?;
            Ok(Worker {
                orders: Mutex::new(Some(orders)),
            })
        }

        /// Asks for an export now (and, with `shutdown`, the end of the push); true if it
        /// succeeded within `timeout`.
        pub(super) fn ask(&self, shutdown: bool, timeout: Duration) -> bool {
            self.order(shutdown).recv_timeout(timeout).unwrap_or(false)
        }

        /// Sends the order; the receiver says whether its export was taken (a closed line,
        /// a push already shut down, reads as false).
        pub(super) fn order(&self, shutdown: bool) -> mpsc::Receiver<bool> {
            let (ack, done) = mpsc::sync_channel(1);
            let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
            let order = if shutdown {
                Order::Shutdown(ack)
            } else {
                Order::Flush(ack)
            };
            // Unsent, the order is dropped with its `ack`: `done` then reads as closed.
            if let Some(line) = orders.as_ref() {
                let _ = line.send(order);
            }
            if shutdown {
                // Nothing more will be asked of a push that was shut down.
                orders.take();
            }
            done
        }
    }

    fn unix_nanos() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    struct PushLoop {
        encoder: MetricsEncoder,
        runtime: tokio::runtime::Runtime,
        sender: Collector,
        exposition: Exposition,
        timeout: Duration,
        max_request_bytes: usize,
        exported: Counter,
        failed: Counter,
        /// Whether the last export failed (logged on change, not every time).
        failing: bool,
    }

    impl PushLoop {
        fn run(mut self, orders: mpsc::Receiver<Order>, interval: Duration) {
            let mut due = Instant::now() + interval;
            loop {
                match orders.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Ok(Order::Flush(ack)) => {
                        let _ = ack.send(self.export());
                    }
                    Ok(Order::Shutdown(ack)) => {
                        let _ = ack.send(self.export());
                        return;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        self.export();
                        // On the interval's grid, without a burst after a long stall.
                        due += interval;
                        if due < Instant::now() {
                            due = Instant::now() + interval;
                        }
                    }
                    // The layer is gone: a last export, then stop.
                    Err(RecvTimeoutError::Disconnected) => {
                        self.export();
                        return;
                    }
                }
            }
        }

        /// One export: the exposition, encoded, sent as requests of at most
        /// `max_request_bytes`, in order, within `timeout`; true when every one was taken.
        ///
        /// A request refused after an earlier one of the same export was taken is tried
        /// again (backing off) until the export's timeout: the export is either delivered
        /// whole or, when the timeout passes, given up as what was taken. Given up, it is
        /// still marked taken (`MetricsEncoder::taken`): in delta, the requests the
        /// collector took must not be sent again (their points would be counted twice),
        /// and the baseline moves for every series at once, so the points of the requests
        /// not taken are lost, never double counted: counted as a failed export and said
        /// in a warning with their number. In cumulative, the next export carries the
        /// totals anyway. When the first request is refused, nothing was taken: the export
        /// failed and the next one carries its points, as when it was one request.
        fn export(&mut self) -> bool {
            let prefix = self.sender.prefix();
            let message = self.encoder.encode(&self.exposition, unix_nanos(), prefix);
            let bytes = message.len() - prefix;
            let split = otlp_split::split(&message[prefix..], self.max_request_bytes);
            let count = split.as_ref().map_or(1, |s| s.len());
            let mut progress = Progress::default();
            let sender = &self.sender;
            let timeout = self.timeout;
            let within = self.runtime.block_on(async {
                let requests = match &split {
                    Some(split) => Requests::Split { split, prefix },
                    None => Requests::Whole(&message),
                };
                tokio::time::timeout(timeout, deliver(sender, requests, &mut progress))
                    .await
                    .is_ok()
            });
            let error = progress.error.take().map(|error| {
                if within {
                    error
                } else {
                    format!("no answer within {timeout:?}; {error}")
                }
            });
            if progress.taken == count {
                self.encoder.taken();
                self.exported.increment(1);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(target: "tower_observability::otlp", "metrics export recovered");
                }
                return true;
            }
            let error = error.unwrap_or_else(|| format!("no answer within {timeout:?}"));
            self.failed.increment(1);
            if progress.taken == 0 {
                if !std::mem::replace(&mut self.failing, true) {
                    warning!(
                        target: "tower_observability::otlp",
                        { %error, bytes, requests = count, },
                        "metrics export failed ({error}); the next exports carry what \
                         this one did not deliver"
                    );
                }
                return false;
            }
            // Some requests were taken: given up as that (see above).
            self.encoder.taken();
            let lost: usize = split
                .as_ref()
                .map_or(0, |s| (progress.taken..count).map(|i| s.points(i)).sum());
            let requests_lost = count - progress.taken;
            if !std::mem::replace(&mut self.failing, true) {
                warning!(
                    target: "tower_observability::otlp",
                    { %error, requests = count, requests_lost, points_lost = lost, },
                    "metrics export delivered in part ({error}): {requests_lost} of its \
                     {count} requests, {lost} data points, were not taken within the \
                     export timeout; in delta they are lost (never sent twice), in \
                     cumulative the next export carries the totals"
                );
            }
            false
        }
    }

    /// The first wait before a request of an export in part delivered is tried again;
    /// each further try doubles it, up to [`RETRY_MAX`].
    const RETRY_FIRST: Duration = Duration::from_millis(100);
    const RETRY_MAX: Duration = Duration::from_secs(2);

    /// How far the requests of an export went.
    #[derive(Default)]
    struct Progress {
        /// Requests taken, from the first.
        taken: usize,
        /// The last error.
        error: Option<String>,
    }

    /// The requests of an export: the message as it is (when it fits; a copy goes, the
    /// message being borrowed by the split), or those of its split, each written when sent
    /// (one at a time in memory besides the message; one tried again is written again, not
    /// kept).
    enum Requests<'a> {
        Whole(&'a Vec<u8>),
        Split {
            split: &'a otlp_split::Split<'a>,
            prefix: usize,
        },
    }

    /// Sends `requests` in order, each once taken; the first one refused ends it, unless an
    /// earlier one was taken: then it is tried again until taken (the caller's timeout
    /// bounds it).
    async fn deliver(sender: &Collector, requests: Requests<'_>, progress: &mut Progress) {
        let (split, prefix) = match requests {
            Requests::Whole(message) => {
                match sender.send(message.clone()).await {
                    Ok(()) => progress.taken = 1,
                    Err(failure) => progress.error = Some(failure.message),
                }
                return;
            }
            Requests::Split { split, prefix } => (split, prefix),
        };
        if let Err(failure) = sender.send(split.write(0, prefix)).await {
            progress.error = Some(failure.message);
            return;
        }
        progress.taken = 1;
        while progress.taken < split.len() {
            let mut wait = RETRY_FIRST;
            while let Err(failure) = sender.send(split.write(progress.taken, prefix)).await {
                // The pause the collector asked for (`Retry-After`, gRPC `RetryInfo`), else
                // our own backoff; the export's timeout bounds both.
                let pause = failure.retry_after.unwrap_or(wait);
                progress.error = Some(failure.message);
                tokio::time::sleep(pause).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
            progress.taken += 1;
        }
        progress.error = None;
    }

    /// How exports leave: the span exporter's collector client, calling the metrics service
    /// (HTTP/protobuf to the URL, or the gRPC method on its host); its failures say what the
    /// collector answered and how long it asked to wait.
    fn sender(settings: &MetricsPush) -> Result<Collector, String> {
        let otlp = OtlpSettings {
            endpoint: Some(settings.endpoint()),
            ..settings.otlp.clone()
        };
        Collector::new(&otlp, OtlpService::Metrics)
    }
}
