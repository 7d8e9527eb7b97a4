//! What `/metrics` serves, in which format, and the buffer it is written into.
//!
//! The format is the one the scraper's `Accept` prefers ([`Format::negotiate`]): the
//! classic Prometheus text format unless it asks for OpenMetrics (exemplars) or the
//! Prometheus protobuf format (native histograms). Each format carries the whole exposition.
//!
//! A service with a thousand routes exposes tens of megabytes per scrape. Written into a
//! fresh allocation each time, a third of the render is the kernel handing out and zeroing
//! new pages (large allocations are mapped and unmapped on every call), so the admin
//! endpoint writes into a buffer that comes back when the response has been sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;

use super::process::ProcessStats;
use super::{openmetrics, protobuf, Registry};

/// An exposition format `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format 0.0.4: what every scraper reads.
    Text,
    /// OpenMetrics 1.0 text: the classic content plus exemplars.
    OpenMetrics,
    /// Prometheus's delimited `MetricFamily` protobuf: plus native histograms.
    Protobuf,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
                 encoding=delimited"
            }
        }
    }

    /// The format an `Accept` header prefers, by its q-values; the text format when it
    /// names none of ours (or is absent, or unreadable), so a scrape never fails on it.
    /// At equal q-values the more specific range wins, then the text format.
    pub(crate) fn negotiate(accept: Option<&HeaderValue>) -> Format {
        let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
            return Format::Text;
        };
        // Per format: (q, specificity) of the most specific range that matches it.
        let mut best = [(0.0f32, 0u8, false); 3];
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut params: Vec<(String, String)> = Vec::new();
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
                if k == "q" {
                    q = v
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0);
                } else {
                    params.push((k, v.to_owned()));
                }
            }
            let param = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let matches: [(Format, u8); 3] = [
                (
                    Format::Text,
                    match media.as_str() {
                        "text/plain"
                            if matches!(param("version"), None | Some("0.0.4") | Some("1.0.0")) =>
                        {
                            3
                        }
                        "text/*" => 2,
                        "*/*" => 1,
                        _ => 0,
                    },
                ),
                (
                    Format::OpenMetrics,
                    match media.as_str() {
                        "application/openmetrics-text"
                            if matches!(param("version"), None | Some("1.0.0") | Some("0.0.1")) =>
                        {
                            3
                        }
                        "application/*" => 2,
                        "*/*" => 1,
                        _ => 0,
                    },
                ),
                (
                    Format::Protobuf,
                    match media.as_str() {
                        "application/vnd.google.protobuf"
                            if param("proto") == Some("io.prometheus.client.MetricFamily")
                                && param("encoding") == Some("delimited") =>
                        {
                            3
                        }
                        // Nobody wants binary by accident: only when named.
                        _ => 0,
                    },
                ),
            ];
            for (i, (_, specificity)) in matches.into_iter().enumerate() {
                if specificity > 0 && specificity > best[i].1 {
                    best[i] = (q, specificity, true);
                }
            }
        }
        let order = [Format::Text, Format::OpenMetrics, Format::Protobuf];
        let mut chosen = (Format::Text, 0.0f32, 0u8);
        for (format, (q, specificity, matched)) in order.into_iter().zip(best) {
            if matched && (q > chosen.1 || (q == chosen.1 && q > 0.0 && specificity > chosen.2)) {
                chosen = (format, q, specificity);
            }
        }
        chosen.0
    }
}

/// What `/metrics` renders.
#[derive(Clone)]
pub(crate) enum Exposition {
    /// The crate's registry.
    Own(Arc<Registry>),
    /// The application's Prometheus recorder.
    Handle(PrometheusHandle),
    /// Nothing: the application's recorder is not a Prometheus one.
    None,
}

