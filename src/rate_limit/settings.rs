//! The rate-limit settings: [`RateLimit`] and its [`Policy`]s in code, and the same from
//! `OBSERVABILITY_RATE_LIMIT*` variables.

use std::time::Duration;

use super::key::Key;
use super::quota::Quota;
use crate::error::BuildError;

/// The default cap on keys kept in memory.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// The default longest wait for a Redis decision before the fallback decides.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(20);
/// The default number of refusal log lines per second.
pub const DEFAULT_AUDIT_PER_SECOND: u32 = 10;
/// The most policies one layer applies (each request is checked against every one).
pub const MAX_POLICIES: usize = 8;

/// Rate limiting in the layer's one pass: one or more [`Policy`]s, in memory by default or
/// shared by every replica through Redis (feature `redis`).
///
/// A request over any policy's quota is answered by the layer with `429 Too Many Requests`,
/// `Retry-After`, the IETF `RateLimit-Policy` and `RateLimit` fields and an RFC 9457
/// problem body (gRPC: `RESOURCE_EXHAUSTED`), and never reaches the application. The 429
/// is in the RED metrics like any response, carries the security headers and the CORS
/// grant, and is counted in `tower_observability_rate_limited_total{policy, mode}`; a
/// sampled log line (target `tower_observability::rate_limit`) records the policy, route
/// and hashed key. CORS preflights answered by the layer, the admin paths and the paths
/// [excluded](Self::exclude_path) are not limited.
///
/// ```
/// use tower_observability::rate_limit::{Key, Policy, RateLimit};
/// use tower_observability::{MetricsBackend, Observability};
///
/// let limits = RateLimit::new(Policy::new("per-client", "100/s;burst=200"))
///     .policy(Policy::new("search", "20/s").key(Key::Global).only_routes(["/search"]))
///     .policy(Policy::new("per-api-key", "6000/min").key(Key::Header("x-api-key".into())));
/// let obs = Observability::builder("checkout")
///     .trusted_proxies(["10.0.0.0/8"]) // the load balancers: X-Forwarded-For is theirs
///     .rate_limit(limits)
/// #   .metrics_backend(MetricsBackend::IsolatedPrometheus)
///     .build()?;
/// # let _ = obs;
/// # Ok::<(), tower_observability::BuildError>(())
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub(crate) policies: Vec<Policy>,
    pub(crate) mode: Mode,
    pub(crate) redis: Option<RedisSettings>,
    pub(crate) excluded: Vec<String>,
    pub(crate) excluded_prefixes: Vec<String>,
    pub(crate) max_keys: usize,
    pub(crate) audit_per_second: u32,
    pub(crate) headers_on_admitted: bool,
}

/// Where decisions are shared: a Redis (or Valkey) server.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct RedisSettings {
    pub(crate) url: String,
    pub(crate) timeout: Duration,
    pub(crate) fallback: Fallback,
}

/// One quota and what it counts by.
#[must_use]
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) name: String,
    pub(crate) quota: String,
    pub(crate) key: Key,
    pub(crate) routes: Vec<String>,
}

impl Policy {
    /// A policy named `name` (the `policy` label of the metrics, the name in the
    /// `RateLimit` fields) allowing `quota`: `100/s`, `6000/min`, `10/5m`, with an
    /// optional burst (`100/s;burst=200`; default one second's worth, at least 1). Counted
    /// per [client address](Key::ClientAddress) unless [`key`](Self::key) says otherwise.
    pub fn new(name: impl Into<String>, quota: impl Into<String>) -> Self {
        Policy {
            name: name.into(),
            quota: quota.into(),
            key: Key::ClientAddress,
            routes: Vec::new(),
        }
    }

    /// What requests are counted by (default [`Key::ClientAddress`]).
    pub fn key(mut self, key: Key) -> Self {
        self.key = key;
        self
    }

    /// Applies the policy to these routes only (the layer's resolved routes, e.g.
    /// `/search` or `/users/{id}`): a tighter quota for an expensive endpoint.
    pub fn only_routes<I>(mut self, routes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.routes = routes.into_iter().map(Into::into).collect();
        self
    }
}

/// What the limiter does with a request over its quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Refuse it with a 429 (the default).
    #[default]
    Enforce,
    /// Let it through, but count it (`mode="shadow"`) and log it: to size a quota on real
    /// traffic before enforcing it.
    Shadow,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// How decisions are made while Redis cannot answer within the timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// Admit every request (the default): an outage of the limiter is not an outage of
    /// the service.
    #[default]
    Open,
    /// Refuse every request with `503 Service Unavailable` and `Retry-After: 1`.
    Closed,
    /// Decide in this replica's memory with the same policies (each replica then admits
    /// up to the whole quota).
    Local,
}

impl Fallback {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fallback::Open => "open",
            Fallback::Closed => "closed",
            Fallback::Local => "local",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Some(Fallback::Open),
            "closed" => Some(Fallback::Closed),
            "local" => Some(Fallback::Local),
            _ => None,
        }
    }
}

impl RateLimit {
    /// Rate limiting with one policy; add more with [`policy`](Self::policy).
    pub fn new(policy: Policy) -> Self {
        RateLimit {
            policies: vec![policy],
            mode: Mode::Enforce,
            redis: None,
            excluded: Vec::new(),
            excluded_prefixes: Vec::new(),
            max_keys: DEFAULT_MAX_KEYS,
            audit_per_second: DEFAULT_AUDIT_PER_SECOND,
            headers_on_admitted: false,
        }
    }

