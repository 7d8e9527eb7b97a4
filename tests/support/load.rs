//! Paced load for the rate-limit tests: a fixed request rate over real connections, every
//! answer tallied and every latency kept, bounded in count and in time.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::HttpClient;

/// What a run of requests got.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub admitted: u64,
    pub refused: u64,
    pub unavailable: u64,
    pub other: u64,
    /// The slowest answer.
    pub slowest: Duration,
    /// From the first request sent to the last.
    pub elapsed: Duration,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.admitted += other.admitted;
        self.refused += other.refused;
        self.unavailable += other.unavailable;
        self.other += other.other;
        self.slowest = self.slowest.max(other.slowest);
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

/// Sends `rate` requests a second for `duration` to `urls` in turn (each a full URL),
/// from `workers` concurrent tasks, each request with `headers`.
pub async fn paced(
    client: &HttpClient,
    urls: &[String],
    rate: u64,
    duration: Duration,
    workers: u64,
    headers: &[(&'static str, String)],
) -> Tally {
    let total = rate * duration.as_millis() as u64 / 1000;
    let per_worker = total / workers;
    let interval = Duration::from_nanos(1_000_000_000 * workers / rate);
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let client = client.clone();
            let urls = urls.to_vec();
            let headers = headers.to_vec();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Staggered, so the workers' requests interleave evenly.
                tokio::time::sleep(interval * w as u32 / workers as u32).await;
                for i in 0..per_worker {
                    ticks.tick().await;
                    let url = &urls[((w + i * workers) % urls.len() as u64) as usize];
                    let mut req = http::Request::get(url.as_str());
                    for (name, value) in &headers {
                        req = req.header(*name, value.as_str());
                    }
                    let sent = Instant::now();
                    let res = client
                        .request(req.body(Full::new(Bytes::new())).unwrap())
                        .await;
                    let status = match res {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            let _ = res.into_body().collect().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    tally.slowest = tally.slowest.max(sent.elapsed());
                    match status {
                        200 => tally.admitted += 1,
                        429 => tally.refused += 1,
                        503 => tally.unavailable += 1,
                        _ => tally.other += 1,
                    }
                }
                tally.elapsed = start.elapsed();
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.add(&task.await.unwrap());
    }
    tally
}

/// Asserts `admitted` is within `share` (0.02 for 2%) of `rate` over `elapsed`, plus the
/// `burst` a fresh quota starts with.
pub fn assert_within(admitted: u64, rate: f64, elapsed: Duration, burst: u64, share: f64) {
    let expected = rate * elapsed.as_secs_f64();
    let slack = share * expected + burst as f64;
    assert!(
        (admitted as f64 - expected).abs() <= slack,
        "admitted {admitted}, expected {expected:.0} ± {slack:.0} ({:.1}% off, burst {burst})",
        100.0 * (admitted as f64 - expected) / expected
    );
}
