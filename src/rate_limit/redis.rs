//! The shared backend: the same GCRA as one atomic Lua script on a Redis (or Valkey)
//! server, so every replica draws on one quota. One script call per decision (`EVALSHA`;
//! after a server restart the script is loaded again once), on one multiplexed connection
//! kept by redis-rs's `ConnectionManager`, which reconnects by itself. The server's clock
//! decides (`TIME`), so replicas whose clocks drift still agree.
//!
//! A decision waits at most the timeout; a failure or timeout is counted, and a few in a
//! row open the [breaker](super::breaker): requests are then decided by the fallback
//! without trying Redis, one probe at a time checks whether it is back, and the first
//! answer sends decisions back to it. Each change is logged once.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Label};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::breaker::{Breaker, Change};
use super::gcra::Gcra;
use super::settings::{Fallback, RedisSettings};
use crate::metrics::names::{
    LABEL_RATE_LIMIT_FALLBACK, LABEL_RATE_LIMIT_REASON, RATE_LIMIT_BACKEND_ERRORS,
    RATE_LIMIT_FALLBACKS,
};
use crate::metrics::Sink;

/// Every key's GCRA in one atomic step, on the server's clock in microseconds. KEYS: one
/// per policy; ARGV: each policy's interval and tolerance. Admits only if every policy
/// admits, and then moves every TAT on (a refusal uses up nothing). Returns
/// `{allowed, key (1-based: the refusing one, else the one with the fewest left),
/// retry_after, reset, remaining}`.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local worst, worst_retry, worst_reset = 0, 0, 0
local fewest, remaining, reset = 1, -1, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  local base = tat
  if base < now then base = now end
  local nxt = base + interval
  local ahead = nxt - now
  if ahead > tolerance then
    if ahead - tolerance > worst_retry then
      worst, worst_retry = i, ahead - tolerance
      worst_reset = math.max(tat - now, 0)
    end
  else
    tats[i] = nxt
    local left = math.floor((tolerance - ahead) / interval)
    if remaining < 0 or left < remaining then
      fewest, remaining, reset = i, left, ahead
    end
  end
end
if worst > 0 then
  return {0, worst, worst_retry, worst_reset, 0}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX',
    math.floor((tats[i] - now) / 1000) + 1)
end
return {1, fewest, 0, reset, remaining}
";

/// Until a probe may try Redis again after the breaker opened.
const COOL_DOWN: Duration = Duration::from_millis(500);

/// Checks a Redis URL without connecting; the error never repeats the URL (it may hold a
/// password).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|_| "not a Redis URL (redis://[user:password@]host:port/db)".to_owned())
}

/// One policy's part of a decision.
pub(crate) struct Item<'a> {
    pub(crate) policy: &'a str,
    pub(crate) gcra: Gcra,
    pub(crate) key: u64,
}

/// What Redis decided, times in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer {
    pub(crate) allowed: bool,
    /// The refusing item, or the admitted one with the fewest requests left.
    pub(crate) index: usize,
    pub(crate) retry_after: u64,
    pub(crate) reset: u64,
    pub(crate) remaining: u64,
}

