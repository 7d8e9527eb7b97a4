//! Configuration from the environment: the OpenTelemetry variables the crate understands,
//! and its own `OBSERVABILITY_*` settings. An empty variable counts as unset, as the
//! OpenTelemetry specification says.
//!
//! Each variable is parsed into a value and handed to the same builder method a user
//! calls; what a value may be is checked once, by the builder, and an error about a value
//! read here names its variable ([`Origins`](super::Origins)). A variable for a cargo
//! feature this build does not have is said once at `build()`.

#[cfg(feature = "otlp")]
mod otlp;
mod rate_limit;

use super::builder::ObservabilityBuilder;
use crate::cors::Cors;
use crate::error::BuildError;
use crate::security_headers::SecurityHeaders;
use crate::trace::Sampler;

/// Variables that only a cargo feature reads, by feature and whether this build has it:
/// set in a build without it, they are said once at `build()`.
const FEATURE_VARIABLES: &[(&str, bool, &[&str])] = &[
    (
        "otlp",
        cfg!(feature = "otlp"),
        &[
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_TRACES_EXPORTER",
        ],
    ),
    ("sentry", cfg!(feature = "sentry"), &["SENTRY_DSN"]),
    (
        "redis",
        cfg!(feature = "redis"),
        &["OBSERVABILITY_RATE_LIMIT_REDIS_URL"],
    ),
];

