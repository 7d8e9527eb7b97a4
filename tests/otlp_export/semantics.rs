//! Spans by the semantic conventions at real receivers: names, kinds, attributes,
//! parents, the resource; gRPC calls as RPC spans.

use super::*;

#[tokio::test]
async fn grpc_receiver_gets_server_spans_by_the_semantic_conventions() {
    let _shared = not_measuring().await;
    let received = OtlpReceiver::grpc().await;
    let vars = received.vars(&[
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=identity"),
    ]);
    let obs = from_vars("users", &vars).build().unwrap();
    let addr = serve(users().layer(obs.layer())).await;
    let base = format!("http://{addr}");
    assert_eq!(
        call(
            &format!("{base}/users/7?token=secret"),
            &[("traceparent", TRACEPARENT), ("x-request-id", "req-7")]
        )
        .await,
        200
    );
    assert_eq!(call(&format!("{base}/boom"), &[]).await, 503);
    assert_eq!(call(&format!("{base}/missing"), &[]).await, 404);
    assert_eq!(call(&format!("{base}/nowhere"), &[]).await, 404);
    // An unsampled caller: followed, so not exported.
    let unsampled = format!("00-{}-{CALLER}-00", "1".repeat(32));
    call(&format!("{base}/users/8"), &[("traceparent", &unsampled)]).await;
    let spans = received.wait_for(4).await;
    assert!(obs.flush_traces(Duration::from_secs(5)));
    assert_eq!(
        received.spans().len(),
        4,
        "{:?}",
        spans.iter().map(|s| &s.1.name).collect::<Vec<_>>()
    );

    let (service, user) = received.named("GET /users/{id}").expect("the route span");
    assert_eq!(service, "users");
    assert_eq!(user.kind, SpanKind::Server as i32);
    assert_eq!(hex(&user.trace_id), TRACE);
    assert_eq!(hex(&user.parent_span_id), CALLER);
    assert_eq!(user.span_id.len(), 8);
    for (key, want) in [
        ("http.request.method", "GET"),
        ("http.route", "/users/{id}"),
        ("url.path", "/users/7"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "otlp-test/1.0"),
        ("server.address", "127.0.0.1"),
    ] {
        assert_eq!(attr(&user, key).as_deref(), Some(want), "{key}");
    }
    assert_eq!(attr(&user, "server.port"), Some(addr.port().to_string()));
    assert_eq!(
        attr(&user, "http.request.header.x-request-id").as_deref(),
        Some("req-7")
    );
    // The query string (a secret here) is not recorded by default.
    assert!(user.attributes.iter().all(|kv| kv.key != "url.query"));
    assert!(!format!("{user:?}").contains("secret"));
    assert_eq!(
        user.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Unset as i32
    );
    assert!(user.end_time_unix_nano >= user.start_time_unix_nano);

    let (_, boom) = received.named("GET /boom").unwrap();
    assert_eq!(boom.status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(attr(&boom, "error.type").as_deref(), Some("503"));
    assert!(boom.parent_span_id.is_empty(), "no caller: a root span");
    let (_, missing) = received.named("GET /missing").unwrap();
    assert_eq!(
        missing.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Unset as i32,
        "4xx is not a server error"
    );
    // No route matched: the span is named by the method alone, without http.route.
    let (_, unmatched) = received.named("GET").unwrap();
    assert_eq!(attr(&unmatched, "http.route"), None);
    assert_eq!(attr(&unmatched, "url.path").as_deref(), Some("/nowhere"));

    let text = obs.render_metrics();
    assert_eq!(
        sample(&text, "tower_observability_spans_exported_total", &[]),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "tower_observability_spans_dropped_total", &[]),
        Some(0.0)
    );
    assert!(obs.shutdown(Duration::from_secs(5)));
}

