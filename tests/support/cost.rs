//! What a failing telemetry endpoint costs, measured as the tests may on a shared machine:
//! the latencies of requests, against a baseline setup measured in the same run in
//! interleaved rounds (never against a fixed time), and the memory and drops of a burst.

use std::future::Future;
use std::time::{Duration, Instant};

use tower_observability::Observability;

use super::exposition::total;
use super::{client, rss_bytes, send};

/// Sends `rounds` × `per_round` sequential GETs to each of `uris`, round by round so a slow
/// moment of the machine hits every setup alike, after `warm_up` requests each (connection,
/// route and series in place; not measured). Every answer must be `status`. Returns each
/// uri's latencies, sorted.
pub async fn interleaved(
    uris: &[String],
    status: u16,
    warm_up: usize,
    rounds: usize,
    per_round: usize,
) -> Vec<Vec<Duration>> {
    let client = client();
    let timed = |uri: &str, n: usize| {
        let client = &client;
        let uri = uri.to_owned();
        async move {
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                let (got, _) = send(client, "GET", &uri, b"").await;
                assert_eq!(got, status, "{uri}");
                times.push(start.elapsed());
            }
            times
        }
    };
    for uri in uris {
        timed(uri, warm_up).await;
    }
    let mut all = vec![Vec::new(); uris.len()];
    for _ in 0..rounds {
        for (uri, times) in uris.iter().zip(&mut all) {
            times.extend(timed(uri, per_round).await);
        }
    }
    for times in &mut all {
        times.sort();
    }
    all
}

/// The `p` quantile (0 to 1) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Prints every setup's p50 and p99, and asserts those of every setup after the first are
/// within noise of the first's (`baseline`, e.g. "without reporting"): at most 3× its own,
/// or its own plus 2 ms (p50) or 10 ms (p99), whichever is larger. A timeout or a connection
/// attempt on the request path is far beyond that.
pub fn assert_near_baseline(names: &[&str], sorted: &[Vec<Duration>], baseline: &str) {
    let tails: Vec<_> = sorted
        .iter()
        .map(|times| (percentile(times, 0.5), percentile(times, 0.99)))
        .collect();
    for (name, (p50, p99)) in names.iter().zip(&tails) {
        eprintln!("{name:>13}: p50 {p50:?}  p99 {p99:?}");
    }
    let (base50, base99) = tails[0];
    let bound = |base: Duration, slack: Duration| (base * 3).max(base + slack);
    for (name, (p50, p99)) in names.iter().zip(&tails).skip(1) {
        assert!(
            *p50 <= bound(base50, Duration::from_millis(2)),
            "{name}: p50 {p50:?} vs {base50:?} {baseline}"
        );
        assert!(
            *p99 <= bound(base99, Duration::from_millis(10)),
            "{name}: p99 {p99:?} vs {base99:?} {baseline}"
        );
    }
}

/// What a burst cost: besides its own output, how long it took, how much the resident
/// memory grew, how many more drops the counter counts.
pub struct Burst<T> {
    pub output: T,
    pub took: Duration,
    pub rss_growth: u64,
    pub dropped: f64,
}

/// Runs `burst` (traffic into `obs`) and measures what it cost, the drops as `obs`'s counter
/// `dropped` counts them.
pub async fn burst<T>(
    obs: &Observability,
    dropped: &str,
    burst: impl Future<Output = T>,
) -> Burst<T> {
    let dropped_before = total(obs, dropped);
    let rss_before = rss_bytes();
    let started = Instant::now();
    let output = burst.await;
    let took = started.elapsed();
    Burst {
        output,
        took,
        rss_growth: rss_bytes().saturating_sub(rss_before),
        dropped: total(obs, dropped) - dropped_before,
    }
}
