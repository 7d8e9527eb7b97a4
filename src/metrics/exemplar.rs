//! Exemplars: the trace of one request kept beside the bucket its duration fell into, so a
//! latency panel leads to a trace that made the latency.
//!
//! A bucket keeps the latest sampled, exported request: its `trace_id`, `span_id`, value and
//! time. Writing one is a handful of relaxed stores behind a sequence number (a seqlock):
//! no lock, no allocation; a writer that finds another one mid-write leaves the slot to it,
//! and a reader that sees a write in progress tries again a few times, then skips it.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The ids of a request's server span, given when the span is sampled and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exemplar {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// When the request arrived: the exemplar's time is its end, this plus its duration.
    pub(crate) start: Instant,
}

/// An exemplar as read back for an exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kept {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// In the histogram's recorded unit.
    pub(crate) value: u64,
    /// Nanoseconds since the Unix epoch.
    pub(crate) unix_nanos: u64,
}

/// One bucket's exemplar.
#[derive(Default)]
pub(crate) struct Slot {
    /// Odd while a write is in progress; 0 until the first write.
    seq: AtomicU64,
    /// trace id (two words), span id, value, time.
    words: [AtomicU64; 5],
}

impl Slot {
    #[inline]
    pub(crate) fn write(&self, exemplar: &Exemplar, value: u64) {
        let seq = self.seq.load(Ordering::Relaxed);
        // Another writer is here: its exemplar is as good as this one.
        if seq & 1 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let trace = u128::from_ne_bytes(exemplar.trace_id);
        let words = [
            trace as u64,
            (trace >> 64) as u64,
            u64::from_ne_bytes(exemplar.span_id),
            value,
            // Exemplars are kept for durations, recorded in nanoseconds: the request's end.
            unix_nanos(exemplar.start) + value,
        ];
        for (slot, word) in self.words.iter().zip(words) {
            slot.store(word, Ordering::Relaxed);
        }
        self.seq.store(seq + 2, Ordering::Release);
    }

    /// The exemplar, unless none was written or writes kept overlapping the read.
    pub(crate) fn read(&self) -> Option<Kept> {
        for _ in 0..4 {
            let before = self.seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let w = self.words.each_ref().map(|w| w.load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(Kept {
                    trace_id: (u128::from(w[1]) << 64 | u128::from(w[0])).to_ne_bytes(),
                    span_id: w[2].to_ne_bytes(),
                    value: w[3],
                    unix_nanos: w[4],
                });
            }
        }
        None
    }
}

/// The wall clock read through the monotonic one: an exemplar's time costs a subtraction,
/// not a clock read. `resync` (called at every render) follows steps of the wall clock.
struct Clock {
    anchor: Instant,
    /// The wall clock at `anchor`, in nanoseconds since the Unix epoch.
    offset: AtomicU64,
}

static CLOCK: OnceLock<Clock> = OnceLock::new();

fn clock() -> &'static Clock {
    CLOCK.get_or_init(|| {
        let anchor = Instant::now();
        Clock {
            anchor,
            offset: AtomicU64::new(wall_nanos()),
        }
    })
}

fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Starts the clock, so requests arriving later convert exactly.
pub(crate) fn start_clock() {
    clock();
}

/// Re-reads the wall clock against the monotonic one (after NTP steps the wall clock).
pub(crate) fn resync_clock() {
    let clock = clock();
    let since = clock.anchor.elapsed().as_nanos() as u64;
    clock
        .offset
        .store(wall_nanos().saturating_sub(since), Ordering::Relaxed);
}

/// `at` in nanoseconds since the Unix epoch.
#[inline]
pub(crate) fn unix_nanos(at: Instant) -> u64 {
    let clock = clock();
    let since = at.saturating_duration_since(clock.anchor).as_nanos() as u64;
    clock.offset.load(Ordering::Relaxed) + since
}

/// Writes the 32 (trace) or 16 (span) lowercase hex digits of `id`.
pub(crate) fn hex(id: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in id {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn exemplar(n: u8) -> Exemplar {
        Exemplar {
            trace_id: [n; 16],
            span_id: [n; 8],
            start: Instant::now(),
        }
    }

    #[test]
    fn a_slot_keeps_the_latest_exemplar_with_its_time() {
        let slot = Slot::default();
        assert_eq!(slot.read(), None, "nothing written yet");
        let before = wall_nanos();
        slot.write(&exemplar(1), 50_000_000);
        slot.write(&exemplar(2), 70_000_000);
        let kept = slot.read().unwrap();
        assert_eq!(kept.trace_id, [2; 16]);
        assert_eq!(kept.span_id, [2; 8]);
        assert_eq!(kept.value, 70_000_000);
        // The time is the request's end: its start plus the duration recorded.
        let end = kept.unix_nanos;
        assert!(
            end >= before + 70_000_000 - 1_000_000 && end < before + 70_000_000 + 5_000_000_000,
            "{end} vs {before}"
        );
    }

    #[test]
    fn reads_never_mix_two_writes() {
        let slot = Arc::new(Slot::default());
        let writers: Vec<_> = (1..=3u8)
            .map(|n| {
                let slot = slot.clone();
                std::thread::spawn(move || {
                    let e = exemplar(n);
                    for _ in 0..20_000 {
                        slot.write(&e, u64::from(n));
                    }
                })
            })
            .collect();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while writers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            if let Some(k) = slot.read() {
                let n = k.value as u8;
                assert_eq!((k.trace_id, k.span_id), ([n; 16], [n; 8]), "torn read");
                seen += 1;
            }
        }
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert!(slot.read().is_some());
        let _ = seen;
    }

    #[test]
    fn ids_are_lowercase_hex() {
        let mut out = String::new();
        hex(&[0x0a, 0xf0, 0x00, 0xff], &mut out);
        assert_eq!(out, "0af000ff");
    }
}
