//! The line to an OpenTelemetry collector: one `ExportTraceServiceRequest` per call, over
//! OTLP/HTTP (protobuf body) or OTLP/gRPC (HTTP/2 without TLS), with the hyper and tokio the
//! crate already uses: no second HTTP stack, no tonic in the service's build.
//!
//! Plain `http://` only, for a collector or agent beside the service (the usual setup);
//! for a TLS endpoint, build an exporter with the TLS stack of your choice and pass it with
//! [`ObservabilityBuilder::span_exporter`](crate::ObservabilityBuilder::span_exporter).

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::export::FinishedSpan;
use super::otlp::{OtlpProtocol, OtlpSettings};
use super::protobuf::SpanBatch;
use super::queue::{self, Backend, ExportSetup};
use crate::delivery::{self, DropReason, Failure};
use crate::wire::read_varint;

/// Which OTLP service a [`Collector`] calls: the one of spans, or of metrics (the push).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OtlpService {
    Traces,
    Metrics,
}

impl OtlpService {
    /// The gRPC method of the service.
    fn grpc_path(self) -> &'static str {
        match self {
            OtlpService::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            OtlpService::Metrics => {
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
            }
        }
    }

    /// The endpoint when none is set, for `grpc` or HTTP/protobuf.
    fn default_endpoint(self, grpc: bool) -> &'static str {
        match (self, grpc) {
            (_, true) => "http://localhost:4317",
            (OtlpService::Traces, false) => "http://localhost:4318/v1/traces",
            (OtlpService::Metrics, false) => "http://localhost:4318/v1/metrics",
        }
    }
}
/// The collector's answer is read up to this size (a partial-success message at most).
const MAX_ANSWER: usize = 64 * 1024;

/// A collector endpoint and how to talk to it.
pub(crate) struct Collector {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    /// The URL for the log: no user information.
    shown: String,
    headers: HeaderMap,
    grpc: bool,
    timeout: Duration,
}

