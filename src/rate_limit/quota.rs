//! Quotas as people write them: `100/s`, `6000/min`, `10/5m;burst=20`.

use std::time::Duration;

/// A parsed quota: `count` requests per `period`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub(crate) count: u64,
    pub(crate) period: Duration,
    pub(crate) burst: u64,
}

/// Beyond this many requests per period a quota is a typo, not a limit.
const MAX_COUNT: u64 = 1_000_000_000;

impl Quota {
    /// Parses `<count>/<period>[;burst=<n>]`, where the period is a unit (`s`, `sec`,
    /// `second`, `m`, `min`, `minute`, `h`, `hour`, `d`, `day`, plurals too) optionally
    /// preceded by a whole number (`10s`, `5min`). The burst defaults to one second's worth
    /// of the rate, at least 1.
    pub(crate) fn parse(s: &str) -> Result<Quota, String> {
        let mut parts = s.split(';');
        let rate = parts.next().unwrap_or("").trim();
        let (count, period) = rate
            .split_once('/')
            .ok_or_else(|| format!("{rate:?} is not a quota like 100/s or 6000/min"))?;
        let count: u64 = count
            .trim()
            .parse()
            .ok()
            .filter(|c| (1..=MAX_COUNT).contains(c))
            .ok_or_else(|| format!("{count:?} is not a request count from 1 to {MAX_COUNT}"))?;
        let period = parse_period(period.trim())?;
        let mut burst = None;
        for param in parts.map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if !name.trim().eq_ignore_ascii_case("burst") {
                return Err(format!("unknown quota parameter {param:?} (only burst=N)"));
            }
            let n = value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_COUNT).contains(n))
                .ok_or_else(|| format!("burst {value:?} is not a whole number from 1"))?;
            burst = Some(n);
        }
        // One second's worth of the rate, rounded up, at least one request.
        let per_second = (u128::from(count) * 1_000_000_000).div_ceil(period.as_nanos());
        let burst = burst.unwrap_or_else(|| u64::try_from(per_second).unwrap_or(MAX_COUNT).max(1));
        // At most 10^9 per second or longer: the interval is at least a nanosecond.
        Ok(Quota {
            count,
            period,
            burst,
        })
    }

    /// Time between two requests at the sustained rate.
    pub(crate) fn interval_nanos(&self) -> u64 {
        u64::try_from(self.period.as_nanos() / u128::from(self.count)).unwrap_or(u64::MAX)
    }

    /// The window, in whole seconds, the `RateLimit-Policy` field advertises (`w`).
    pub(crate) fn window_seconds(&self) -> u64 {
        self.period.as_secs().max(1)
    }
}

fn parse_period(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = if n.is_empty() {
        1
    } else {
        n.parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{s:?} is not a period"))?
    };
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => {
            return Err(format!(
                "{s:?} is not a period: use s, min, h or d, optionally after a number (10s)"
            ))
        }
    };
    n.checked_mul(unit)
        .filter(|secs| *secs <= 366 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is longer than a year"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quota {
        Quota::parse(s).unwrap()
    }

    #[test]
    fn reads_rates_periods_and_bursts() {
        assert_eq!(
            q("100/s"),
            Quota {
                count: 100,
                period: Duration::from_secs(1),
                burst: 100
            }
        );
        assert_eq!(q("6000/min").burst, 100, "one second's worth");
        assert_eq!(q("6000/min").interval_nanos(), 10_000_000);
        assert_eq!(q("10/h").burst, 1, "at least one request");
        assert_eq!(q("100/10s").period, Duration::from_secs(10));
        assert_eq!(q("100/10s").burst, 10);
        assert_eq!(q(" 5 / Minute ; burst = 20 ").burst, 20);
        assert_eq!(q("1000/day;burst=50").period, Duration::from_secs(86_400));
        assert_eq!(q("3/s").interval_nanos(), 333_333_333);
        assert_eq!(q("100/10s").window_seconds(), 10);
    }

    #[test]
    fn bad_quotas_say_what_is_wrong() {
        for (bad, says) in [
            ("100", "not a quota"),
            ("0/s", "request count"),
            ("-1/s", "request count"),
            ("x/s", "request count"),
            ("100/fortnight", "not a period"),
            ("100/0s", "not a period"),
            ("100/s;burst=0", "burst"),
            ("100/s;burst=lots", "burst"),
            ("100/s;bust=5", "unknown quota parameter"),
            ("100/400d", "longer than a year"),
            ("1000000001/s", "request count"),
        ] {
            let err = Quota::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
