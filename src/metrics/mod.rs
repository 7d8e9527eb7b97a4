//! RED metrics: where they are recorded (the [`MetricsBackend`]), their names
//! ([`names`]) and the handles cached per label set.

pub(crate) mod exemplar;
pub(crate) mod exposition;
pub(crate) mod histogram;
pub mod names;
pub(crate) mod native;
mod openmetrics;
#[cfg(feature = "otlp")]
mod otlp;
#[cfg(feature = "otlp")]
mod otlp_split;
pub(crate) mod process;
mod protobuf;
pub(crate) mod push;
mod requests;
pub(crate) mod series;
mod text_format;

use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Label, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub(crate) use exposition::Exposition;
use histogram::HttpHistograms;
pub use native::NativeHistograms;
#[cfg(feature = "otlp")]
pub use otlp::Temporality;
#[cfg(feature = "otlp")]
pub use push::MetricsPush;
pub(crate) use requests::RequestMetrics;

use names::*;

/// The OpenTelemetry semantic-convention buckets for HTTP durations, extended with 30 s and
/// 60 s so slow streams and long polls are not all lumped into `+Inf`.
pub const DEFAULT_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
];

/// Body-size buckets: powers of four from 64 B to 64 MiB, plus 0 for bodiless messages.
pub const DEFAULT_SIZE_BUCKETS: &[f64] = &[
    0.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Where the layer's metrics go.
///
/// The crate never fights the application's own recorder: by default it installs a
/// Prometheus recorder as the global `metrics` recorder (so the application's own
/// `metrics::counter!` calls show up on `/metrics` too), and if the application already
/// installed one, [`MetricsBackend::Global`] records into that instead.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum MetricsBackend {
    /// Build a Prometheus recorder with the crate's buckets and install it as the global
    /// recorder. If this process already installed one through this crate, it is reused; if
    /// another recorder is installed, the crate keeps its own private registry (and says so
    /// in a warning). `/metrics` renders it.
    #[default]
    InstallPrometheus,
    /// A private Prometheus recorder, not installed globally: only this layer's metrics.
    /// Useful in tests and for several independent layers in one process.
    IsolatedPrometheus,
    /// Record through whatever recorder the application installed with the `metrics` facade.
    /// Install it before calling `build()`. `/metrics` renders `render`'s registry if given;
    /// build the recorder with [`prometheus_builder`] so histograms keep their buckets.
    Global {
        /// The handle `/metrics` renders, if the application's recorder is a Prometheus one.
        render: Option<PrometheusHandle>,
    },
}

/// A [`PrometheusBuilder`] configured with the crate's histogram buckets, for applications
/// that install their own Prometheus recorder and use [`MetricsBackend::Global`].
///
/// ```
/// let recorder = tower_observability::prometheus_builder(
///     tower_observability::DEFAULT_DURATION_BUCKETS,
///     tower_observability::DEFAULT_SIZE_BUCKETS,
/// )
/// .build_recorder();
/// # let _ = recorder;
/// ```
pub fn prometheus_builder(duration_buckets: &[f64], size_buckets: &[f64]) -> PrometheusBuilder {
    let set = |b: PrometheusBuilder, name: &str, buckets: &[f64]| {
        b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .expect("bucket lists are validated non-empty")
    };
    let mut builder = PrometheusBuilder::new()
        // Every histogram gets buckets: one without renders as a summary, useless to SLOs.
        .set_buckets(duration_buckets)
        .expect("bucket lists are validated non-empty");
    builder = set(builder, HTTP_SERVER_REQUEST_DURATION, duration_buckets);
    builder = set(builder, RPC_SERVER_CALL_DURATION, duration_buckets);
    builder = set(builder, HTTP_SERVER_REQUEST_BODY_SIZE, size_buckets);
    set(builder, HTTP_SERVER_RESPONSE_BODY_SIZE, size_buckets)
}

/// The recorder the crate registered its handles with.
#[derive(Clone)]
pub(crate) enum Sink {
    /// A Prometheus registry the crate owns: the HTTP histograms are kept by the crate
    /// ([`histogram`]), everything else by the exporter's recorder.
    Own(Arc<Registry>),
    /// The application's recorder, through the `metrics` facade.
    Global,
}

