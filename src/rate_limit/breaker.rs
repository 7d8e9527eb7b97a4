//! The circuit breaker in front of the shared backend: after a few failures in a row it
//! opens, and requests are decided by the fallback without trying the backend; once a
//! cool-down has passed, one request at a time probes it, and the first success closes it.
//! Each change of state is reported once, for one log line.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Failures in a row that open the breaker.
const THRESHOLD: u32 = 3;

#[derive(Debug)]
pub(crate) struct Breaker {
    open: AtomicBool,
    failures: AtomicU32,
    /// While open: when the next probe may go (nanoseconds on the limiter's clock).
    retry_at: AtomicU64,
    probing: AtomicBool,
    cool_down: u64,
}

/// A change of state, to be logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Opened,
    Closed,
}

impl Breaker {
    pub(crate) fn new(cool_down_nanos: u64) -> Self {
        Breaker {
            open: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            retry_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            cool_down: cool_down_nanos,
        }
    }

    /// Whether this request may try the backend at `now`.
    #[inline]
    pub(crate) fn allows(&self, now: u64) -> bool {
        if !self.open.load(Ordering::Acquire) {
            return true;
        }
        now >= self.retry_at.load(Ordering::Acquire)
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The backend answered.
    pub(crate) fn success(&self) -> Option<Change> {
        self.failures.store(0, Ordering::Relaxed);
        let was_open = self.open.swap(false, Ordering::AcqRel);
        self.probing.store(false, Ordering::Release);
        was_open.then_some(Change::Closed)
    }

    /// The backend failed or timed out at `now`.
    pub(crate) fn failure(&self, now: u64) -> Option<Change> {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < THRESHOLD && !self.open.load(Ordering::Acquire) {
            return None;
        }
        self.retry_at
            .store(now.saturating_add(self.cool_down), Ordering::Release);
        let was_open = self.open.swap(true, Ordering::AcqRel);
        self.probing.store(false, Ordering::Release);
        (!was_open).then_some(Change::Opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_probes_one_at_a_time() {
        let b = Breaker::new(100);
        assert!(b.allows(0));
        assert_eq!(b.failure(1), None);
        assert_eq!(b.success(), None, "one failure does not open it");
        assert_eq!(b.failure(2), None);
        assert_eq!(b.failure(3), None);
        assert_eq!(b.failure(4), Some(Change::Opened));
        assert!(b.is_open());
        assert!(!b.allows(50), "cooling down");
        assert!(b.allows(104), "one probe");
        assert!(!b.allows(105), "only one");
        assert_eq!(b.failure(106), None, "reported once");
        assert!(!b.allows(150));
        assert!(b.allows(206));
        assert_eq!(b.success(), Some(Change::Closed));
        assert!(b.allows(207) && b.allows(208));
    }
}
