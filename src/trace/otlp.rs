//! OTLP export settings (feature `otlp`): where spans go, read from the standard
//! `OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*`, `OTEL_TRACES_EXPORTER` and `OTEL_SDK_DISABLED`
//! variables or set in code, and the start of the export behind the layer's bounded queue
//! ([`queue`](super::queue)): the crate's own OTLP encoder and collector client
//! ([`collector`](super::collector)), or a user's OpenTelemetry exporter or processor
//! ([`sdk`](super::sdk)).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::collector::OtlpBackend;
use super::export::SpanSink;
use super::queue::{self, Worker};
use crate::error::BuildError;
use crate::metrics::names::{SPANS_DROPPED, SPANS_EXPORTED};
use crate::metrics::{ServiceInfo, Sink};

/// The OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (default port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318); the specification's default.
    HttpProtobuf,
}

/// Where spans go and how: the standard `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// The full URL spans are sent to (`.../v1/traces` for HTTP); `None` for the default.
    pub endpoint: Option<String>,
    /// Timeout of one export call.
    pub timeout: Duration,
    /// Headers (HTTP) or metadata (gRPC) sent with every export, e.g. a collector's API key
    /// (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`:
    /// `key=value,key2=value2`, values percent-decoded).
    pub headers: Vec<(String, String)>,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        OtlpSettings {
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: None,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
        }
    }
}

/// The export queue: its bound, how spans are batched, how long an export may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Spans waiting beyond this are dropped and counted (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048).
    pub max_queue_size: usize,
    /// Spans per export call (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub max_export_batch_size: usize,
    /// Longest wait before a partial batch is sent (`OTEL_BSP_SCHEDULE_DELAY`, 5 s).
    pub scheduled_delay: Duration,
    /// Longest an export may take before its batch is dropped (`OTEL_BSP_EXPORT_TIMEOUT`, 30 s).
    pub export_timeout: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(5),
            export_timeout: Duration::from_secs(30),
        }
    }
}

pub(crate) type Spawn = Box<dyn FnOnce(Worker) -> Result<Arc<dyn SpanSink>, BuildError> + Send>;

/// A sink to start at `build()`: taken once (a user's exporter is not `Clone`).
#[derive(Clone)]
pub(crate) struct Pending(pub(crate) Arc<Mutex<Option<Spawn>>>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending(..)")
    }
}

