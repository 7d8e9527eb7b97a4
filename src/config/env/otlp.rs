//! `OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*`, `OTEL_TRACES_EXPORTER` and `OTEL_SDK_DISABLED`:
//! where spans go, parsed into [`OtlpSettings`] and [`BatchSettings`] for the builder.

use std::time::Duration;

use crate::config::ObservabilityBuilder;
use crate::error::BuildError;
use crate::trace::otlp::{ExportConfig, Target};
use crate::trace::{OtlpProtocol, OtlpSettings};

/// The queue variables, each of which sets part of the builder's `batch_settings`.
const BATCH_VARIABLES: [&str; 4] = [
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
];

/// Applies the OTLP variables over `builder` through its `otlp` and `batch_settings`.
pub(super) fn apply(
    mut builder: ObservabilityBuilder,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<ObservabilityBuilder, BuildError> {
    let config = export(var)?;
    // `OTEL_SDK_DISABLED` has no builder method: code that wants no export sets none.
    builder.export.disabled = config.disabled;
    if let Target::Otlp(settings) = config.target {
        builder = builder.otlp(settings);
    }
    builder = builder.batch_settings(config.batch);
    note_batch(&mut builder, var);
    Ok(builder)
}

/// Notes which queue variables set `batch_settings`, so its errors name one.
fn note_batch(builder: &mut ObservabilityBuilder, var: &impl Fn(&str) -> Option<String>) {
    for name in BATCH_VARIABLES {
        if let Some(v) = var(name) {
            builder.origins.note("batch_settings", name, &v);
        }
    }
}

fn export(var: &impl Fn(&str) -> Option<String>) -> Result<ExportConfig, BuildError> {
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
            "gzip" => warning!(
                target: "tower_observability::otlp",
                { variable = %name, },
                "{name}=gzip: gzip is not supported by the built-in OTLP exporter; spans are \
                 sent uncompressed"
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

pub(super) fn check_url(var: &str, v: String) -> Result<String, BuildError> {
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
pub(super) fn headers(var: &str, v: &str) -> Result<Vec<(String, String)>, BuildError> {
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

pub(super) fn millis(var: &str, v: &str) -> Result<Duration, BuildError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| BuildError::env(var, v, "expected milliseconds"))
}

/// A whole number; whether it is a size the queue takes is the builder's check.
fn count(var: &str, v: &str) -> Result<usize, BuildError> {
    v.trim()
        .parse::<usize>()
        .map_err(|_| BuildError::env(var, v, "expected a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::BatchSettings;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<ExportConfig, BuildError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let var = move |k: &str| map.get(k).cloned();
        let config = export(&var)?;
        // As `apply` does: the builder's check, naming the variable.
        let mut builder = crate::Observability::builder("test").batch_settings(config.batch);
        note_batch(&mut builder, &var);
        builder
            .export
            .check()
            .map_err(|e| builder.origins.name(e))?;
        Ok(config)
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
