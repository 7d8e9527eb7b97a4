//! Rate limiting in the layer's one pass: GCRA quotas per client address, API key, route
//! or globally, in memory or shared across replicas through Redis (feature `redis`).
//!
//! Configure it with [`RateLimit`] and [`Policy`] on the builder
//! ([`ObservabilityBuilder::rate_limit`](crate::ObservabilityBuilder::rate_limit)) or with
//! `OBSERVABILITY_RATE_LIMIT=100/s` (optionally `;burst=N`),
//! `OBSERVABILITY_RATE_LIMIT_KEY=ip|header:<name>|route|global`,
//! `OBSERVABILITY_RATE_LIMIT_MODE=enforce|shadow`,
//! `OBSERVABILITY_RATE_LIMIT_REDIS_URL=redis://host:port/db` and
//! `OBSERVABILITY_RATE_LIMIT_FALLBACK=open|closed|local`.
//!
//! In memory, a key costs [`BYTES_PER_KEY`] bytes (its hash and one 64-bit word of GCRA
//! state) and the keys are capped ([`RateLimit::max_keys`], default 1,000,000: 16 MiB), so
//! a flood from random addresses cannot grow memory without bound.

mod answer;
mod audit;
#[cfg(feature = "redis")]
mod breaker;
mod gcra;
pub(crate) mod key;
mod memory;
mod quota;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod settings;
mod signal;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use metrics::{Counter, Label};

pub use key::Key;
pub use memory::BYTES_PER_KEY;
pub(crate) use quota::Quota;
pub use settings::{
    Fallback, Mode, Policy, RateLimit, DEFAULT_AUDIT_PER_SECOND, DEFAULT_MAX_KEYS,
    DEFAULT_REDIS_TIMEOUT, MAX_POLICIES,
};
pub(crate) use signal::RateLimitSignal;

use crate::classify::is_grpc;
use crate::client_address::TrustedProxies;
use crate::error::BuildError;
use crate::exclude::PathFilter;
use crate::metrics::names::{LABEL_RATE_LIMIT_MODE, LABEL_RATE_LIMIT_POLICY, RATE_LIMITED};
use crate::metrics::Sink;
use crate::signal::OverQuota;
use answer::Refusal;
use audit::AuditSampler;
use gcra::{Decision, Gcra};
use key::KeyKind;
use memory::{MemoryStore, SingleKey};

/// One policy, ready to decide.
#[derive(Debug)]
struct Compiled {
    name: Arc<str>,
    gcra: Gcra,
    #[cfg(feature = "redis")]
    gcra_micros: Gcra,
    key: KeyKind,
    routes: Box<[Box<str>]>,
    /// Its `RateLimit-Policy` item.
    item: Box<str>,
    /// The same, ready to be copied into admitted responses.
    item_value: http::HeaderValue,
    /// `tower_observability_rate_limited_total{policy, mode}`.
    refused: Counter,
    /// The state of a [`Key::Global`] policy: one word, no table.
    single: SingleKey,
}

/// The keys one request is counted under: (policy index, key hash), no allocation.
#[derive(Debug, Clone, Copy)]
struct Keys {
    len: usize,
    items: [(usize, u64); MAX_POLICIES],
}

impl Keys {
    fn iter(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.items[..self.len].iter().copied()
    }
}

/// What the policies said about a request.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// Admitted; `policy` is the one with the fewest requests left.
    Admitted {
        policy: usize,
        remaining: u64,
        reset: u64,
    },
    Refused(Refused),
}

/// The `RateLimit-Policy` and `RateLimit` fields of an admitted request, when
/// [`RateLimit::headers_on_admitted`] asks for them.
#[derive(Debug)]
pub(crate) struct LimitHeaders {
    policy: http::HeaderValue,
    limit: http::HeaderValue,
}

impl LimitHeaders {
    pub(crate) fn apply(&self, headers: &mut http::HeaderMap) {
        headers.insert(answer::RATELIMIT_POLICY, self.policy.clone());
        headers.insert(answer::RATELIMIT, self.limit.clone());
    }
}