/// What the builder knows about export.
#[derive(Debug, Clone, Default)]
pub(crate) enum Target {
    /// No export (the default without `from_env`, or `OTEL_TRACES_EXPORTER=none`).
    #[default]
    None,
    Otlp(OtlpSettings),
    Custom(Pending),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ExportConfig {
    pub(crate) target: Target,
    pub(crate) batch: BatchSettings,
    /// `OTEL_SDK_DISABLED=true`: nothing is exported whatever else is set.
    pub(crate) disabled: bool,
}

impl ExportConfig {
    pub(crate) fn from_env(var: &impl Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        let mut config = ExportConfig::default();
        if let Some(v) = var("OTEL_SDK_DISABLED") {
            config.disabled = crate::config::env::boolean("OTEL_SDK_DISABLED", &v)?;
        }
        let exporter = var("OTEL_TRACES_EXPORTER").unwrap_or_else(|| "otlp".into());
        match exporter.trim() {
            "otlp" => {}
            "none" => return Ok(config),
            other => {
                return Err(BuildError::env(
                    "OTEL_TRACES_EXPORTER",
                    other,
                    "this crate exports with otlp (or none)",
                ))
            }
        }
        let mut otlp = OtlpSettings::default();
        let either = |specific: &str, generic: &str| {
            var(specific)
                .map(|v| (specific.to_owned(), v))
                .or_else(|| var(generic).map(|v| (generic.to_owned(), v)))
        };
        if let Some((name, v)) = either(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            otlp.protocol = match v.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                _ => return Err(BuildError::env(&name, &v, "expected grpc or http/protobuf")),
            };
        }
        if let Some(v) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            otlp.endpoint = Some(check_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v)?);
        } else if let Some(v) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let base = check_url("OTEL_EXPORTER_OTLP_ENDPOINT", v)?;
            otlp.endpoint = Some(match otlp.protocol {
                OtlpProtocol::Grpc => base,
                // The generic variable names the base; each signal appends its path.
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            });
        }
        if let Some((name, v)) = either(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            otlp.timeout = millis(&name, &v)?;
        }
        if let Some((name, v)) = either(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            otlp.headers = headers(&name, &v)?;
        }
        if let Some((name, v)) = either(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ) {
            match v.trim() {
                "" | "none" => {}
                // Often set for every signal of a fleet: not a reason to refuse to start.
                "gzip" => tracing::warn!(
                    target: "tower_observability::otlp",
                    variable = %name,
                    "gzip is not supported by the built-in OTLP exporter; spans are sent uncompressed"
                ),
                _ => return Err(BuildError::env(&name, &v, "expected gzip or none")),
            }
        }
        let batch = &mut config.batch;
        if let Some(v) = var("OTEL_BSP_MAX_QUEUE_SIZE") {
            batch.max_queue_size = count("OTEL_BSP_MAX_QUEUE_SIZE", &v)?;
        }
        if let Some(v) = var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            batch.max_export_batch_size = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &v)?;
        }
        if let Some(v) = var("OTEL_BSP_SCHEDULE_DELAY") {
            batch.scheduled_delay = millis("OTEL_BSP_SCHEDULE_DELAY", &v)?;
        }
        if let Some(v) = var("OTEL_BSP_EXPORT_TIMEOUT") {
            batch.export_timeout = millis("OTEL_BSP_EXPORT_TIMEOUT", &v)?;
        }
        config.target = Target::Otlp(otlp);
        Ok(config)
    }

    /// Starts the sink, if there is one to start.
    pub(crate) fn open(
        &self,
        info: &ServiceInfo,
        resource_attributes: &[(String, String)],
        sink: &Sink,
    ) -> Result<Option<Arc<dyn SpanSink>>, BuildError> {
        // Without an exporter there are no export counters: a 0 would suggest one.
        if self.disabled || matches!(self.target, Target::None) {
            return Ok(None);
        }
        let batch = self.batch;
        if batch.max_queue_size == 0 || batch.max_export_batch_size == 0 {
            return Err(BuildError::setting(
                "batch_settings",
                "queue and batch sizes must be at least 1",
            ));
        }
        let worker = Worker {
            resource: resource(info, resource_attributes),
            batch,
            exported: sink.counter_at_zero(SPANS_EXPORTED),
            dropped: Arc::new(crate::delivery::Dropped::register(sink, SPANS_DROPPED)),
        };
        match &self.target {
            Target::None => Ok(None),
            Target::Otlp(settings) => {
                let settings = settings.clone();
                queue::spawn(worker, "otlp", move |worker: &Worker| {
                    OtlpBackend::new(&settings, worker)
                })
                .map(Some)
            }
            Target::Custom(pending) => {
                let spawn = pending
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .ok_or_else(|| {
                        BuildError::setting(
                            "span_exporter",
                            "an exporter can start one layer only; give each build() its own",
                        )
                    })?;
                spawn(worker).map(Some)
            }
        }
    }
}

fn check_url(var: &str, v: String) -> Result<String, BuildError> {
    let v = v.trim().to_owned();
    match v.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() && uri.host().is_some() => Ok(v),
        _ => Err(BuildError::env(
            var,
            &v,
            "expected a URL like http://collector:4318",
        )),
    }
}

/// `key=value,key2=value2` (W3C Baggage octets): values percent-decoded, empty members
/// skipped; every pair must make a valid header. Values are keys and tokens, so an error
/// names the key, never the value.
fn headers(var: &str, v: &str) -> Result<Vec<(String, String)>, BuildError> {
    const HIDDEN: &str = "(not shown: it may hold a secret)";
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(BuildError::env(var, HIDDEN, "expected key=value pairs"));
        };
        let key = key.trim().to_ascii_lowercase();
        let bad = |what: &str| BuildError::env(var, HIDDEN, format!("{what} for key {key:?}"));
        if http::HeaderName::from_bytes(key.as_bytes()).is_err() {
            return Err(bad("not a header name"));
        }
        let value =
            crate::percent::decode_strict(value.trim()).ok_or_else(|| bad("a bad %-escape"))?;
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(bad("a value that cannot be a header"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn millis(var: &str, v: &str) -> Result<Duration, BuildError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| BuildError::env(var, v, "expected milliseconds"))
}

