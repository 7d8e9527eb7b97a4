//! The security audit trail: one structured log line per refusal, at most N a second, so a
//! flood cannot flood the logs; the lines left out are counted and reported with the next.

use std::sync::atomic::{AtomicU64, Ordering};

/// At most `per_second` lines a second, decided with one atomic word: the second (high 40
/// bits) and the lines logged in it (low 24 bits).
#[derive(Debug)]
pub(crate) struct AuditSampler {
    per_second: u64,
    window: AtomicU64,
    suppressed: AtomicU64,
}

const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

impl AuditSampler {
    pub(crate) fn new(per_second: u32) -> Self {
        AuditSampler {
            per_second: u64::from(per_second).min(COUNT_MASK),
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a refusal at `now_secs` gets its line; if so, also how many were left out
    /// since the last line.
    pub(crate) fn admit(&self, now_secs: u64) -> Option<u64> {
        if self.per_second == 0 {
            return None;
        }
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (second, count) = (current >> COUNT_BITS, current & COUNT_MASK);
            let next = if second == now_secs {
                if count >= self.per_second {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                current + 1
            } else {
                (now_secs << COUNT_BITS) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_lines_a_second_and_the_rest_counted() {
        let s = AuditSampler::new(3);
        let logged: Vec<_> = (0..10).map(|_| s.admit(7)).collect();
        assert_eq!(logged.iter().filter(|l| l.is_some()).count(), 3);
        assert_eq!(
            s.admit(8),
            Some(7),
            "the next second reports the 7 left out"
        );
        assert_eq!(s.admit(8), Some(0));
        assert_eq!(AuditSampler::new(0).admit(1), None);
    }
}