/// Applies the environment, read through `lookup`, over `builder`, and checks what it set.
pub(crate) fn apply(
    mut builder: ObservabilityBuilder,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ObservabilityBuilder, BuildError> {
    let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

    if let Some(raw) = var("OTEL_RESOURCE_ATTRIBUTES") {
        let attributes = resource_attributes(&raw)?;
        let get = |key: &str| attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        if let Some(name) = get("service.name") {
            builder = builder.service_name(name);
        }
        if let Some(version) = get("service.version") {
            builder = builder.service_version(version);
        }
        // The older name of the environment; the newer one wins when both are given.
        if let Some(env) = get("deployment.environment.name").or(get("deployment.environment")) {
            builder = builder.environment(env);
        }
        builder.resource_attributes = attributes;
    }
    if let Some(name) = var("OTEL_SERVICE_NAME") {
        builder = builder.service_name(name);
    }
    if let Some(v) = var(ROUTE_LIMIT) {
        let limit = v.trim().parse().map_err(|_| {
            BuildError::env(ROUTE_LIMIT, &v, "expected a whole number from 1 to 100000")
        })?;
        builder = builder.route_limit(limit);
        builder.origins.note("route_limit", ROUTE_LIMIT, &v);
    }
    if let Some(v) = var(EXCLUDE_PATHS) {
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            builder = match item.strip_suffix('*') {
                Some(prefix) => builder.exclude_prefix(prefix),
                None => builder.exclude_path(item),
            };
        }
        builder.origins.note("exclude_path", EXCLUDE_PATHS, &v);
        builder.origins.note("exclude_prefix", EXCLUDE_PATHS, &v);
    }
    if let Some(v) = var(DURATION_BUCKETS) {
        builder = builder.duration_buckets(buckets(DURATION_BUCKETS, &v)?);
        builder
            .origins
            .note("duration_buckets", DURATION_BUCKETS, &v);
    }
    if let Some(v) = var(SIZE_BUCKETS) {
        builder = builder.size_buckets(buckets(SIZE_BUCKETS, &v)?);
        builder.origins.note("size_buckets", SIZE_BUCKETS, &v);
    }
    if let Some(v) = var("OBSERVABILITY_CATCH_PANICS") {
        builder = builder.catch_panics(boolean("OBSERVABILITY_CATCH_PANICS", &v)?);
    }
    if let Some(v) = var("OBSERVABILITY_OBSERVE_ADMIN_PATHS") {
        let observe = boolean("OBSERVABILITY_OBSERVE_ADMIN_PATHS", &v)?;
        builder = builder.observe_admin_paths(observe);
    }
    if let Some(v) = var("OBSERVABILITY_SECURITY_HEADERS") {
        builder = builder.security_headers(match v.trim().to_ascii_lowercase().as_str() {
            "api" => SecurityHeaders::api(),
            "web" => SecurityHeaders::web(),
            "off" | "none" => SecurityHeaders::none(),
            _ => {
                return Err(BuildError::env(
                    "OBSERVABILITY_SECURITY_HEADERS",
                    &v,
                    "expected api, web or off",
                ))
            }
        });
    }
    if let Some(cors) = cors(&var)? {
        builder = builder.cors(cors);
    }
    if let Some(v) = var(TRUSTED_PROXIES) {
        builder = builder.trusted_proxies(v.split(',').map(str::trim).filter(|s| !s.is_empty()));
        builder.origins.note("trusted_proxies", TRUSTED_PROXIES, &v);
    }
    if let Some(v) = var("OBSERVABILITY_FORWARDED_HEADER") {
        let header = crate::ForwardedHeader::parse(&v).ok_or_else(|| {
            BuildError::env(
                "OBSERVABILITY_FORWARDED_HEADER",
                &v,
                "expected x-forwarded-for or forwarded",
            )
        })?;
        builder = builder.forwarded_header(header);
    }
    if let Some(limits) = rate_limit::rate_limit(&var)? {
        builder = builder.rate_limit(limits);
    }
    if let Some(name) = var("OTEL_TRACES_SAMPLER") {
        let arg = var("OTEL_TRACES_SAMPLER_ARG");
        let sampler = Sampler::from_env(&name, arg.as_deref())
            .map_err(|reason| BuildError::env("OTEL_TRACES_SAMPLER", &name, reason))?;
        builder = builder.sampler(sampler);
    }
    if let Some(v) = var("OBSERVABILITY_TRACING") {
        builder = builder.tracing(boolean("OBSERVABILITY_TRACING", &v)?);
    }
    if let Some(v) = var("OBSERVABILITY_TRACERESPONSE") {
        builder = builder.traceresponse(boolean("OBSERVABILITY_TRACERESPONSE", &v)?);
    }
    if let Some(v) = var("OBSERVABILITY_TRUST_INBOUND_CONTEXT") {
        let trust = boolean("OBSERVABILITY_TRUST_INBOUND_CONTEXT", &v)?;
        builder = builder.trust_inbound_context(trust);
    }
    if let Some(v) = var(REQUEST_ID_HEADER) {
        builder = builder.request_id_header(match v.trim() {
            "none" | "off" => None,
            name => Some(name),
        });
        builder
            .origins
            .note("request_id_header", REQUEST_ID_HEADER, &v);
    }
    if let Some(v) = var("OBSERVABILITY_SHUTDOWN_TIMEOUT") {
        let timeout = crate::shutdown::parse_timeout(&v)
            .map_err(|reason| BuildError::env("OBSERVABILITY_SHUTDOWN_TIMEOUT", &v, reason))?;
        builder = builder.shutdown_timeout(timeout);
    }
    if let Some(v) = var("OBSERVABILITY_STRICT_ENV") {
        builder = builder.strict_env(boolean("OBSERVABILITY_STRICT_ENV", &v)?);
    }
    #[cfg(feature = "otlp")]
    {
        builder = otlp::apply(builder, &var)?;
    }
    #[cfg(feature = "sentry")]
    {
        builder = builder.sentry(sentry(&var)?);
        if var("SENTRY_DSN").is_some() {
            builder.origins.note_secret("sentry.dsn", "SENTRY_DSN");
        }
        if let Some(v) = var("SENTRY_SAMPLE_RATE") {
            builder
                .origins
                .note("sentry.sample_rate", "SENTRY_SAMPLE_RATE", &v);
        }
    }
    for &(feature, compiled, names) in FEATURE_VARIABLES {
        if !compiled {
            for name in names.iter().filter(|name| var(name).is_some()) {
                builder.origins.inert(name, feature);
            }
        }
    }
    // What the environment set is checked now, so a bad value fails `from_env` itself.
    builder.check().map_err(|e| builder.origins.name(e))?;
    Ok(builder)
}

