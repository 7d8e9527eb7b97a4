//! The metrics variables: native histograms (`OBSERVABILITY_NATIVE_HISTOGRAMS`,
//! `..._SCHEMA`, `..._MAX_BUCKETS`) and, with the `otlp` feature, the OTLP metrics push
//! (`OTEL_METRICS_EXPORTER`, `OTEL_EXPORTER_OTLP_(METRICS_)*`, `OTEL_METRIC_EXPORT_*`,
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`), parsed into the settings types and
//! handed to the builder's own setters, which `check()` validates.

use crate::config::ObservabilityBuilder;
use crate::error::BuildError;
use crate::metrics::NativeHistograms;
#[cfg(feature = "otlp")]
use {
    super::otlp::{check_url, headers, millis},
    crate::metrics::{MetricsPush, Temporality},
    crate::trace::OtlpProtocol,
};

const NATIVE: &str = "OBSERVABILITY_NATIVE_HISTOGRAMS";
const SCHEMA: &str = "OBSERVABILITY_NATIVE_HISTOGRAM_SCHEMA";
const MAX_BUCKETS: &str = "OBSERVABILITY_NATIVE_HISTOGRAM_MAX_BUCKETS";

/// Applies the metrics variables over `builder`.
pub(super) fn apply(
    mut builder: ObservabilityBuilder,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<ObservabilityBuilder, BuildError> {
    if let Some(native) = native(var)? {
        for name in [NATIVE, SCHEMA, MAX_BUCKETS] {
            if let Some(v) = var(name) {
                builder.origins.note("native_histograms", name, &v);
            }
        }
        builder = builder.native_histograms(native);
    }
    #[cfg(feature = "otlp")]
    if let Some(push) = push(var)? {
        builder = builder.otlp_metrics(push);
    }
    #[cfg(not(feature = "otlp"))]
    if var("OTEL_METRICS_EXPORTER").is_some_and(|v| v.split(',').any(|e| e.trim() == "otlp")) {
        builder.origins.inert("OTEL_METRICS_EXPORTER", "otlp");
    }
    Ok(builder)
}

/// Native histograms: on with `OBSERVABILITY_NATIVE_HISTOGRAMS=true`, or with a schema or
/// bucket limit alone; an error to tune them while saying `false`.
fn native(var: &impl Fn(&str) -> Option<String>) -> Result<Option<NativeHistograms>, BuildError> {
    let on = var(NATIVE)
        .map(|v| super::boolean(NATIVE, &v))
        .transpose()?;
    let (schema, max_buckets) = (var(SCHEMA), var(MAX_BUCKETS));
    if on == Some(false) {
        if let Some((name, v)) = [(SCHEMA, &schema), (MAX_BUCKETS, &max_buckets)]
            .into_iter()
            .find_map(|(name, v)| v.as_ref().map(|v| (name, v)))
        {
            return Err(BuildError::env(
                name,
                v,
                format!("has no effect with {NATIVE}=false"),
            ));
        }
        return Ok(None);
    }
    if on.is_none() && schema.is_none() && max_buckets.is_none() {
        return Ok(None);
    }
    let mut native = NativeHistograms::default();
    if let Some(v) = schema {
        let schema = v
            .trim()
            .parse()
            .map_err(|_| BuildError::env(SCHEMA, &v, "expected a whole number from -4 to 8"))?;
        native = native.schema(schema);
    }
    if let Some(v) = max_buckets {
        let max = v
            .trim()
            .parse()
            .map_err(|_| BuildError::env(MAX_BUCKETS, &v, "expected a whole number from 1"))?;
        native = native.max_buckets(max);
    }
    Ok(Some(native))
}

/// The OTLP metrics push, when `OTEL_METRICS_EXPORTER` includes `otlp`.
#[cfg(feature = "otlp")]
fn push(var: &impl Fn(&str) -> Option<String>) -> Result<Option<MetricsPush>, BuildError> {
    const EXPORTER: &str = "OTEL_METRICS_EXPORTER";
    let Some(exporters) = var(EXPORTER) else {
        return Ok(None);
    };
    // `OTEL_SDK_DISABLED=true`: nothing is exported, whatever else is set.
    if let Some(v) = var("OTEL_SDK_DISABLED") {
        if super::boolean("OTEL_SDK_DISABLED", &v)? {
            return Ok(None);
        }
    }
    let mut otlp = false;
    for e in exporters
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match e {
            "otlp" => otlp = true,
            // Pull is always on: `/metrics` is what `prometheus` means here.
            "prometheus" | "none" => {}
            other => {
                return Err(BuildError::env(
                    EXPORTER,
                    other,
                    "this crate pushes with otlp (prometheus: /metrics, none: no push)",
                ))
            }
        }
    }
    if !otlp {
        return Ok(None);
    }
    let mut push = MetricsPush::default();
    let either = |specific: &str, generic: &str| {
        var(specific)
            .map(|v| (specific.to_owned(), v))
            .or_else(|| var(generic).map(|v| (generic.to_owned(), v)))
    };
    if let Some((name, v)) = either(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ) {
        push.otlp.protocol = match v.trim() {
            "grpc" => OtlpProtocol::Grpc,
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            _ => return Err(BuildError::env(&name, &v, "expected grpc or http/protobuf")),
        };
    }
    if let Some(v) = var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
        push.otlp.endpoint = Some(check_url("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", v)?);
    } else if let Some(v) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        let base = check_url("OTEL_EXPORTER_OTLP_ENDPOINT", v)?;
        push.otlp.endpoint = Some(match push.otlp.protocol {
            OtlpProtocol::Grpc => base,
            OtlpProtocol::HttpProtobuf => {
                format!("{}/v1/metrics", base.trim_end_matches('/'))
            }
        });
    }
    if let Some((name, v)) = either(
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ) {
        push.otlp.timeout = millis(&name, &v)?;
    }
    if let Some((name, v)) = either(
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ) {
        push.otlp.headers = headers(&name, &v)?;
    }
    for (name, target) in [
        ("OTEL_METRIC_EXPORT_INTERVAL", &mut push.interval),
        ("OTEL_METRIC_EXPORT_TIMEOUT", &mut push.export_timeout),
    ] {
        if let Some(v) = var(name) {
            *target = millis(name, &v)?;
            if target.is_zero() {
                return Err(BuildError::env(name, &v, "expected milliseconds above 0"));
            }
        }
    }
    const TEMPORALITY: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
    if let Some(v) = var(TEMPORALITY) {
        push.temporality = match v.trim().to_ascii_lowercase().as_str() {
            "cumulative" => Temporality::Cumulative,
            "delta" | "lowmemory" => Temporality::Delta,
            _ => {
                return Err(BuildError::env(
                    TEMPORALITY,
                    &v,
                    "expected cumulative, delta or lowmemory",
                ))
            }
        };
    }
    Ok(Some(push))
}

#[cfg(test)]
mod native_tests {
    use crate::metrics::NativeHistograms;

    fn from(vars: &[(&str, &str)]) -> Result<Option<NativeHistograms>, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        crate::Observability::from_env_with("svc", move |k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .map(|b| b.native_histograms)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_environment_turns_native_histograms_on_and_tunes_them() {
        assert_eq!(from(&[]).unwrap(), None);
        assert_eq!(
            from(&[("OBSERVABILITY_NATIVE_HISTOGRAMS", "true")]).unwrap(),
            Some(NativeHistograms::default())
        );
        assert_eq!(
            from(&[("OBSERVABILITY_NATIVE_HISTOGRAM_SCHEMA", "5")]).unwrap(),
            Some(NativeHistograms::default().schema(5))
        );
        assert_eq!(
            from(&[("OBSERVABILITY_NATIVE_HISTOGRAM_MAX_BUCKETS", "40")]).unwrap(),
            Some(NativeHistograms::default().max_buckets(40))
        );
        // Out of range: the builder's check refuses it, naming the variable.
        for (var, value) in [
            ("OBSERVABILITY_NATIVE_HISTOGRAMS", "perhaps"),
            ("OBSERVABILITY_NATIVE_HISTOGRAM_SCHEMA", "9"),
            ("OBSERVABILITY_NATIVE_HISTOGRAM_SCHEMA", "fine"),
            ("OBSERVABILITY_NATIVE_HISTOGRAM_MAX_BUCKETS", "0"),
        ] {
            let err = from(&[(var, value)]).unwrap_err();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
        let err = from(&[
            ("OBSERVABILITY_NATIVE_HISTOGRAMS", "false"),
            ("OBSERVABILITY_NATIVE_HISTOGRAM_SCHEMA", "2"),
        ])
        .unwrap_err();
        assert!(
            err.contains("OBSERVABILITY_NATIVE_HISTOGRAM_SCHEMA"),
            "{err}"
        );
    }
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn read(vars: &[(&str, &str)]) -> Result<Option<MetricsPush>, BuildError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        push(&move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn the_standard_variables_configure_the_push() {
        assert_eq!(read(&[]).unwrap(), None, "off unless asked");
        assert_eq!(
            read(&[("OTEL_METRICS_EXPORTER", "prometheus")]).unwrap(),
            None
        );
        let p = read(&[("OTEL_METRICS_EXPORTER", "otlp")]).unwrap().unwrap();
        assert_eq!(p, MetricsPush::default());
        assert_eq!(p.endpoint(), "http://localhost:4318/v1/metrics");
        let p = read(&[
            ("OTEL_METRICS_EXPORTER", "prometheus,otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "5000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=k"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(p.endpoint(), "http://collector:4318/v1/metrics");
        assert_eq!(p.interval, Duration::from_secs(15));
        assert_eq!(p.export_timeout, Duration::from_secs(5));
        assert_eq!(p.temporality, Temporality::Delta);
        assert_eq!(p.otlp.headers, [("api-key".to_owned(), "k".to_owned())]);
        // The metrics variables win over the generic ones.
        let p = read(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://b:4317"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(p.otlp.protocol, OtlpProtocol::Grpc);
        assert_eq!(p.endpoint(), "http://b:4317");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("OTEL_METRICS_EXPORTER", "statsd"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "collector:4318"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "60s"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "-1"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "sometimes",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "novalue"),
        ] {
            let mut vars = vec![(var, value)];
            if var != "OTEL_METRICS_EXPORTER" {
                vars.push(("OTEL_METRICS_EXPORTER", "otlp"));
            }
            let err = read(&vars).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }
}