pub(crate) struct RedisBackend {
    client: redis::Client,
    manager: OnceLock<ConnectionManager>,
    script: redis::Script,
    timeout: Duration,
    pub(crate) fallback: Fallback,
    breaker: Breaker,
    /// `tower_observability:<service>`: keys of two services sharing a server never meet.
    prefix: String,
    /// Where the server is, for log lines: host and port, never credentials.
    server: String,
    timeouts: Counter,
    errors: Counter,
    pub(crate) fallbacks: Counter,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    pub(crate) fn new(
        settings: &RedisSettings,
        service: &str,
        sink: &Sink,
    ) -> Result<Self, String> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|_| "the redis URL is not a Redis URL (redis://host:port/db)".to_owned())?;
        let server = client.get_connection_info().addr().to_string();
        let error = |reason: &'static str| {
            let c = sink.counter(
                RATE_LIMIT_BACKEND_ERRORS,
                vec![Label::new(LABEL_RATE_LIMIT_REASON, reason)],
            );
            c.increment(0);
            c
        };
        let fallbacks = sink.counter(
            RATE_LIMIT_FALLBACKS,
            vec![Label::new(
                LABEL_RATE_LIMIT_FALLBACK,
                settings.fallback.as_str(),
            )],
        );
        fallbacks.increment(0);
        Ok(RedisBackend {
            client,
            manager: OnceLock::new(),
            script: redis::Script::new(SCRIPT),
            timeout: settings.timeout,
            fallback: settings.fallback,
            breaker: Breaker::new(COOL_DOWN.as_nanos() as u64),
            prefix: format!("tower_observability:{service}"),
            server,
            timeouts: error("timeout"),
            errors: error("error"),
            fallbacks,
        })
    }

    /// The connection, made on first use (inside the runtime that serves requests).
    fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        if let Some(manager) = self.manager.get() {
            return Ok(manager.clone());
        }
        let config = ConnectionManagerConfig::new()
            // Reconnection is retried briefly in the background; the breaker paces the rest.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            // Each decision has its own, much shorter, timeout.
            .set_response_timeout(None);
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        Ok(self.manager.get_or_init(|| manager).clone())
    }

    /// Connects and loads the script ahead of the first request, when built inside a tokio
    /// runtime (otherwise the first decision does it, and may fall back while it does).
    pub(crate) fn warm_up(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(mut conn) = self.connection() else {
            return;
        };
        let script = self.script.clone();
        runtime.spawn(async move {
            // A failure here is the first decision's to report.
            let _ = script.load_async(&mut conn).await;
        });
    }

    /// Decides `items` on the server; `Err` when the fallback must decide (breaker open,
    /// error, timeout), already counted and, on a change, logged.
    pub(crate) async fn decide(&self, items: &[Item<'_>], now: u64) -> Result<Answer, ()> {
        if !self.breaker.allows(now) {
            self.fallbacks.increment(1);
            return Err(());
        }
        let mut invocation = self.script.prepare_invoke();
        for item in items {
            invocation.key(format!("{}:{}:{:016x}", self.prefix, item.policy, item.key));
        }
        for item in items {
            invocation.arg(item.gcra.interval).arg(item.gcra.tolerance);
        }
        let called = async {
            let mut conn = self.connection()?;
            invocation.invoke_async::<Vec<i64>>(&mut conn).await
        };
        let failure = match tokio::time::timeout(self.timeout, called).await {
            Ok(Ok(answer)) => {
                if let Some(Change::Closed) = self.breaker.success() {
                    warning!(
                        target: "tower_observability::rate_limit",
                        { server = %self.server, },
                        "rate limit backend answers again: decisions are shared through it again"
                    );
                }
                return Ok(parse(&answer));
            }
            Ok(Err(e)) => {
                self.errors.increment(1);
                e.to_string()
            }
            Err(_) => {
                self.timeouts.increment(1);
                format!("no answer within {:?}", self.timeout)
            }
        };
        if let Some(Change::Opened) = self.breaker.failure(now) {
            warning!(
                target: "tower_observability::rate_limit",
                { server = %self.server, error = %failure, fallback = self.fallback.as_str(), },
                "rate limit backend {} unreachable ({failure}): deciding with the fallback \
                 ({}) until it answers",
                self.server,
                self.fallback.as_str()
            );
        }
        self.fallbacks.increment(1);
        Err(())
    }
}

fn parse(answer: &[i64]) -> Answer {
    let at = |i: usize| answer.get(i).copied().unwrap_or(0).max(0) as u64;
    Answer {
        // Anything but a clear refusal admits: the script always answers five numbers.
        allowed: at(0) == 1 || answer.len() < 5,
        index: (at(1) as usize).saturating_sub(1),
        retry_after: at(2) * 1000,
        reset: at(3) * 1000,
        remaining: at(4),
    }
}
