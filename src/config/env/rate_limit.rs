//! `OBSERVABILITY_RATE_LIMIT*`: one policy from the environment, parsed into
//! [`RateLimit`] for the builder.

use crate::error::BuildError;
use crate::rate_limit::{Fallback, Key, Mode, Policy, Quota, RateLimit};

/// `OBSERVABILITY_RATE_LIMIT` (a quota: turns rate limiting on), refined by
/// `OBSERVABILITY_RATE_LIMIT_KEY`, `_MODE`, `_REDIS_URL` and `_FALLBACK`: read through `var`
/// (empty values count as unset). The refinements without a quota are an error naming them.
pub(super) fn rate_limit(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<RateLimit>, BuildError> {
    const QUOTA: &str = "OBSERVABILITY_RATE_LIMIT";
    const KEY: &str = "OBSERVABILITY_RATE_LIMIT_KEY";
    const MODE: &str = "OBSERVABILITY_RATE_LIMIT_MODE";
    const REDIS_URL: &str = "OBSERVABILITY_RATE_LIMIT_REDIS_URL";
    const FALLBACK: &str = "OBSERVABILITY_RATE_LIMIT_FALLBACK";
    let Some(quota) = var(QUOTA) else {
        return match [KEY, MODE, REDIS_URL, FALLBACK]
            .iter()
            .find_map(|r| var(r).map(|v| (r, v)))
        {
            Some((refine, v)) => {
                let shown = if *refine == REDIS_URL { "<hidden>" } else { &v };
                Err(BuildError::env(
                    refine,
                    shown,
                    format!("needs {QUOTA}: there is no rate limit to refine"),
                ))
            }
            None => Ok(None),
        };
    };
    Quota::parse(&quota).map_err(|e| BuildError::env(QUOTA, &quota, e))?;
    let mut policy = Policy::new("default", quota.trim());
    if let Some(key) = var(KEY) {
        policy = policy.key(Key::parse(&key).map_err(|e| BuildError::env(KEY, &key, e))?);
        if let Key::Header(name) = &policy.key {
            crate::rate_limit::key::KeyKind::compile(&Key::Header(name.clone()))
                .map_err(|e| BuildError::env(KEY, &key, e))?;
        }
    }
    let mut limits = RateLimit::new(policy);
    if let Some(mode) = var(MODE) {
        limits.mode = match mode.trim().to_ascii_lowercase().as_str() {
            "enforce" => Mode::Enforce,
            "shadow" => Mode::Shadow,
            _ => return Err(BuildError::env(MODE, &mode, "expected enforce or shadow")),
        };
    }
    let fallback = match var(FALLBACK) {
        Some(v) => Some(
            Fallback::parse(&v)
                .ok_or_else(|| BuildError::env(FALLBACK, &v, "expected open, closed or local"))?,
        ),
        None => None,
    };
    if let Some(url) = var(REDIS_URL) {
        redis_from_env(&mut limits, url.trim(), fallback)?;
    } else if fallback.is_some() {
        return Err(BuildError::env(
            FALLBACK,
            &var(FALLBACK).unwrap_or_default(),
            format!("needs {REDIS_URL}: there is no backend to fall back from"),
        ));
    }
    Ok(Some(limits))
}

#[cfg(feature = "redis")]
fn redis_from_env(
    limits: &mut RateLimit,
    url: &str,
    fallback: Option<Fallback>,
) -> Result<(), BuildError> {
    // The URL may hold a password: never repeated in the error.
    crate::rate_limit::redis::check_url(url)
        .map_err(|e| BuildError::env("OBSERVABILITY_RATE_LIMIT_REDIS_URL", "<hidden>", e))?;
    let settings = limits.redis_settings();
    settings.url = url.to_owned();
    if let Some(fallback) = fallback {
        settings.fallback = fallback;
    }
    Ok(())
}

/// Without the `redis` feature a Redis URL cannot be used: said once at `build()`, with
/// every variable of a feature this build does not have.
#[cfg(not(feature = "redis"))]
fn redis_from_env(
    _limits: &mut RateLimit,
    _url: &str,
    _fallback: Option<Fallback>,
) -> Result<(), BuildError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Option<RateLimit>, BuildError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        rate_limit(&|k: &str| map.get(k).cloned().filter(|v| !v.trim().is_empty()))
    }

    fn var_of(err: BuildError) -> String {
        match err {
            BuildError::InvalidEnv { var, .. } => var,
            other => panic!("expected an environment error, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_rate_limit_variables() {
        assert!(from(&[]).unwrap().is_none());
        let limits = from(&[
            ("OBSERVABILITY_RATE_LIMIT", "100/s;burst=200"),
            ("OBSERVABILITY_RATE_LIMIT_KEY", "header:X-Api-Key"),
            ("OBSERVABILITY_RATE_LIMIT_MODE", "Shadow"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(limits.policies[0].quota, "100/s;burst=200");
        assert_eq!(limits.policies[0].key, Key::Header("x-api-key".into()));
        assert_eq!(limits.mode, Mode::Shadow);
        assert!(limits.check().is_ok());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("OBSERVABILITY_RATE_LIMIT", "lots"),
            ("OBSERVABILITY_RATE_LIMIT", "100/s;burst=0"),
            ("OBSERVABILITY_RATE_LIMIT_KEY", "cookie"),
            ("OBSERVABILITY_RATE_LIMIT_KEY", "header:bad name"),
            ("OBSERVABILITY_RATE_LIMIT_MODE", "strict"),
            ("OBSERVABILITY_RATE_LIMIT_FALLBACK", "sideways"),
        ] {
            let mut vars = vec![("OBSERVABILITY_RATE_LIMIT", "10/s")];
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            assert_eq!(var_of(from(&vars).unwrap_err()), var, "{var}={value}");
        }
        // A refinement without a quota says what it needs.
        let err = from(&[("OBSERVABILITY_RATE_LIMIT_MODE", "shadow")]).unwrap_err();
        assert!(
            err.to_string().contains("needs OBSERVABILITY_RATE_LIMIT"),
            "{err}"
        );
        let err = from(&[(
            "OBSERVABILITY_RATE_LIMIT_REDIS_URL",
            "redis://user:hunter2@host/0",
        )])
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = from(&[
            ("OBSERVABILITY_RATE_LIMIT", "10/s"),
            ("OBSERVABILITY_RATE_LIMIT_FALLBACK", "local"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn reads_the_redis_url_and_hides_it_when_wrong() {
        let limits = from(&[
            ("OBSERVABILITY_RATE_LIMIT", "10/s"),
            (
                "OBSERVABILITY_RATE_LIMIT_REDIS_URL",
                "redis://127.0.0.1:6379/2",
            ),
            ("OBSERVABILITY_RATE_LIMIT_FALLBACK", "closed"),
        ])
        .unwrap()
        .unwrap();
        let redis = limits.redis.unwrap();
        assert_eq!(redis.url, "redis://127.0.0.1:6379/2");
        assert_eq!(redis.fallback, Fallback::Closed);
        assert_eq!(redis.timeout, crate::rate_limit::DEFAULT_REDIS_TIMEOUT);
        let err = from(&[
            ("OBSERVABILITY_RATE_LIMIT", "10/s"),
            (
                "OBSERVABILITY_RATE_LIMIT_REDIS_URL",
                "http://user:hunter2@x/",
            ),
        ])
        .unwrap_err();
        assert_eq!(var_of(err.clone()), "OBSERVABILITY_RATE_LIMIT_REDIS_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
