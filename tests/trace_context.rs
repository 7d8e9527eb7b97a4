//! W3C Trace Context through real servers: what a caller sends is continued, what the
//! service sends downstream through the client layer carries the same trace, and the
//! request id and `traceresponse` come back in the response.

mod support;

use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use support::*;
use tower::{Service, ServiceBuilder};
use tower_observability::trace::{self, TraceParent, TraceState};
use tower_observability::RequestContext;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

async fn get_with(uri: &str, headers: &[(&str, &str)]) -> (HeaderMap, Bytes) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client()
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let headers = res.headers().clone();
    (headers, res.into_body().collect().await.unwrap().to_bytes())
}

/// A handler that answers with the trace context it runs in, as `traceparent|request id`.
async fn whoami(ctx: RequestContext) -> String {
    let current = trace::current().expect("the handler runs inside the request span");
    assert_eq!(current, ctx.span);
    format!(
        "{}|{}|{}",
        ctx.span.traceparent(),
        ctx.request_id.map(|r| r.to_string()).unwrap_or_default(),
        ctx.span.state.as_str()
    )
}

fn parts(body: &Bytes) -> (TraceParent, String, String) {
    let text = std::str::from_utf8(body).unwrap();
    let mut it = text.split('|');
    let tp = TraceParent::parse(it.next().unwrap().as_bytes()).unwrap();
    (
        tp,
        it.next().unwrap().to_owned(),
        it.next().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_callers_trace_is_continued() {
    let obs = isolated("ctx").traceresponse(true).build().unwrap();
    let addr = serve(Router::new().route("/who", get(whoami)).layer(obs.layer())).await;
    let uri = format!("http://{addr}/who");

    // A valid traceparent: same trace, new span, sampled flag followed; tracestate kept.
    let tp = format!("00-{TRACE}-{CALLER}-01");
    let (headers, body) = get_with(
        &uri,
        &[
            ("traceparent", &tp),
            ("tracestate", "a=1"),
            ("tracestate", "b@c=2"),
        ],
    )
    .await;
    let (span, request_id, state) = parts(&body);
    assert_eq!(span.trace_id.to_string(), TRACE);
    assert_ne!(span.parent_id.to_string(), CALLER);
    assert!(span.flags.is_sampled());
    assert_eq!(state, "a=1,b@c=2");
    // The request id was generated (the trace id) and echoed.
    assert_eq!(request_id, TRACE);
    assert_eq!(headers["x-request-id"], TRACE);
    // traceresponse names the server span.
    let tr = TraceParent::parse(headers["traceresponse"].as_bytes()).unwrap();
    assert_eq!(tr, span);

    // Unsampled caller: followed (parent-based default), still propagated.
    let (_, body) = get_with(&uri, &[("traceparent", &format!("00-{TRACE}-{CALLER}-00"))]).await;
    assert!(!parts(&body).0.flags.is_sampled());

    // Invalid traceparent: a new trace, never an error; its tracestate is ignored.
    for bad in [
        format!("00-{}-{CALLER}-01", TRACE.to_uppercase()),
        format!("ff-{TRACE}-{CALLER}-01"),
        format!("00-{}-{CALLER}-01", "0".repeat(32)),
    ] {
        let (_, body) = get_with(&uri, &[("traceparent", &bad), ("tracestate", "a=1")]).await;
        let (span, _, state) = parts(&body);
        assert_ne!(span.trace_id.to_string(), TRACE, "{bad}");
        assert!(span.flags.is_sampled() && span.flags.is_random());
        assert_eq!(state, "");
    }
    // Two traceparent lines: ambiguous, so a new trace.
    let (_, body) = get_with(&uri, &[("traceparent", &tp), ("traceparent", &tp)]).await;
    assert_ne!(parts(&body).0.trace_id.to_string(), TRACE);
    // Invalid tracestate: dropped, the traceparent still holds.
    for bad in ["A=1", "@foo=1,bar=2", "foo.bar=1"] {
        let (_, body) = get_with(&uri, &[("traceparent", &tp), ("tracestate", bad)]).await;
        let (span, _, state) = parts(&body);
        assert_eq!(
            (span.trace_id.to_string().as_str(), state.as_str()),
            (TRACE, ""),
            "{bad}"
        );
    }
    // The editor's draft: `@` anywhere after the first character, digits first; a
    // duplicated key keeps its first occurrence, within a line or across lines.
    for (sent, kept) in [
        (&["foo@=1,bar=2"][..], "foo@=1,bar=2"),
        (&["foo@@bar=1,1st=2"][..], "foo@@bar=1,1st=2"),
        (&["foo@bar@baz=1"][..], "foo@bar@baz=1"),
        (&["foo=1,foo=2"][..], "foo=1"),
        (&["foo=1,bar=2", "foo=3,baz=4"][..], "foo=1,bar=2,baz=4"),
    ] {
        let mut headers = vec![("traceparent", tp.as_str())];
        headers.extend(sent.iter().map(|line| ("tracestate", *line)));
        let (_, body) = get_with(&uri, &headers).await;
        let (span, _, state) = parts(&body);
        assert_eq!(span.trace_id.to_string(), TRACE, "{sent:?}");
        assert_eq!(state, kept, "{sent:?}");
    }

    // The caller's request id is kept when valid, replaced when not.
    let (headers, body) = get_with(&uri, &[("x-request-id", "req-42")]).await;
    assert_eq!(parts(&body).1, "req-42");
    assert_eq!(headers["x-request-id"], "req-42");
    let long = "x".repeat(300);
    let (headers, body) = get_with(&uri, &[("x-request-id", &long)]).await;
    let (span, request_id, _) = parts(&body);
    assert_eq!(request_id, span.trace_id.to_string());
    assert_eq!(headers["x-request-id"], request_id.as_str());
}

#[tokio::test]
async fn untrusted_inbound_context_starts_a_new_trace() {
    let obs = isolated("edge")
        .trust_inbound_context(false)
        .request_id_header(None)
        .build()
        .unwrap();
    let addr = serve(Router::new().route("/who", get(whoami)).layer(obs.layer())).await;
    let tp = format!("00-{TRACE}-{CALLER}-00");
    let (headers, body) = get_with(
        &format!("http://{addr}/who"),
        &[("traceparent", &tp), ("tracestate", "a=1")],
    )
    .await;
    let (span, request_id, state) = parts(&body);
    assert_ne!(span.trace_id.to_string(), TRACE);
    // The caller's "not sampled" does not bind a new root.
    assert!(span.flags.is_sampled());
    assert_eq!((request_id.as_str(), state.as_str()), ("", ""));
    assert!(headers.get("x-request-id").is_none());
    assert!(headers.get("traceresponse").is_none());
}

#[tokio::test]
async fn the_client_layer_carries_the_trace_downstream() {
    // Backend: records the headers it was called with.
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let backend_seen = seen.clone();
    let backend = Router::new().route(
        "/inner",
        get(move |headers: HeaderMap| {
            backend_seen.lock().unwrap().push(headers);
            async { "ok" }
        }),
    );
    let backend_addr = serve(backend).await;

    let obs = isolated("frontend").build().unwrap();
    let downstream = ServiceBuilder::new()
        .layer(obs.client_layer())
        .service(client());
    let frontend = Router::new()
        .route(
            "/outer",
            get(move |ctx: RequestContext| {
                let mut downstream = downstream.clone();
                async move {
                    let req = Request::get(format!("http://{backend_addr}/inner"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let res = downstream.call(req).await.unwrap();
                    assert_eq!(res.status(), 200);
                    ctx.span.traceparent().to_string()
                }
            }),
        )
        .layer(obs.layer());
    let addr = serve(frontend).await;

    let tp = format!("00-{TRACE}-{CALLER}-01");
    let (_, body) = get_with(
        &format!("http://{addr}/outer"),
        // A duplicated key does not stop the list: the first occurrence is passed on.
        &[("traceparent", &tp), ("tracestate", "vendor=v,vendor=dup")],
    )
    .await;
    let server_span = TraceParent::parse(&body).unwrap();
    let seen_again = seen.clone();
    let seen = seen.lock().unwrap().clone();
    let outbound = TraceParent::from_headers(&seen[0]).expect("traceparent injected");
    assert_eq!(outbound.trace_id.to_string(), TRACE);
    assert_ne!(
        outbound.parent_id, server_span.parent_id,
        "a client span of its own"
    );
    assert!(outbound.flags.is_sampled());
    assert_eq!(TraceState::from_headers(&seen[0]).as_str(), "vendor=v");
    assert_eq!(seen[0]["tracestate"], "vendor=v");
    // The served request's id (generated: the trace id) travels with the call.
    assert_eq!(seen[0]["x-request-id"], TRACE);

    // Outside any request the client layer starts a new trace.
    let mut lone = ServiceBuilder::new()
        .layer(obs.client_layer())
        .service(client());
    lone.call(
        Request::get(format!("http://{backend_addr}/inner"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    let last = seen_again.lock().unwrap().last().cloned().unwrap();
    let lone = TraceParent::from_headers(&last).unwrap();
    assert_ne!(lone.trace_id.to_string(), TRACE);
}

#[tokio::test]
async fn tracing_off_leaves_the_headers_alone() {
    // A backend that records the headers it was called with.
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let backend_seen = seen.clone();
    let backend = Router::new().route(
        "/inner",
        get(move |headers: HeaderMap| {
            backend_seen.lock().unwrap().push(headers);
            async { "ok" }
        }),
    );
    let backend_addr = serve(backend).await;

    let obs = isolated("quiet").tracing(false).build().unwrap();
    let downstream = ServiceBuilder::new()
        .layer(obs.client_layer())
        .service(client());
    let outbound = obs.client_layer();
    let app = Router::new()
        .route(
            "/plain",
            get(move || {
                let mut downstream = downstream.clone();
                let outbound = outbound.clone();
                async move {
                    assert!(trace::current_request().is_none() && trace::current().is_none());
                    // Through the client layer: passed through untouched.
                    let req = Request::get(format!("http://{backend_addr}/inner"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    assert_eq!(downstream.call(req).await.unwrap().status(), 200);
                    // The adapter for other clients: nothing to inject.
                    let uri: http::Uri = format!("http://{backend_addr}/inner").parse().unwrap();
                    let span = outbound.outbound(&http::Method::GET, &uri);
                    assert!(span.context().is_none());
                    let mut headers = HeaderMap::new();
                    span.inject(&mut headers);
                    assert!(headers.is_empty());
                    span.finish(http::StatusCode::OK);
                    "plain"
                }
            }),
        )
        .layer(obs.layer());
    let addr = serve(app).await;
    let tp = format!("00-{TRACE}-{CALLER}-01");
    let (headers, body) = get_with(
        &format!("http://{addr}/plain"),
        &[("traceparent", &tp), ("x-request-id", "r1")],
    )
    .await;
    assert_eq!(body, "plain");
    assert!(headers.get("x-request-id").is_none());
    // Outside a request too: no new root trace is started for the call.
    let mut lone = ServiceBuilder::new()
        .layer(obs.client_layer())
        .service(client());
    let req = Request::get(format!("http://{backend_addr}/inner"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(lone.call(req).await.unwrap().status(), 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for headers in &seen {
        for name in ["traceparent", "tracestate", "x-request-id"] {
            assert!(headers.get(name).is_none(), "{name} sent: {headers:?}");
        }
    }
}