/// A registry the crate owns: the exporter's recorder and the crate's own histograms,
/// rendered together.
pub(crate) struct Registry {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    pub(crate) histograms: HttpHistograms,
}

impl Registry {
    fn new(
        duration_buckets: &[f64],
        size_buckets: &[f64],
        native: Option<NativeHistograms>,
    ) -> Self {
        let recorder =
            Arc::new(prometheus_builder(duration_buckets, size_buckets).build_recorder());
        Registry {
            handle: recorder.handle(),
            recorder,
            histograms: HttpHistograms::new(duration_buckets, size_buckets, native),
        }
    }

    /// Appends the exposition: the exporter's metrics, then the crate's histograms.
    pub(crate) fn render(&self, out: &mut String) {
        out.push_str(&self.handle.render());
        self.histograms.render(out);
    }

    /// Folds the exporter's queued histogram samples into buckets.
    pub(crate) fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

impl Sink {
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        match self {
            Sink::Own(registry) => metrics::with_local_recorder(&*registry.recorder, f),
            Sink::Global => f(),
        }
    }

    pub(crate) fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.with(|| metrics::histogram!(name, labels))
    }

    pub(crate) fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.with(|| metrics::counter!(name, labels))
    }

    pub(crate) fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.with(|| metrics::gauge!(name, labels))
    }

    /// A counter without labels, registered at 0 so it reads 0, not absent, before
    /// anything happens.
    pub(crate) fn counter_at_zero(&self, name: &'static str) -> Counter {
        let counter = self.counter(name, vec![]);
        counter.increment(0);
        counter
    }
}

/// The registry this crate installed globally, shared by every layer built later.
static INSTALLED: Mutex<Option<Arc<Registry>>> = Mutex::new(None);

/// Resolves a backend to where handles are registered and what `/metrics` renders, with
/// every metric of the catalogue described.
pub(crate) fn open_backend(
    backend: &MetricsBackend,
    duration_buckets: &[f64],
    size_buckets: &[f64],
    native: Option<NativeHistograms>,
) -> (Sink, Exposition) {
    let (sink, exposition) = resolve_backend(backend, duration_buckets, size_buckets, native);
    sink.with(describe_all);
    (sink, exposition)
}

fn resolve_backend(
    backend: &MetricsBackend,
    duration_buckets: &[f64],
    size_buckets: &[f64],
    native: Option<NativeHistograms>,
) -> (Sink, Exposition) {
    let build = || Arc::new(Registry::new(duration_buckets, size_buckets, native));
    match backend {
        MetricsBackend::IsolatedPrometheus => {
            let registry = build();
            (Sink::Own(registry.clone()), Exposition::Own(registry))
        }
        MetricsBackend::Global { render } => (
            Sink::Global,
            render.clone().map_or(Exposition::None, Exposition::Handle),
        ),
        MetricsBackend::InstallPrometheus => {
            let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(registry) = installed.as_ref() {
                return (
                    Sink::Own(registry.clone()),
                    Exposition::Own(registry.clone()),
                );
            }
            let registry = build();
            if metrics::set_global_recorder(registry.recorder.clone()).is_ok() {
                *installed = Some(registry.clone());
            } else {
                warning!(
                    target: "tower_observability::metrics",
                    {},
                    "a metrics recorder is already installed: tower-observability records into \
                     its own registry, served on its /metrics; use MetricsBackend::Global to \
                     record into the application's recorder instead"
                );
            }
            (Sink::Own(registry.clone()), Exposition::Own(registry))
        }
    }
}

/// The identity on `target_info`.
#[derive(Debug, Clone)]
pub(crate) struct ServiceInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) environment: String,
}

/// `# HELP` and units for every metric recorded through the facade.
fn describe_all() {
    // Process metrics are rendered from /proc by `process`, not recorded through the facade.
    for spec in CATALOGUE.iter().filter(|m| !m.name.starts_with("process_")) {
        let unit = if spec.name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if spec.name.ends_with("_bytes") {
            Some(Unit::Bytes)
        } else {
            None
        };
        let (name, help) = (spec.name, spec.help);
        match (spec.kind, unit) {
            (MetricKind::Counter, _) => metrics::describe_counter!(name, help),
            (MetricKind::Gauge, _) => metrics::describe_gauge!(name, help),
            (MetricKind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}