    /// Adds a policy: a request is admitted only if every policy that applies to it
    /// admits it (and a refused request uses up none of them).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push(policy);
        self
    }

    /// [`Mode::Enforce`] (default) or [`Mode::Shadow`].
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Keeps requests to exactly `path` out of rate limiting (the admin paths always are).
    pub fn exclude_path(mut self, path: impl Into<String>) -> Self {
        self.excluded.push(path.into());
        self
    }

    /// Keeps requests whose path starts with `prefix` out of rate limiting.
    pub fn exclude_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.excluded_prefixes.push(prefix.into());
        self
    }

    /// The most keys kept in memory (default 1,000,000, rounded up to a power of two per
    /// shard), 16 bytes each ([`BYTES_PER_KEY`](super::BYTES_PER_KEY)): 16 MiB at the
    /// default. Keys whose quota is whole again are forgotten on the way; at the cap, a new
    /// key takes the place of the one nearest to being whole again.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Sends the `RateLimit-Policy` and `RateLimit` fields on admitted responses too
    /// (default: only on refusals), naming the policy with the fewest requests left, so
    /// clients can slow down before they are refused. Costs a small allocation per request.
    pub fn headers_on_admitted(mut self, on: bool) -> Self {
        self.headers_on_admitted = on;
        self
    }

    /// At most this many refusal log lines per second (default 10); the rest are counted
    /// and the count is logged with the next line. 0 turns the lines off.
    pub fn audit_log_per_second(mut self, lines: u32) -> Self {
        self.audit_per_second = lines;
        self
    }

    /// Shares the limits of every replica through the Redis (or Valkey) server at `url`
    /// (`redis://[user:password@]host:port/db`; feature `redis`): one atomic script call
    /// per decision on a multiplexed connection. Keys are named after the service
    /// (`tower_observability:<service>:<policy>:<hashed key>`), so the replicas of one
    /// service share them and two services never meet.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis_settings().url = url.into();
        self
    }

    /// The longest a request waits for Redis (default 20 ms) before the
    /// [fallback](Self::fallback) decides.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis_settings().timeout = timeout;
        self
    }

    /// What decides while Redis is down or slow (default [`Fallback::Open`]).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.redis_settings().fallback = fallback;
        self
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis_settings(&mut self) -> &mut RedisSettings {
        self.redis.get_or_insert_with(|| RedisSettings {
            url: String::new(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            fallback: Fallback::Open,
        })
    }

    /// Checks every setting: quotas, names, keys, routes, the Redis URL.
    pub(crate) fn check(&self) -> Result<Vec<(Quota, super::key::KeyKind)>, BuildError> {
        let bad = |reason: String| BuildError::setting("rate_limit", reason);
        if self.policies.len() > MAX_POLICIES {
            return Err(bad(format!(
                "{} policies: at most {MAX_POLICIES}",
                self.policies.len()
            )));
        }
        if !(64..=1 << 30).contains(&self.max_keys) {
            return Err(bad(format!(
                "max_keys {} is outside 64..=2^30",
                self.max_keys
            )));
        }
        let mut compiled = Vec::new();
        for (i, policy) in self.policies.iter().enumerate() {
            let name = &policy.name;
            let valid = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
            if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
                return Err(bad(format!(
                    "policy name {name:?} must be 1 to 64 of A-Z a-z 0-9 - _ . :"
                )));
            }
            if self.policies[..i].iter().any(|p| p.name == *name) {
                return Err(bad(format!("two policies are named {name:?}")));
            }
            let quota =
                Quota::parse(&policy.quota).map_err(|e| bad(format!("policy {name:?}: {e}")))?;
            let key = super::key::KeyKind::compile(&policy.key)
                .map_err(|e| bad(format!("policy {name:?}: key {e}")))?;
            if let Some(route) = policy.routes.iter().find(|r| !r.starts_with('/')) {
                return Err(bad(format!(
                    "policy {name:?}: route {route:?} must start with '/'"
                )));
            }
            compiled.push((quota, key));
        }
        for path in self.excluded.iter().chain(&self.excluded_prefixes) {
            if !path.starts_with('/') {
                return Err(bad(format!("excluded path {path:?} must start with '/'")));
            }
        }
        if let Some(redis) = &self.redis {
            #[cfg(feature = "redis")]
            if !redis.url.is_empty() {
                super::redis::check_url(&redis.url).map_err(bad)?;
            }
            if redis.timeout.is_zero() || redis.timeout > Duration::from_secs(10) {
                return Err(bad(format!(
                    "redis_timeout {:?} is outside (0, 10 s]",
                    redis.timeout
                )));
            }
        }
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_build_errors() {
        let check = |l: RateLimit| l.check().unwrap_err().to_string();
        let p = |q: &str| Policy::new("p", q);
        assert!(check(RateLimit::new(p("fast"))).contains("\"p\""));
        assert!(check(RateLimit::new(Policy::new("bad name", "1/s"))).contains("policy name"));
        assert!(check(RateLimit::new(p("1/s")).policy(p("2/s"))).contains("two policies"));
        assert!(check(RateLimit::new(p("1/s").only_routes(["search"]))).contains("search"));
        assert!(check(RateLimit::new(p("1/s")).max_keys(1)).contains("max_keys"));
        assert!(check(RateLimit::new(p("1/s")).exclude_prefix("x")).contains("excluded"));
        let many = (0..9).fold(RateLimit::new(p("1/s")), |l, i| {
            l.policy(Policy::new(format!("p{i}"), "1/s"))
        });
        assert!(check(many).contains("at most 8"));
    }
}
