//! What `/metrics` serves, and the buffer it is written into.
//!
//! A service with a thousand routes exposes tens of megabytes per scrape. Written into a
//! fresh allocation each time, a third of the render is the kernel handing out and zeroing
//! new pages (large allocations are mapped and unmapped on every call), so the admin
//! endpoint writes into a buffer that comes back when the response has been sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;

use super::Registry;

/// What `/metrics` renders.
pub(crate) enum Exposition {
    /// The crate's registry.
    Own(Arc<Registry>),
    /// The application's Prometheus recorder.
    Handle(PrometheusHandle),
    /// Nothing: the application's recorder is not a Prometheus one.
    None,
}

impl Exposition {
    /// Appends the registry's metrics in the Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        match self {
            Exposition::Own(registry) => registry.render(out),
            Exposition::Handle(handle) => out.push_str(&handle.render()),
            Exposition::None => {}
        }
    }

    /// Folds queued histogram samples into buckets, so memory stays flat between scrapes.
    pub(crate) fn run_upkeep(&self) {
        match self {
            Exposition::Own(registry) => registry.run_upkeep(),
            Exposition::Handle(handle) => handle.run_upkeep(),
            Exposition::None => {}
        }
    }

    pub(crate) fn is_some(&self) -> bool {
        !matches!(self, Exposition::None)
    }
}

/// One spare exposition buffer, lent to a scrape and returned when its response is dropped.
#[derive(Clone, Default)]
pub(crate) struct ScrapeBuffer(Arc<Mutex<Option<String>>>, Arc<AtomicUsize>);

impl ScrapeBuffer {
    /// Writes with `write` into a new `String` sized like the last exposition, so a large
    /// one is written once rather than regrown and copied.
    pub(crate) fn render_owned(&self, write: impl FnOnce(&mut String)) -> String {
        let last = self.1.load(Ordering::Relaxed);
        let mut out = String::with_capacity(last + last / 16);
        write(&mut out);
        self.1.store(out.len(), Ordering::Relaxed);
        out
    }

    /// Writes with `write` into the spare buffer (or a new one sized like the last) and
    /// hands it out as `Bytes` that give the buffer back when dropped.
    pub(crate) fn render(&self, write: impl FnOnce(&mut String)) -> Bytes {
        let mut buf = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        buf.clear();
        write(&mut buf);
        self.1.store(buf.len(), Ordering::Relaxed);
        Bytes::from_owner(Lent {
            buf,
            home: self.clone(),
        })
    }
}

/// A buffer out with a response.
struct Lent {
    buf: String,
    home: ScrapeBuffer,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_bytes()
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut spare = self.home.0.lock().unwrap_or_else(|e| e.into_inner());
        // Concurrent scrapes: keep one buffer, the largest.
        if spare
            .as_ref()
            .is_none_or(|s| s.capacity() < self.buf.capacity())
        {
            *spare = Some(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_comes_back_after_the_response_is_dropped() {
        let pool = ScrapeBuffer::default();
        let first = pool.render(|out| out.push_str(&"x".repeat(1 << 20)));
        assert_eq!(first.len(), 1 << 20);
        let ptr = first.as_ptr();
        drop(first);
        let second = pool.render(|out| out.push_str("small"));
        assert_eq!(&second[..], b"small");
        assert_eq!(second.as_ptr(), ptr, "the same allocation is reused");
        // While one is out, another scrape gets its own buffer.
        let third = pool.render(|out| out.push_str("other"));
        assert_eq!(&third[..], b"other");
        assert_eq!(&second[..], b"small");
    }
}