#[tokio::test]
async fn grpc_calls_become_server_and_client_spans_with_rpc_attributes() {
    let _shared = not_measuring().await;
    use greeter::{GreeterClient, HelloRequest};
    let kept = Keep::default();
    let obs = isolated("greeter")
        .span_exporter(kept.clone())
        .build()
        .unwrap();
    let addr = grpc_support::start(&obs).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The client layer works on a tonic channel too.
    let mut client = GreeterClient::new(obs.client_layer().layer(channel));
    let hello = |fail_with| HelloRequest {
        name: "test".into(),
        fail_with,
    };
    client.say_hello(hello(0)).await.unwrap();
    assert_eq!(
        client.say_hello(hello(14)).await.unwrap_err().code() as i32,
        14
    );
    assert!(obs.flush_traces(Duration::from_secs(5)));
    let spans = kept.0.lock().unwrap().clone();
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .collect();
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Client)
        .collect();
    assert_eq!((servers.len(), clients.len()), (2, 2), "{spans:#?}");
    for span in &clients {
        assert_eq!(span.name, "demo.Greeter/SayHello");
    }
    for span in &servers {
        // The RPC conventions' name, not the HTTP one.
        assert_eq!(span.name, "demo.Greeter/SayHello");
        assert_eq!(attr(span, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(attr(span, "rpc.service").as_deref(), Some("demo.Greeter"));
        assert_eq!(attr(span, "rpc.method").as_deref(), Some("SayHello"));
        assert_eq!(attr(span, "network.protocol.version").as_deref(), Some("2"));
        // Each server span is the child of the client span that called it.
        let caller = clients
            .iter()
            .find(|c| c.span_context.span_id() == span.parent_span_id)
            .expect("a client span as parent");
        assert_eq!(caller.span_context.trace_id(), span.span_context.trace_id());
    }
    let failed = servers
        .iter()
        .find(|s| attr(s, "rpc.grpc.status_code").as_deref() == Some("14"))
        .expect("the UNAVAILABLE call");
    assert!(matches!(
        failed.status,
        opentelemetry::trace::Status::Error { .. }
    ));
    assert_eq!(attr(failed, "error.type").as_deref(), Some("UNAVAILABLE"));
    let ok = servers
        .iter()
        .find(|s| attr(s, "rpc.grpc.status_code").as_deref() == Some("0"))
        .expect("the OK call");
    assert_eq!(ok.status, opentelemetry::trace::Status::Unset);
}

// Flushing blocks this thread: the receivers run on the runtime's other workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_names_the_service_and_spans_carry_the_client_address() {
    let _shared = not_measuring().await;
    let received = OtlpReceiver::http().await;
    let vars = received.vars(&[
        ("OTEL_SERVICE_NAME", "checkout-api"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=overridden,service.version=2.4.1,\
             deployment.environment.name=prod%20eu,team=payments",
        ),
    ]);
    let obs = from_vars("fallback-name", &vars).build().unwrap();
    // axum's ConnectInfo gives the layer the peer's address.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = users().layer(obs.layer());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    // A raw connection, so the test knows the client's port.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = socket.local_addr().unwrap();
    socket
        .write_all(b"GET /users/5 HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(obs.flush_traces(Duration::from_secs(5)));

    let (service, span) = received.named("GET /users/{id}").expect("the span");
    assert_eq!(service, "checkout-api", "OTEL_SERVICE_NAME wins");
    assert_eq!(attr(&span, "client.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(&span, "client.port"), Some(local.port().to_string()));
    assert_eq!(attr(&span, "server.address").as_deref(), Some("shop"));
    let resource = received.resources().remove(0);
    for (key, want) in [
        ("service.name", "checkout-api"),
        ("service.version", "2.4.1"),
        ("deployment.environment.name", "prod eu"),
        ("team", "payments"),
        ("telemetry.sdk.language", "rust"),
    ] {
        assert_eq!(resource.get(key).map(String::as_str), Some(want), "{key}");
    }
    assert!(obs.shutdown(Duration::from_secs(5)));

    // Set in code, the builder's identity is the resource's.
    let received = OtlpReceiver::http().await;
    let obs = isolated("inventory")
        .service_version("9.1.0")
        .environment("staging")
        .otlp(tower_observability::trace::OtlpSettings {
            endpoint: Some(format!("{}/v1/traces", received.endpoint())),
            ..Default::default()
        })
        .build()
        .unwrap();
    let addr = serve(users().layer(obs.layer())).await;
    assert_eq!(call(&format!("http://{addr}/users/1"), &[]).await, 200);
    assert!(obs.flush_traces(Duration::from_secs(5)));
    let resource = received.resources().remove(0);
    for (key, want) in [
        ("service.name", "inventory"),
        ("service.version", "9.1.0"),
        ("deployment.environment.name", "staging"),
    ] {
        assert_eq!(resource.get(key).map(String::as_str), Some(want), "{key}");
    }
    // Without ConnectInfo there is no client address to record.
    let (_, span) = received.named("GET /users/{id}").unwrap();
    assert_eq!(attr(&span, "client.address"), None);
}

/// With `record_query(true)`, the query reaches both outputs (the built-in OTLP exporter and
/// an exporter of the application's own) with the values of secret-looking keys redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_query_reaches_the_collector_without_its_secrets() {
    let _shared = not_measuring().await;
    const QUERY: &str = "q=rust;token=SECRET-1&%70assword=SECRET-2&pw=SECRET-3&keyboard=qwerty";
    const REDACTED: &str = "q=rust;token=REDACTED&%70assword=REDACTED&pw=REDACTED&keyboard=qwerty";
    let received = OtlpReceiver::http().await;
    let vars = received.vars(&[("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let otlp = from_vars("queries", &vars)
        .record_query(true)
        .build()
        .unwrap();
    let kept = Keep::default();
    let sdk = isolated("queries-sdk")
        .span_exporter(kept.clone())
        .record_query(true)
        .build()
        .unwrap();
    for obs in [&otlp, &sdk] {
        let addr = serve(users().layer(obs.layer())).await;
        assert_eq!(
            call(&format!("http://{addr}/users/7?{QUERY}"), &[]).await,
            200
        );
        assert!(obs.flush_traces(Duration::from_secs(5)));
    }

    let spans = received.wait_for(1).await;
    let (_, span) = &spans[0];
    assert_eq!(attr(span, "url.query").as_deref(), Some(REDACTED));
    assert!(!format!("{span:?}").contains("SECRET"), "{span:?}");
    let spans = kept.0.lock().unwrap().clone();
    let query = spans[0]
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "url.query")
        .map(|kv| kv.value.to_string());
    assert_eq!(query.as_deref(), Some(REDACTED));
    assert!(!format!("{spans:?}").contains("SECRET"));
}

#[tokio::test]
async fn a_request_over_its_rate_limit_carries_the_decision_on_its_span() {
    use tower_observability::rate_limit::{Key, Mode, Policy, RateLimit};
    let _shared = not_measuring().await;
    let received = OtlpReceiver::http().await;
    let vars = received.vars(&[("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let mut bases = Vec::new();
    for (service, mode) in [("enforced", Mode::Enforce), ("shadowed", Mode::Shadow)] {
        let limit = RateLimit::new(Policy::new("once", "1/min;burst=1").key(Key::Global));
        let obs = from_vars(service, &vars)
            .rate_limit(limit.mode(mode))
            .build()
            .unwrap();
        let addr = serve(users().layer(obs.layer())).await;
        bases.push((service, format!("http://{addr}/users/1"), obs));
    }
    for (service, url, _) in &bases {
        assert_eq!(call(url, &[]).await, 200, "{service}: within the quota");
        let over = if *service == "enforced" { 429 } else { 200 };
        assert_eq!(call(url, &[]).await, over, "{service}: over it");
    }
    received.wait_for(4).await;
    for (service, _, obs) in &bases {
        assert!(obs.flush_traces(Duration::from_secs(5)));
        let spans: Vec<Span> = received
            .spans()
            .into_iter()
            .filter(|(s, _)| s == service)
            .map(|(_, span)| span)
            .collect();
        assert_eq!(spans.len(), 2, "{service}");
        let found = |span: &Span| {
            (
                attr(span, "http.response.status_code"),
                attr(span, "rate_limit.policy"),
                attr(span, "rate_limit.mode"),
            )
        };
        let mut seen: Vec<_> = spans.iter().map(found).collect();
        seen.sort();
        let (over_status, mode) = match *service {
            "enforced" => ("429", "enforce"),
            _ => ("200", "shadow"),
        };
        let within = (Some("200".to_owned()), None, None);
        let over = (
            Some(over_status.to_owned()),
            Some("once".to_owned()),
            Some(mode.to_owned()),
        );
        let mut want = vec![within, over];
        want.sort();
        assert_eq!(seen, want, "{service}");
        // A refusal is not a server error.
        assert!(spans
            .iter()
            .all(|s| s.status.as_ref().map_or(0, |s| s.code) != StatusCode::Error as i32));
    }
}