/// The policy that refused a request, and when to come back (nanoseconds).
#[derive(Debug, Clone, Copy)]
struct Refused {
    policy: usize,
    key: u64,
    retry_after: u64,
    reset: u64,
}

/// The rate limiter of one layer, shared by all its clones.
#[derive(Debug)]
pub(crate) struct Limiter {
    policies: Box<[Compiled]>,
    mode: Mode,
    excluded: PathFilter,
    trusted: TrustedProxies,
    memory: MemoryStore,
    clock: Instant,
    audit: AuditSampler,
    headers_on_admitted: bool,
    warned_no_peer: AtomicBool,
    #[cfg(feature = "redis")]
    redis: Option<redis::RedisBackend>,
}

/// What the limiter says about a request.
pub(crate) enum Admission {
    /// Admitted (or limiting does not apply): pass it on.
    Pass,
    /// Admitted, with the `RateLimit` fields for the response.
    Admitted(LimitHeaders),
    /// Over a quota in shadow mode: passed on, the finding recorded on the span.
    Shadowed(OverQuota),
    /// Over a quota: this is the answer.
    Refused(Response<Bytes>, OverQuota),
    /// Not decided, and refused (the backend is down, fail-closed): this is the answer.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Answer(Response<Bytes>),
    /// Decided elsewhere (Redis): await it, then pass on or answer.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Pending(Pending),
}

/// An admission decided asynchronously; resolves to [`Admission::Pass`] or
/// [`Admission::Answer`].
pub(crate) struct Pending(Pin<Box<dyn Future<Output = Admission> + Send>>);

impl Future for Pending {
    type Output = Admission;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Admission> {
        self.0.as_mut().poll(cx)
    }
}

impl Limiter {
    /// Checks `settings` and registers the counters.
    pub(crate) fn build(
        settings: &RateLimit,
        trusted: TrustedProxies,
        admin_paths: &[&str],
        service: &str,
        sink: &Sink,
    ) -> Result<Self, BuildError> {
        let checked = settings.check()?;
        let mode = settings.mode;
        let policies = settings
            .policies
            .iter()
            .zip(checked)
            .map(|(policy, (quota, key))| {
                let refused = sink.counter(
                    RATE_LIMITED,
                    vec![
                        Label::new(LABEL_RATE_LIMIT_POLICY, policy.name.clone()),
                        Label::new(LABEL_RATE_LIMIT_MODE, mode.as_str()),
                    ],
                );
                refused.increment(0);
                Compiled {
                    name: policy.name.as_str().into(),
                    gcra: Gcra::nanos(&quota),
                    #[cfg(feature = "redis")]
                    gcra_micros: Gcra::micros(&quota),
                    key,
                    routes: policy.routes.iter().map(|r| r.as_str().into()).collect(),
                    item_value: http::HeaderValue::from_str(&answer::policy_item(
                        &policy.name,
                        &quota,
                    ))
                    .expect("policy names are checked printable ASCII"),
                    item: answer::policy_item(&policy.name, &quota).into(),
                    refused,
                    single: SingleKey::default(),
                }
            })
            .collect::<Box<[_]>>();
        let mut excluded = PathFilter::default();
        admin_paths.iter().for_each(|p| excluded.exact(p));
        settings.excluded.iter().for_each(|p| excluded.exact(p));
        settings
            .excluded_prefixes
            .iter()
            .for_each(|p| excluded.prefix(p));
        #[cfg(feature = "redis")]
        let redis = match &settings.redis {
            Some(redis) if redis.url.is_empty() => {
                return Err(BuildError::setting(
                    "rate_limit",
                    "redis_timeout or fallback given without a redis URL",
                ))
            }
            Some(redis) => {
                let backend = redis::RedisBackend::new(redis, service, sink)
                    .map_err(|e| BuildError::setting("rate_limit", e))?;
                backend.warm_up();
                Some(backend)
            }
            None => None,
        };
        #[cfg(not(feature = "redis"))]
        let _ = service;
        Ok(Limiter {
            policies,
            mode,
            excluded,
            trusted,
            memory: MemoryStore::new(settings.max_keys),
            clock: Instant::now(),
            audit: AuditSampler::new(settings.audit_per_second),
            headers_on_admitted: settings.headers_on_admitted,
            warned_no_peer: AtomicBool::new(false),
            #[cfg(feature = "redis")]
            redis,
        })
    }

