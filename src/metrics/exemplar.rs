//! Exemplars: the trace of one request kept beside the bucket its duration fell into, so a
//! latency panel leads to a trace that made the latency.
//!
//! A bucket keeps the latest sampled, exported request: its `trace_id`, `span_id`, value and
//! time. Writing one is an uncontended `try_lock` and a few stores, no allocation; a writer
//! that finds the slot busy leaves it to the other request (either is a fine exemplar). The
//! time is kept as the request's `Instant` and turned into wall-clock time when read, so a
//! request pays no clock arithmetic for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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
pub(crate) struct Slot(Mutex<Option<(Exemplar, u64)>>);

impl Slot {
    #[inline]
    pub(crate) fn write(&self, exemplar: &Exemplar, value: u64) {
        // Busy: another request is writing its own, as good as this one.
        if let Ok(mut slot) = self.0.try_lock() {
            *slot = Some((*exemplar, value));
        }
    }

    /// The exemplar, if one was written.
    pub(crate) fn read(&self) -> Option<Kept> {
        let (e, value) = (*self.0.lock().unwrap_or_else(|e| e.into_inner()))?;
        Some(Kept {
            trace_id: e.trace_id,
            span_id: e.span_id,
            value,
            // Exemplars are kept for durations, recorded in nanoseconds: the request's end.
            unix_nanos: unix_nanos(e.start) + value,
        })
    }
}

/// The wall clock read through the monotonic one: turning an exemplar's `Instant` into
/// wall-clock time costs a subtraction, not a clock read. `resync_clock` (called before
/// every render) follows steps of the wall clock.
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
        let deadline = Instant::now() + Duration::from_secs(5);
        while writers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            if let Some(k) = slot.read() {
                let n = k.value as u8;
                assert_eq!((k.trace_id, k.span_id), ([n; 16], [n; 8]), "torn read");
            }
        }
        writers.into_iter().for_each(|w| w.join().unwrap());
        // Writes meeting a read may all have been skipped (best effort); one alone lands.
        slot.write(&exemplar(4), 4);
        assert_eq!(slot.read().map(|k| k.trace_id), Some([4; 16]));
    }

    #[test]
    fn ids_are_lowercase_hex() {
        let mut out = String::new();
        hex(&[0x0a, 0xf0, 0x00, 0xff], &mut out);
        assert_eq!(out, "0af000ff");
    }
}