const ROUTE_LIMIT: &str = "OBSERVABILITY_ROUTE_LIMIT";
const EXCLUDE_PATHS: &str = "OBSERVABILITY_EXCLUDE_PATHS";
const DURATION_BUCKETS: &str = "OBSERVABILITY_DURATION_BUCKETS";
const SIZE_BUCKETS: &str = "OBSERVABILITY_SIZE_BUCKETS";
const REQUEST_ID_HEADER: &str = "OBSERVABILITY_REQUEST_ID_HEADER";
const TRUSTED_PROXIES: &str = "OBSERVABILITY_TRUSTED_PROXIES";

/// The CORS policy from `OBSERVABILITY_CORS_*`, when `OBSERVABILITY_CORS_ALLOWED_ORIGINS`
/// is set; the other variables refine it and are an error without it.
fn cors(var: &impl Fn(&str) -> Option<String>) -> Result<Option<Cors>, BuildError> {
    const ORIGINS: &str = "OBSERVABILITY_CORS_ALLOWED_ORIGINS";
    const REFINE: [&str; 5] = [
        "OBSERVABILITY_CORS_ALLOWED_METHODS",
        "OBSERVABILITY_CORS_ALLOWED_HEADERS",
        "OBSERVABILITY_CORS_EXPOSED_HEADERS",
        "OBSERVABILITY_CORS_ALLOW_CREDENTIALS",
        "OBSERVABILITY_CORS_MAX_AGE",
    ];
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let Some(origins) = var(ORIGINS) else {
        return match REFINE.iter().find_map(|r| var(r).map(|v| (r, v))) {
            Some((refine, v)) => Err(BuildError::env(
                refine,
                &v,
                format!("needs {ORIGINS}: there is no CORS policy to refine"),
            )),
            None => Ok(None),
        };
    };
    // Compiled after each step, so an error names the variable that made it.
    let check = |cors: &Cors, var: &str, value: &str| {
        cors.compile()
            .map(drop)
            .map_err(|e| BuildError::env(var, value, e.to_string()))
    };
    let mut cors = Cors::allow_origins(list(&origins));
    check(&cors, ORIGINS, &origins)?;
    if let Some(v) = var(REFINE[0]) {
        cors = cors.allow_methods(list(&v));
        check(&cors, REFINE[0], &v)?;
    }
    if let Some(v) = var(REFINE[1]) {
        cors = cors.allow_headers(list(&v));
        check(&cors, REFINE[1], &v)?;
    }
    if let Some(v) = var(REFINE[2]) {
        cors = cors.expose_headers(list(&v));
        check(&cors, REFINE[2], &v)?;
    }
    if let Some(v) = var(REFINE[3]) {
        cors = cors.allow_credentials(boolean(REFINE[3], &v)?);
        // Credentials forbid the `*` the variables above may hold.
        check(&cors, REFINE[3], &v)?;
    }
    if let Some(v) = var(REFINE[4]) {
        let secs = v.trim().parse::<u64>().ok().filter(|s| *s <= 86_400);
        let secs = secs.ok_or_else(|| {
            BuildError::env(REFINE[4], &v, "expected whole seconds from 0 to 86400")
        })?;
        cors = cors.max_age(std::time::Duration::from_secs(secs));
        check(&cors, REFINE[4], &v)?;
    }
    Ok(Some(cors))
}

/// The [`Sentry`](crate::Sentry) settings `SENTRY_DSN`, `SENTRY_ENVIRONMENT`,
/// `SENTRY_RELEASE` and `SENTRY_SAMPLE_RATE` make (reporting off without a DSN).
#[cfg(feature = "sentry")]
pub(crate) fn sentry(var: &impl Fn(&str) -> Option<String>) -> Result<crate::Sentry, BuildError> {
    let mut sentry = match var("SENTRY_DSN") {
        Some(dsn) => crate::Sentry::dsn(dsn),
        None => crate::Sentry::default(),
    };
    if let Some(environment) = var("SENTRY_ENVIRONMENT") {
        sentry = sentry.environment(environment);
    }
    if let Some(release) = var("SENTRY_RELEASE") {
        sentry = sentry.release(release);
    }
    if let Some(rate) = var("SENTRY_SAMPLE_RATE") {
        let parsed = rate.trim().parse().map_err(|_| {
            BuildError::env(
                "SENTRY_SAMPLE_RATE",
                &rate,
                "expected a number from 0.0 to 1.0",
            )
        })?;
        sentry = sentry.sample_rate(parsed);
    }
    Ok(sentry)
}