impl Collector {
    /// Checks `settings` and makes the client of `service`; the error says what cannot be
    /// used.
    pub(crate) fn new(settings: &OtlpSettings, service: OtlpService) -> Result<Self, String> {
        let grpc = settings.protocol == OtlpProtocol::Grpc;
        let endpoint = settings
            .endpoint
            .as_deref()
            .unwrap_or(service.default_endpoint(grpc));
        let parsed: Uri = endpoint
            .parse()
            .map_err(|e| format!("endpoint {endpoint:?} is not a URL: {e}"))?;
        match parsed.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "endpoint {endpoint:?} needs TLS, which the built-in exporter does not \
                     speak: export to a collector over http://, or pass an exporter built \
                     with your TLS stack to span_exporter()"
                ))
            }
            _ => return Err(format!("endpoint {endpoint:?} must start with http://")),
        }
        let authority = parsed
            .authority()
            .ok_or_else(|| format!("endpoint {endpoint:?} has no host"))?
            .clone();
        // gRPC calls the service's method path on the endpoint's host; HTTP posts to the URL.
        let path = if grpc {
            service.grpc_path()
        } else {
            parsed.path_and_query().map_or("/", |p| p.as_str())
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
        let mut headers = HeaderMap::new();
        for (key, value) in &settings.headers {
            let name = HeaderName::from_bytes(key.as_bytes());
            let value = HeaderValue::from_str(value);
            match (name, value) {
                (Ok(name), Ok(mut value)) => {
                    // Export headers often carry API keys.
                    value.set_sensitive(true);
                    headers.append(name, value);
                }
                _ => return Err(format!("header {key:?} cannot be sent")),
            }
        }
        let content_type = if grpc {
            headers.insert("te", HeaderValue::from_static("trailers"));
            "application/grpc"
        } else {
            "application/x-protobuf"
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.timeout));
        let client = Client::builder(TokioExecutor::new())
            .http2_only(grpc)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Collector {
            client,
            shown: delivery::endpoint_for_log(&uri),
            uri,
            headers,
            grpc,
            timeout: settings.timeout,
        })
    }

    /// Bytes to leave before the message for [`send`](Self::send) to frame it in place.
    pub(crate) fn prefix(&self) -> usize {
        if self.grpc {
            5
        } else {
            0
        }
    }

    /// Sends one encoded export request (`ExportTraceServiceRequest` or
    /// `ExportMetricsServiceRequest`), which starts after
    /// [`prefix`](Self::prefix) bytes; the failure says why it was not taken.
    pub(crate) async fn send(&self, mut message: Vec<u8>) -> Result<(), Failure> {
        if self.grpc {
            // A gRPC message: uncompressed flag, big-endian length, the message.
            let len = u32::try_from(message.len() - 5)
                .map_err(|_| Failure::new(DropReason::Rejected, "batch too large"))?;
            message[0] = 0;
            message[1..5].copy_from_slice(&len.to_be_bytes());
        }
        let body = Bytes::from(message);
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        if self.grpc {
            *req.version_mut() = http::Version::HTTP_2;
        }
        let call = async {
            let res = self.client.request(req).await.map_err(|e| {
                // Refused, reset, a name that does not resolve: no answer came.
                Failure::new(DropReason::Refused, delivery::error_chain(&e))
            })?;
            let status = res.status();
            let head = res.headers().clone();
            let answer = Limited::new(res.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    Failure::new(DropReason::Refused, format!("reading the answer: {e}"))
                })?;
            if !self.grpc {
                return if status.is_success() {
                    Ok(())
                } else {
                    Err(Failure {
                        retry_after: delivery::retry_after(&head),
                        ..Failure::new(
                            if status == http::StatusCode::TOO_MANY_REQUESTS {
                                DropReason::RateLimited
                            } else {
                                DropReason::Rejected
                            },
                            format!("the collector answered {status}"),
                        )
                    })
                };
            }
            // Trailers-only answers carry the status in the head.
            let trailers = answer.trailers();
            let field = |name: &str| {
                trailers
                    .and_then(|t| t.get(name))
                    .or_else(|| head.get(name))
            };
            match field("grpc-status").map(|v| v.as_bytes()) {
                Some(b"0") if status.is_success() => Ok(()),
                Some(code) => {
                    let message = field("grpc-message")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let retry_after = field("grpc-status-details-bin")
                        .and_then(|v| grpc_retry_delay(v.as_bytes()));
                    // RESOURCE_EXHAUSTED: the collector sheds load.
                    let reason = if code == b"8" {
                        DropReason::RateLimited
                    } else {
                        DropReason::Rejected
                    };
                    Err(Failure {
                        retry_after,
                        ..Failure::new(
                            reason,
                            format!(
                                "the collector answered grpc-status {} {message}",
                                String::from_utf8_lossy(code)
                            ),
                        )
                    })
                }
                None => Err(Failure::new(
                    DropReason::Rejected,
                    format!("the collector answered {status} without a grpc-status"),
                )),
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                DropReason::Timeout,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

/// The delay a gRPC error's `google.rpc.RetryInfo` asks for, from the base64
/// `grpc-status-details-bin` (a `google.rpc.Status` whose details are `Any`s).
fn grpc_retry_delay(details: &[u8]) -> Option<Duration> {
    const RETRY_INFO: &[u8] = b"type.googleapis.com/google.rpc.RetryInfo";
    let status = base64(details)?;
    // Status.details (3) -> Any { type_url (1), value (2) } -> RetryInfo.retry_delay (1)
    // -> Duration { seconds (1), nanos (2) }.
    let info = protobuf_fields(&status)
        .filter(|(field, _)| *field == 3)
        .filter_map(|(_, any)| any.bytes())
        .find_map(|any| {
            let mut fields = protobuf_fields(any);
            let is_retry = fields
                .clone()
                .any(|(f, v)| f == 1 && v.bytes() == Some(RETRY_INFO));
            is_retry.then(|| fields.find(|(f, _)| *f == 2)?.1.bytes())?
        })?;
    let delay = protobuf_fields(info).find(|(f, _)| *f == 1)?.1.bytes()?;
    let (mut seconds, mut nanos) = (0, 0);
    for (field, value) in protobuf_fields(delay) {
        match (field, value) {
            (1, Wire::Varint(v)) => seconds = v,
            (2, Wire::Varint(v)) => nanos = v,
            _ => {}
        }
    }
    Some(Duration::from_secs(seconds.min(3600)) + Duration::from_nanos(nanos.min(999_999_999)))
}

/// Standard or URL-safe base64, padded or not.
fn base64(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.iter().filter(|c| **c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = ((acc << 6) | u32::from(v)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// One protobuf field's value.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Wire<'a> {
    fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Wire::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// The (field number, value) pairs of a protobuf message, up to the first malformed one.
fn protobuf_fields(mut buf: &[u8]) -> impl Iterator<Item = (u64, Wire<'_>)> + Clone {
    std::iter::from_fn(move || {
        let key = read_varint(&mut buf)?;
        let value = match key & 7 {
            0 => Wire::Varint(read_varint(&mut buf)?),
            1 | 5 => {
                let len = if key & 7 == 1 { 8 } else { 4 };
                buf = buf.get(len..)?;
                Wire::Other
            }
            2 => {
                let len = usize::try_from(read_varint(&mut buf)?).ok()?;
                let bytes = buf.get(..len)?;
                buf = &buf[len..];
                Wire::Bytes(bytes)
            }
            _ => return None,
        };
        Some((key >> 3, value))
    })
}

/// The built-in export: spans encoded by the crate, sent by [`Collector`].
pub(crate) struct OtlpBackend {
    collector: Collector,
    batch: SpanBatch,
}

impl OtlpBackend {
    pub(crate) fn new(settings: &OtlpSettings, setup: &ExportSetup) -> Result<Self, String> {
        Ok(OtlpBackend {
            collector: Collector::new(settings, OtlpService::Traces)?,
            batch: SpanBatch::new(&setup.resource),
        })
    }
}

impl Backend for OtlpBackend {
    fn export(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        spans: &mut dyn Iterator<Item = FinishedSpan>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        for span in spans {
            self.batch.push(&span);
        }
        let message = self.batch.take(self.collector.prefix());
        queue::within(runtime, timeout, self.collector.send(message))
    }

    fn shutdown(&mut self, _runtime: &tokio::runtime::Runtime) -> bool {
        true
    }

    fn endpoint(&self) -> String {
        self.collector.shown.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(protocol: OtlpProtocol, endpoint: Option<&str>) -> OtlpSettings {
        OtlpSettings {
            protocol,
            endpoint: endpoint.map(str::to_owned),
            headers: vec![("api-key".into(), "s3cret".into())],
            ..OtlpSettings::default()
        }
    }

    #[test]
    fn endpoints_become_the_url_each_protocol_posts_to() {
        let http = Collector::new(
            &settings(OtlpProtocol::HttpProtobuf, None),
            OtlpService::Traces,
        )
        .unwrap();
        assert_eq!(http.uri, "http://localhost:4318/v1/traces");
        assert_eq!(http.headers["content-type"], "application/x-protobuf");
        assert!(http.headers["api-key"].is_sensitive());
        let grpc = Collector::new(
            &settings(OtlpProtocol::Grpc, Some("http://otel:4317/")),
            OtlpService::Traces,
        )
        .unwrap();
        assert_eq!(
            grpc.uri,
            "http://otel:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        assert_eq!(grpc.headers["content-type"], "application/grpc");
        assert_eq!(grpc.headers["te"], "trailers");
    }

    #[test]
    fn endpoints_it_cannot_use_are_refused_with_the_reason() {
        for (endpoint, reason) in [
            ("https://api.honeycomb.io", "TLS"),
            ("ftp://collector:21", "http://"),
            ("not a url", "not a URL"),
        ] {
            let err = Collector::new(
                &settings(OtlpProtocol::HttpProtobuf, Some(endpoint)),
                OtlpService::Traces,
            )
            .err()
            .unwrap_or_else(|| panic!("{endpoint} accepted"));
            assert!(err.contains(reason) && err.contains(endpoint), "{err}");
        }
    }
}