impl Exposition {
    /// What `/metrics` renders for the registry `sink` records into: the crate's own, or
    /// the application's when `backend` gave its handle.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn of(sink: &super::Sink, backend: &super::MetricsBackend) -> Exposition {
        match (sink, backend) {
            (super::Sink::Own(registry), _) => Exposition::Own(registry.clone()),
            (
                super::Sink::Global,
                super::MetricsBackend::Global {
                    render: Some(handle),
                },
            ) => Exposition::Handle(handle.clone()),
            _ => Exposition::None,
        }
    }

    /// Appends the registry's metrics in the Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        match self {
            Exposition::Own(registry) => registry.render(out),
            Exposition::Handle(handle) => out.push_str(&handle.render()),
            Exposition::None => {}
        }
    }

    /// Writes the whole exposition in `format`: the registry, then the process metrics.
    pub(crate) fn render_as(&self, format: Format, out: &mut Vec<u8>) {
        out.clear();
        let process = || {
            let mut text = String::new();
            ProcessStats::read().render(&mut text);
            text
        };
        match format {
            Format::Text => as_string(out, |out| {
                self.render(out);
                ProcessStats::read().render(out);
            }),
            Format::OpenMetrics => as_string(out, |out| {
                match self {
                    Exposition::Own(registry) => {
                        openmetrics::write_text(&registry.handle.render(), out);
                        openmetrics::write_histograms(&registry.histograms, out);
                    }
                    Exposition::Handle(handle) => openmetrics::write_text(&handle.render(), out),
                    Exposition::None => {}
                }
                openmetrics::write_text(&process(), out);
                out.push_str(openmetrics::EOF);
            }),
            Format::Protobuf => {
                match self {
                    Exposition::Own(registry) => {
                        protobuf::write_text(&registry.handle.render(), out);
                        protobuf::write_histograms(&registry.histograms, out);
                    }
                    Exposition::Handle(handle) => protobuf::write_text(&handle.render(), out),
                    Exposition::None => {}
                }
                protobuf::write_text(&process(), out);
            }
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

/// Runs a text writer over the empty byte buffer `out`, without copying or re-checking.
fn as_string(out: &mut Vec<u8>, write: impl FnOnce(&mut String)) {
    out.clear();
    // An empty buffer is valid UTF-8: only its allocation moves.
    let mut text = String::from_utf8(std::mem::take(out)).unwrap_or_default();
    write(&mut text);
    *out = text.into_bytes();
}

/// One spare exposition buffer, lent to a scrape and returned when its response is dropped.
#[derive(Clone, Default)]
pub(crate) struct ScrapeBuffer(Arc<Mutex<Option<Vec<u8>>>>, Arc<AtomicUsize>);

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
    pub(crate) fn render(&self, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
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
    buf: Vec<u8>,
    home: ScrapeBuffer,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
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
        let first = pool.render(|out| out.extend_from_slice("x".repeat(1 << 20).as_bytes()));
        assert_eq!(first.len(), 1 << 20);
        let ptr = first.as_ptr();
        drop(first);
        let second = pool.render(|out| out.extend_from_slice(b"small"));
        assert_eq!(&second[..], b"small");
        assert_eq!(second.as_ptr(), ptr, "the same allocation is reused");
        // While one is out, another scrape gets its own buffer.
        let third = pool.render(|out| out.extend_from_slice(b"other"));
        assert_eq!(&third[..], b"other");
        assert_eq!(&second[..], b"small");
    }

    fn negotiate(accept: &str) -> Format {
        Format::negotiate(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    #[test]
    fn the_scrapers_preference_chooses_the_format() {
        assert_eq!(Format::negotiate(None), Format::Text);
        // Prometheus 2.x, and with native histograms on.
        assert_eq!(
            negotiate("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::Protobuf
        );
        // q-values, not order, decide.
        assert_eq!(
            negotiate("text/plain;q=0.5, application/openmetrics-text; version=1.0.0; q=0.9"),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate("application/openmetrics-text;q=0.2,text/plain;q=0.3"),
            Format::Text
        );
        // curl, browsers, and what we do not serve: the text format.
        assert_eq!(negotiate("*/*"), Format::Text);
        assert_eq!(
            negotiate("text/html,application/xhtml+xml,*/*;q=0.8"),
            Format::Text
        );
        assert_eq!(negotiate("application/json"), Format::Text);
        assert_eq!(
            negotiate("application/openmetrics-text;version=2.0.0"),
            Format::Text
        );
        assert_eq!(
            negotiate("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"),
            Format::Text
        );
        // Refused by q=0.
        assert_eq!(
            negotiate("application/openmetrics-text;q=0, text/plain;q=0.1"),
            Format::Text
        );
        assert_eq!(negotiate("application/openmetrics-text;q=0"), Format::Text);
    }
}