/// `key1=value1,key2=value2`, values percent-encoded (W3C Baggage octets).
fn resource_attributes(raw: &str) -> Result<Vec<(String, String)>, BuildError> {
    const VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| BuildError::env(VAR, raw, format!("{item:?} is not key=value")))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(BuildError::env(
                VAR,
                raw,
                format!("{item:?} has an empty key"),
            ));
        }
        let value = crate::percent::decode_strict(value.trim())
            .ok_or_else(|| BuildError::env(VAR, raw, format!("{item:?} has a bad %-escape")))?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// A comma-separated list of numbers; whether they make buckets is the builder's check.
fn buckets(var: &str, raw: &str) -> Result<Vec<f64>, BuildError> {
    raw.split(',')
        .map(|b| {
            b.trim()
                .parse::<f64>()
                .map_err(|_| BuildError::env(var, raw, format!("{:?} is not a number", b.trim())))
        })
        .collect()
}

/// `true`/`false` and their usual spellings.
pub(crate) fn boolean(var: &str, raw: &str) -> Result<bool, BuildError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(BuildError::env(var, raw, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Observability;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<ObservabilityBuilder, BuildError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Observability::from_env_with("fallback", move |k| map.get(k).cloned())
    }

    #[test]
    fn reads_the_opentelemetry_variables() {
        let b = from(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.version=1.2.3, deployment.environment.name=prod%20eu,team=x",
            ),
            ("OTEL_SERVICE_NAME", "checkout"),
        ])
        .unwrap();
        assert_eq!(b.service_name, "checkout");
        assert_eq!(b.service_version.as_deref(), Some("1.2.3"));
        assert_eq!(b.environment.as_deref(), Some("prod eu"));
        let b = from(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=billing")]).unwrap();
        assert_eq!(b.service_name, "billing");
        let b = from(&[("OTEL_SERVICE_NAME", "")]).unwrap();
        assert_eq!(b.service_name, "fallback");
    }

    #[test]
    fn reads_the_crates_own_variables() {
        let b = from(&[
            ("OBSERVABILITY_ROUTE_LIMIT", "50"),
            ("OBSERVABILITY_EXCLUDE_PATHS", "/ping, /internal/*"),
            ("OBSERVABILITY_DURATION_BUCKETS", "0.1,0.5,1"),
            ("OBSERVABILITY_CATCH_PANICS", "false"),
        ])
        .unwrap();
        assert_eq!(b.route_limit, 50);
        assert_eq!(b.excluded, ["/ping"]);
        assert_eq!(b.excluded_prefixes, ["/internal/"]);
        assert_eq!(b.duration_buckets, [0.1, 0.5, 1.0]);
        assert!(!b.catch_panics);
        let b = from(&[("OBSERVABILITY_SHUTDOWN_TIMEOUT", "1500ms")]).unwrap();
        assert_eq!(b.shutdown_timeout, std::time::Duration::from_millis(1500));
    }

    #[test]
    fn reads_the_cors_allowlist_and_header_preset() {
        let b = from(&[
            (
                "OBSERVABILITY_CORS_ALLOWED_ORIGINS",
                " https://app.example.com, http://localhost:3000,,",
            ),
            ("OBSERVABILITY_SECURITY_HEADERS", "Web"),
        ])
        .unwrap();
        let cors = format!("{:?}", b.cors.as_ref().unwrap());
        assert!(cors.contains("\"https://app.example.com\", \"http://localhost:3000\"]"));
        let web = format!("{:?}", b.security_headers);
        assert!(web.contains("origin-agent-cluster"));
        let b = from(&[
            (
                "OBSERVABILITY_CORS_ALLOWED_ORIGINS",
                "https://app.example.com",
            ),
            ("OBSERVABILITY_CORS_ALLOWED_METHODS", "GET, PUT"),
            (
                "OBSERVABILITY_CORS_ALLOWED_HEADERS",
                "content-type,x-request-id",
            ),
            ("OBSERVABILITY_CORS_EXPOSED_HEADERS", "x-trace-id"),
            ("OBSERVABILITY_CORS_ALLOW_CREDENTIALS", "true"),
            ("OBSERVABILITY_CORS_MAX_AGE", "600"),
        ])
        .unwrap();
        let cors = format!("{:?}", b.cors.as_ref().unwrap());
        for part in [
            "\"PUT\"",
            "\"x-request-id\"",
            "\"x-trace-id\"",
            "credentials: true",
            "600s",
        ] {
            assert!(cors.contains(part), "{part} in {cors}");
        }
        let b = from(&[("OBSERVABILITY_SECURITY_HEADERS", "off")]).unwrap();
        let trusted = crate::client_address::TrustedProxies::default();
        assert!(b.security_headers.compile(&trusted).unwrap().is_none());
    }

    /// The variable a CORS error names, with the allowlist set and `vars` on top.
    fn cors_error_var(vars: &[(&str, &str)]) -> String {
        let mut all = vec![("OBSERVABILITY_CORS_ALLOWED_ORIGINS", "https://a.test")];
        all.extend_from_slice(vars);
        match from(&all) {
            Err(BuildError::InvalidEnv { var, .. }) => var,
            other => panic!("{vars:?}: expected an environment error, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_cors_refinement_names_its_own_variable() {
        for (var, value) in [
            ("OBSERVABILITY_CORS_ALLOW_CREDENTIALS", "sometimes"),
            ("OBSERVABILITY_CORS_MAX_AGE", "1h"),
            ("OBSERVABILITY_CORS_ALLOWED_METHODS", "GE T"),
            ("OBSERVABILITY_CORS_ALLOWED_METHODS", "GET,PO(ST"),
            ("OBSERVABILITY_CORS_ALLOWED_HEADERS", "content-type,x bad"),
            (
                "OBSERVABILITY_CORS_EXPOSED_HEADERS",
                "x-trace-id,\u{e9}t\u{e9}",
            ),
        ] {
            assert_eq!(cors_error_var(&[(var, value)]), var, "{var}={value}");
        }
        // Credentials with a `*` elsewhere: the credentials are what make it wrong.
        for wildcard in [
            "OBSERVABILITY_CORS_ALLOWED_METHODS",
            "OBSERVABILITY_CORS_ALLOWED_HEADERS",
            "OBSERVABILITY_CORS_EXPOSED_HEADERS",
        ] {
            let vars = [
                (wildcard, "*"),
                ("OBSERVABILITY_CORS_ALLOW_CREDENTIALS", "true"),
            ];
            assert_eq!(
                cors_error_var(&vars),
                "OBSERVABILITY_CORS_ALLOW_CREDENTIALS",
                "{wildcard}=*"
            );
            // Without credentials the same `*` is a valid policy.
            let mut all = vec![("OBSERVABILITY_CORS_ALLOWED_ORIGINS", "https://a.test")];
            all.push((wildcard, "*"));
            assert!(from(&all).is_ok(), "{wildcard}=*");
        }
        // A bad origin is still the allowlist's fault, even with every refinement set.
        let err = from(&[
            ("OBSERVABILITY_CORS_ALLOWED_ORIGINS", "https://a.test/path"),
            ("OBSERVABILITY_CORS_ALLOWED_METHODS", "GET"),
            ("OBSERVABILITY_CORS_ALLOWED_HEADERS", "content-type"),
        ]);
        assert!(
            matches!(&err, Err(BuildError::InvalidEnv { var, .. }) if var == "OBSERVABILITY_CORS_ALLOWED_ORIGINS"),
            "{err:?}"
        );
    }

    #[test]
    fn reads_the_trusted_proxies_and_the_rate_limit() {
        let b = from(&[
            ("OBSERVABILITY_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8"),
            ("OBSERVABILITY_FORWARDED_HEADER", "Forwarded"),
            ("OBSERVABILITY_RATE_LIMIT", "100/s;burst=200"),
            ("OBSERVABILITY_RATE_LIMIT_KEY", "ip"),
        ])
        .unwrap();
        assert_eq!(b.trusted_proxies, ["10.0.0.0/8", "fd00::/8"]);
        assert_eq!(b.forwarded_header, crate::ForwardedHeader::Forwarded);
        let limits = b.rate_limit.as_ref().unwrap();
        assert_eq!(limits.policies[0].quota, "100/s;burst=200");
        assert!(b.build().is_ok());
    }

    #[test]
    fn reads_the_tracing_variables() {
        let b = from(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("OBSERVABILITY_TRACERESPONSE", "true"),
            ("OBSERVABILITY_TRUST_INBOUND_CONTEXT", "false"),
            ("OBSERVABILITY_REQUEST_ID_HEADER", "x-correlation-id"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "team=payments,service.version=2",
            ),
        ])
        .unwrap();
        assert_eq!(
            b.sampler,
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.1)))
        );
        assert!(b.traceresponse && !b.trust_inbound_context);
        assert_eq!(b.request_id_header.as_deref(), Some("x-correlation-id"));
        assert_eq!(b.resource_attributes.len(), 2);
        let b = from(&[("OBSERVABILITY_REQUEST_ID_HEADER", "none")]).unwrap();
        assert_eq!(b.request_id_header, None);
        for (var, value) in [
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OBSERVABILITY_TRACERESPONSE", "perhaps"),
        ] {
            let err = from(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
        let err = from(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("OBSERVABILITY_ROUTE_LIMIT", "-1"),
            ("OBSERVABILITY_ROUTE_LIMIT", "1e9"),
            ("OBSERVABILITY_EXCLUDE_PATHS", "metrics"),
            ("OBSERVABILITY_DURATION_BUCKETS", "0.1,fast"),
            ("OBSERVABILITY_CATCH_PANICS", "maybe"),
            ("OBSERVABILITY_SHUTDOWN_TIMEOUT", "soon"),
            ("OBSERVABILITY_SECURITY_HEADERS", "strict"),
            (
                "OBSERVABILITY_CORS_ALLOWED_ORIGINS",
                "https://app.example.com/",
            ),
            ("OBSERVABILITY_CORS_ALLOWED_ORIGINS", "*"),
            ("OBSERVABILITY_CORS_ALLOWED_ORIGINS", "https://a.test,null"),
            ("OBSERVABILITY_CORS_ALLOWED_HEADERS", "content-type"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.version"),
            ("OTEL_RESOURCE_ATTRIBUTES", "=x"),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=%zz"),
            ("OBSERVABILITY_TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal"),
            ("OBSERVABILITY_FORWARDED_HEADER", "x-real-ip"),
            ("OBSERVABILITY_RATE_LIMIT", "100 per second"),
        ] {
            let err = from(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
        // Values that parse but make no sense: the builder's one check, naming the
        // variable, whether they come out of the range or out of order.
        for (var, value, reason) in [
            ("OBSERVABILITY_DURATION_BUCKETS", "1,0.5", "increasing"),
            ("OBSERVABILITY_ROUTE_LIMIT", "0", "outside"),
            ("OBSERVABILITY_ROUTE_LIMIT", "100001", "outside"),
            (
                "OBSERVABILITY_REQUEST_ID_HEADER",
                "x request",
                "header name",
            ),
        ] {
            let err = from(&[(var, value)]).unwrap_err();
            assert!(
                matches!(&err, BuildError::InvalidEnv { var: v, reason: r, .. } if v == var && r.contains(reason)),
                "{var}={value}: {err:?}"
            );
        }
    }

    #[cfg(feature = "sentry")]
    #[test]
    fn reads_the_sentry_variables_and_names_them_when_wrong() {
        let b = from(&[
            ("SENTRY_DSN", "http://public@127.0.0.1:9/3"),
            ("SENTRY_ENVIRONMENT", "prod"),
            ("SENTRY_RELEASE", "checkout@2.0.1"),
            ("SENTRY_SAMPLE_RATE", "0.25"),
        ])
        .unwrap();
        assert_eq!(b.sentry.dsn.as_deref(), Some("http://public@127.0.0.1:9/3"));
        assert_eq!(b.sentry.environment.as_deref(), Some("prod"));
        assert_eq!(b.sentry.release.as_deref(), Some("checkout@2.0.1"));
        assert_eq!(b.sentry.sample_rate, 0.25);
        // An empty DSN is unset: reporting off, as the Sentry SDKs read it.
        assert_eq!(from(&[("SENTRY_DSN", " ")]).unwrap().sentry.dsn, None);
        for (var, value) in [
            ("SENTRY_DSN", "not a dsn"),
            ("SENTRY_DSN", "http://127.0.0.1/3"),
            ("SENTRY_SAMPLE_RATE", "2"),
            ("SENTRY_SAMPLE_RATE", "half"),
        ] {
            let err = from(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
        let err = from(&[("SENTRY_DSN", "https://key@o1.ingest.sentry.io/5")])
            .unwrap()
            .metrics_backend(crate::MetricsBackend::IsolatedPrometheus)
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SENTRY_DSN")
                && err.contains("Sentry::transport")
                && !err.contains("key@"),
            "{err}"
        );
    }

    /// The messages of the warnings logged while `f` runs.
    #[cfg(not(all(feature = "otlp", feature = "sentry")))]
    fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::{Context, SubscriberExt};

        #[derive(Clone, Default)]
        struct Warnings(Arc<Mutex<Vec<String>>>);
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    *self.0 = format!("{value:?}");
                }
            }
        }
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                if *event.metadata().level() == tracing::Level::WARN {
                    let mut message = String::new();
                    event.record(&mut Message(&mut message));
                    self.0.lock().unwrap().push(message);
                }
            }
        }
        let warnings = Warnings::default();
        let subscriber = tracing_subscriber::registry().with(warnings.clone());
        let out = tracing::subscriber::with_default(subscriber, f);
        let seen = warnings.0.lock().unwrap().clone();
        (out, seen)
    }

    #[cfg(not(feature = "sentry"))]
    #[test]
    fn a_variable_for_a_feature_not_built_in_is_said_once_at_build() {
        let vars = [("SENTRY_DSN", "http://key@127.0.0.1:9/1")];
        let build = || {
            from(&vars)
                .unwrap()
                .metrics_backend(crate::MetricsBackend::IsolatedPrometheus)
                .build()
        };
        let (built, warnings) = warnings_of(build);
        assert!(built.is_ok());
        let named: Vec<_> = warnings
            .iter()
            .filter(|w| w.contains("SENTRY_DSN") && w.contains("`sentry` cargo feature"))
            .collect();
        assert_eq!(named.len(), 1, "{warnings:?}");
        assert!(
            !named[0].contains("key@"),
            "the DSN is not repeated: {named:?}"
        );
        // Strict: the same variable is an error naming it and the feature.
        let strict = [vars[0], ("OBSERVABILITY_STRICT_ENV", "true")];
        let err = from(&strict)
            .unwrap()
            .metrics_backend(crate::MetricsBackend::IsolatedPrometheus)
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("SENTRY_DSN") && text.contains("`sentry`"),
            "{text}"
        );
        assert!(!text.contains("key@"), "{text}");
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn otlp_variables_without_the_feature_are_said_once_each() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ];
        let build = || {
            from(&vars)
                .unwrap()
                .metrics_backend(crate::MetricsBackend::IsolatedPrometheus)
                .build()
        };
        let (built, warnings) = warnings_of(build);
        assert!(built.is_ok());
        for (var, _) in vars {
            let said = warnings
                .iter()
                .filter(|w| w.contains(var) && w.contains("`otlp`"));
            assert_eq!(said.count(), 1, "{var}: {warnings:?}");
        }
        // Nothing suggests spans are exported: no export counters at all.
        let obs = built.unwrap();
        assert!(!obs.render_metrics().contains("spans_exported"));
    }
}
