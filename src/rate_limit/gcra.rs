//! The generic cell rate algorithm: one number per key, the theoretical arrival time
//! (TAT) of the next request at the sustained rate. A request is admitted when taking it
//! keeps the TAT within the burst tolerance of now; then the TAT moves one interval on.
//! The same arithmetic runs in memory (nanoseconds) and in the Redis script (microseconds).

use super::quota::Quota;

/// One policy's GCRA constants, in the unit of the clock they are used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Time between two requests at the sustained rate.
    pub(crate) interval: u64,
    /// How far ahead of now the TAT may run: `burst` intervals.
    pub(crate) tolerance: u64,
}

/// What one policy decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    /// The TAT to store (unchanged when refused).
    pub(crate) tat: u64,
    /// Requests that could still be made right now.
    pub(crate) remaining: u64,
    /// Until the request would be admitted (0 when it was).
    pub(crate) retry_after: u64,
    /// Until the burst is fully available again.
    pub(crate) reset: u64,
}

impl Gcra {
    /// The constants of `quota` in nanoseconds.
    pub(crate) fn nanos(quota: &Quota) -> Self {
        let interval = quota.interval_nanos();
        Gcra {
            interval,
            tolerance: interval.saturating_mul(quota.burst),
        }
    }

    /// The constants of `quota` in microseconds (the Redis script's clock).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn micros(quota: &Quota) -> Self {
        let interval = (quota.interval_nanos() / 1000).max(1);
        Gcra {
            interval,
            tolerance: interval.saturating_mul(quota.burst),
        }
    }

    /// Decides a request arriving at `now` for a key whose stored TAT is `tat` (0, or any
    /// time in the past, for a key with its whole burst available).
    #[inline]
    pub(crate) fn decide(&self, tat: u64, now: u64) -> Decision {
        let next = tat.max(now).saturating_add(self.interval);
        let ahead = next - now;
        if ahead <= self.tolerance {
            Decision {
                allowed: true,
                tat: next,
                remaining: (self.tolerance - ahead) / self.interval,
                retry_after: 0,
                reset: ahead,
            }
        } else {
            Decision {
                allowed: false,
                tat,
                remaining: 0,
                retry_after: ahead - self.tolerance,
                reset: tat.saturating_sub(now),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcra(quota: &str) -> Gcra {
        Gcra::nanos(&Quota::parse(quota).unwrap())
    }

    #[test]
    fn admits_the_burst_at_once_then_the_rate() {
        let g = gcra("10/s;burst=3");
        let mut tat = 0;
        let now = 5_000_000_000;
        for left in [2, 1, 0] {
            let d = g.decide(tat, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = d.tat;
        }
        let d = g.decide(tat, now);
        assert!(!d.allowed);
        assert_eq!(d.tat, tat, "a refusal changes nothing");
        assert_eq!(d.retry_after, 100_000_000, "one interval");
        assert_eq!(d.reset, 300_000_000);
        // One interval later, exactly one more.
        let later = now + 100_000_000;
        let d = g.decide(tat, later);
        assert!(d.allowed && d.remaining == 0);
        assert!(!g.decide(d.tat, later).allowed);
    }

    #[test]
    fn over_time_admits_the_rate_plus_the_burst() {
        let g = gcra("100/s;burst=20");
        let (mut tat, mut admitted) = (0, 0u64);
        // 10 s of requests every millisecond: 10x the quota.
        for ms in 0..10_000u64 {
            let d = g.decide(tat, 1_000_000_000 + ms * 1_000_000);
            if d.allowed {
                admitted += 1;
                tat = d.tat;
            }
        }
        assert!((1000..=1020).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_key_idle_for_long_is_fresh_again() {
        let g = gcra("1/s;burst=2");
        let d = g.decide(0, 10);
        let d = g.decide(d.tat, 10);
        assert!(!g.decide(d.tat, 10).allowed);
        let d = g.decide(d.tat, 10 + 2_000_000_000);
        assert_eq!((d.allowed, d.remaining), (true, 1));
    }
}