fn count(var: &str, v: &str) -> Result<usize, BuildError> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| BuildError::env(var, v, "expected a whole number from 1 to 1000000"))
}

/// The resource attributes: what `OTEL_RESOURCE_ATTRIBUTES` said, then the service's
/// identity over it (a key appears once; the service's value wins).
fn resource(info: &ServiceInfo, extra: &[(String, String)]) -> Vec<(String, String)> {
    let own = [
        ("service.name", info.name.as_str()),
        ("service.version", info.version.as_str()),
        ("deployment.environment.name", info.environment.as_str()),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.name", "tower-observability"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    extra
        .iter()
        .filter(|(k, _)| !own.iter().any(|(o, _)| o == k))
        .cloned()
        .chain(own.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<ExportConfig, BuildError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportConfig::from_env(&move |k: &str| map.get(k).cloned())
    }

    fn otlp(c: &ExportConfig) -> &OtlpSettings {
        match &c.target {
            Target::Otlp(settings) => settings,
            other => panic!("expected OTLP, got {other:?}"),
        }
    }

    #[test]
    fn standard_variables() {
        // Unset: OTLP over HTTP/protobuf to the default endpoint, as the specification says.
        let c = config(&[]).unwrap();
        assert_eq!(otlp(&c), &OtlpSettings::default());
        assert_eq!(c.batch, BatchSettings::default());

        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(
            otlp(&c).endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .unwrap();
        assert_eq!(otlp(&c).protocol, OtlpProtocol::Grpc);
        assert_eq!(otlp(&c).endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(otlp(&c).timeout, Duration::from_millis(2500));
        // The per-signal variables win, and their endpoint is taken as it is.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9999/traces"),
        ])
        .unwrap();
        assert_eq!(otlp(&c).protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(otlp(&c).endpoint.as_deref(), Some("http://b:9999/traces"));
        let c = config(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
        ])
        .unwrap();
        assert_eq!(
            c.batch,
            BatchSettings {
                max_queue_size: 100,
                max_export_batch_size: 10,
                scheduled_delay: Duration::from_millis(250),
                export_timeout: Duration::from_secs(1),
            }
        );
        assert!(matches!(
            config(&[("OTEL_TRACES_EXPORTER", "none")]).unwrap().target,
            Target::None
        ));
        assert!(config(&[("OTEL_SDK_DISABLED", "true")]).unwrap().disabled);
        // Compression is not done, but asking for it does not stop the service.
        assert!(config(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]).is_ok());
    }

    #[test]
    fn export_headers_are_baggage_style_and_percent_decoded() {
        let c = config(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            " api-key = s%3Dcr%2Ct ,, X-Tenant=acme%20eu",
        )])
        .unwrap();
        assert_eq!(
            otlp(&c).headers,
            [
                ("api-key".to_owned(), "s=cr,t".to_owned()),
                ("x-tenant".to_owned(), "acme eu".to_owned())
            ]
        );
        // The per-signal variable wins over the generic one.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
        ])
        .unwrap();
        assert_eq!(otlp(&c).headers, [("b".to_owned(), "2".to_owned())]);
        for bad in ["novalue", "bad key=1", "k=%zz", "k=a%0Ab"] {
            let err = config(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("OTEL_EXPORTER_OTLP_TRACES_HEADERS"), "{err}");
        }
        // A secret in a bad list is not echoed in the error.
        let err = config(&[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=sekrit%zz")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("sekrit") && err.contains("api-key"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "carrier-pigeon"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "-1"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_SDK_DISABLED", "perhaps"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }
}