    /// Whether admitted responses carry the `RateLimit` fields.
    pub(crate) fn headers_on_admitted(&self) -> bool {
        self.headers_on_admitted
    }

    fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `instant` on the limiter's clock, in nanoseconds.
    fn at(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.clock);
        // 0 is the TAT of a key never seen: the clock starts one second in.
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX) + 1_000_000_000
    }

    /// Decides a request: `route` is the layer's resolved route (`unmatched` for paths
    /// excluded from the request signals), `arrived` the time the pass read for it (one
    /// clock read fewer).
    pub(crate) fn admit<B>(
        self: &Arc<Self>,
        req: &Request<B>,
        route: &str,
        arrived: Option<Instant>,
    ) -> Admission {
        if self.excluded.matches(req.uri().path()) {
            return Admission::Pass;
        }
        let mut keys = Keys {
            len: 0,
            items: [(0, 0); MAX_POLICIES],
        };
        for (i, policy) in self.policies.iter().enumerate() {
            if !policy.routes.is_empty() && !policy.routes.iter().any(|r| **r == *route) {
                continue;
            }
            match policy.key.of(req, route, &self.trusted) {
                Some(key) => {
                    keys.items[keys.len] = (i, key);
                    keys.len += 1;
                }
                None => self.missing_key(policy),
            }
        }
        if keys.len == 0 {
            return Admission::Pass;
        }
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            let this = self.clone();
            let route = route.to_owned();
            let grpc = is_grpc(req.headers());
            return Admission::Pending(Pending(Box::pin(async move {
                this.decide_shared(keys, grpc, &route).await
            })));
        }
        let now = arrived.map_or_else(|| self.now(), |t| self.at(t));
        match self.decide_local(&keys, now) {
            Verdict::Admitted { .. } if !self.headers_on_admitted => Admission::Pass,
            // Only a refusal needs to know how to answer (a header lookup).
            verdict => self.conclude(verdict, is_grpc(req.headers()), route, now),
        }
    }

    /// A policy's key is missing from a request: for client addresses that is a
    /// deployment mistake (no peer address), said once.
    fn missing_key(&self, policy: &Compiled) {
        if matches!(policy.key, KeyKind::ClientAddress)
            && !self.warned_no_peer.swap(true, Ordering::Relaxed)
        {
            warning!(
                target: "tower_observability::rate_limit",
                { policy = %policy.name, },
                "rate limit by client address, but requests carry no peer address: serve with \
                 `into_make_service_with_connect_info::<SocketAddr>()` (axum) or put the \
                 `SocketAddr` in the request extensions; these requests are not limited"
            );
        }
    }

    #[inline]
    fn decide_one(&self, i: usize, key: u64, now: u64, store: bool) -> Decision {
        let policy = &self.policies[i];
        if let KeyKind::Global = policy.key {
            return policy.single.decide(&policy.gcra, now, store);
        }
        // Each policy has its own keys in the one table.
        let slot_key = key::mix(key ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if store {
            self.memory.decide(slot_key, &policy.gcra, now)
        } else {
            self.memory.peek(slot_key, &policy.gcra, now)
        }
    }

    /// Decides in memory: admitted only if every policy admits, and then every policy
    /// counts the request; a refusal uses up none of them.
    fn decide_local(&self, keys: &Keys, now: u64) -> Verdict {
        let refused = |(i, key): (usize, u64), d: Decision| {
            Verdict::Refused(Refused {
                policy: i,
                key,
                retry_after: d.retry_after,
                reset: d.reset,
            })
        };
        let admitted = |i: usize, d: Decision| Verdict::Admitted {
            policy: i,
            remaining: d.remaining,
            reset: d.reset,
        };
        if keys.len == 1 {
            let (i, key) = keys.items[0];
            let d = self.decide_one(i, key, now, true);
            return if d.allowed {
                admitted(i, d)
            } else {
                refused((i, key), d)
            };
        }
        let worst = keys
            .iter()
            .map(|(i, key)| ((i, key), self.decide_one(i, key, now, false)))
            .filter(|(_, d)| !d.allowed)
            .max_by_key(|(_, d)| d.retry_after);
        if let Some((item, d)) = worst {
            return refused(item, d);
        }
        keys.iter()
            .map(|(i, key)| (i, self.decide_one(i, key, now, true)))
            .min_by_key(|(_, d)| d.remaining)
            .map_or(
                Verdict::Admitted {
                    policy: 0,
                    remaining: 0,
                    reset: 0,
                },
                |(i, d)| admitted(i, d),
            )
    }

    #[cfg(feature = "redis")]
    async fn decide_shared(&self, keys: Keys, grpc: bool, route: &str) -> Admission {
        let Some(redis) = self.redis.as_ref() else {
            return Admission::Pass;
        };
        let now = self.now();
        let items: Vec<redis::Item<'_>> = keys
            .iter()
            .map(|(i, key)| redis::Item {
                policy: &self.policies[i].name,
                gcra: self.policies[i].gcra_micros,
                key,
            })
            .collect();
        match redis.decide(&items, now).await {
            Ok(answer) => {
                let (policy, key) = keys.items[answer.index.min(keys.len - 1)];
                let verdict = if answer.allowed {
                    Verdict::Admitted {
                        policy,
                        remaining: answer.remaining,
                        reset: answer.reset,
                    }
                } else {
                    Verdict::Refused(Refused {
                        policy,
                        key,
                        retry_after: answer.retry_after,
                        reset: answer.reset,
                    })
                };
                self.conclude(verdict, grpc, route, now)
            }
            Err(()) => match redis.fallback {
                Fallback::Open => Admission::Pass,
                Fallback::Closed => Admission::Answer(answer::unavailable(grpc)),
                Fallback::Local => {
                    let now = self.now();
                    let refused = self.decide_local(&keys, now);
                    self.conclude(refused, grpc, route, now)
                }
            },
        }
    }

    /// Counts and logs a refusal, and answers it unless in shadow mode.
    fn conclude(&self, verdict: Verdict, grpc: bool, route: &str, now: u64) -> Admission {
        let refused = match verdict {
            Verdict::Refused(refused) => refused,
            Verdict::Admitted { .. } if !self.headers_on_admitted => return Admission::Pass,
            Verdict::Admitted {
                policy,
                remaining,
                reset,
            } => {
                let policy = &self.policies[policy];
                let limit = answer::limit_item(&policy.name, remaining, reset);
                return match http::HeaderValue::from_str(&limit) {
                    Ok(limit) => Admission::Admitted(LimitHeaders {
                        policy: policy.item_value.clone(),
                        limit,
                    }),
                    Err(_) => Admission::Pass,
                };
            }
        };
        let policy = &self.policies[refused.policy];
        policy.refused.increment(1);
        if let Some(left_out) = self.audit.admit(now / 1_000_000_000) {
            tracing::info!(
                target: "tower_observability::rate_limit",
                policy = %policy.name,
                mode = self.mode.as_str(),
                route,
                key_kind = policy.key.as_str(),
                key = %format_args!("{:016x}", refused.key),
                retry_after_s = answer::seconds_up(refused.retry_after).max(1),
                lines_left_out = left_out,
                "request over its rate limit"
            );
        }
        let over = OverQuota {
            policy: policy.name.clone(),
            shadow: self.mode == Mode::Shadow,
        };
        if over.shadow {
            return Admission::Shadowed(over);
        }
        let refusal = Refusal {
            policy: &policy.name,
            policy_item: &policy.item,
            retry_after_nanos: refused.retry_after,
            reset_nanos: refused.reset,
        };
        Admission::Refused(if grpc { refusal.grpc() } else { refusal.http() }, over)
    }
}

#[cfg(test)]
mod tests;
