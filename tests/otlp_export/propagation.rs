//! One trace across services and clients: W3C context in and out, logs that carry the
//! trace, a user's exporter or processor, untrusted callers as links.

use super::*;

/// The JSON log lines of this test binary. Installed globally: a thread-scoped subscriber
/// races with other tests' threads over `tracing`'s per-callsite interest cache.
fn captured_logs() -> CapturedLogs {
    static LOGS: std::sync::OnceLock<CapturedLogs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(logging::layer(LogFormat::Json, logs.clone()));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

#[tokio::test]
async fn one_trace_across_two_services_over_http_protobuf_with_logs() {
    let _shared = not_measuring().await;
    let logs = captured_logs();

    let received = OtlpReceiver::http().await;
    let vars = received.vars(&[("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let backend_obs = from_vars("backend", &vars).build().unwrap();
    let backend = Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move {
                tracing::info!(item = id, "loading item");
                format!("item {id}")
            }),
        )
        .layer(backend_obs.layer());
    let backend_addr = serve(backend).await;

    let frontend_obs = from_vars("frontend", &vars).build().unwrap();
    let downstream = frontend_obs.client_layer().layer(client());
    let frontend = Router::new()
        .route(
            "/page",
            get(move || {
                let mut downstream = downstream.clone();
                async move {
                    tracing::info!("rendering page");
                    let req = Request::get(format!("http://{backend_addr}/items/3"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let res = downstream.call(req).await.unwrap();
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    format!("page with {}", String::from_utf8_lossy(&body))
                }
            }),
        )
        .layer(frontend_obs.layer());
    let frontend_addr = serve(frontend).await;

    assert_eq!(
        call(&format!("http://{frontend_addr}/page"), &[]).await,
        200
    );
    received.wait_for(3).await;

    let (svc, page) = received.named("GET /page").expect("frontend server span");
    assert_eq!(
        (svc.as_str(), page.kind),
        ("frontend", SpanKind::Server as i32)
    );
    let (svc, out) = received.named("GET").expect("frontend client span");
    assert_eq!(
        (svc.as_str(), out.kind),
        ("frontend", SpanKind::Client as i32)
    );
    let (svc, item) = received
        .named("GET /items/{id}")
        .expect("backend server span");
    assert_eq!(
        (svc.as_str(), item.kind),
        ("backend", SpanKind::Server as i32)
    );
    // One trace: page -> client call -> backend.
    assert!(page.parent_span_id.is_empty());
    assert_eq!(out.trace_id, page.trace_id);
    assert_eq!(item.trace_id, page.trace_id);
    assert_eq!(out.parent_span_id, page.span_id);
    assert_eq!(item.parent_span_id, out.span_id);
    assert_eq!(
        attr(&out, "url.full"),
        Some(format!("http://{backend_addr}/items/3"))
    );
    assert_eq!(
        attr(&out, "http.response.status_code").as_deref(),
        Some("200")
    );

    // The log lines written in the handlers carry the exported spans' ids.
    let text = logs.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {text}"))
            .clone()
    };
    let rendering = find("rendering page");
    assert_eq!(rendering["trace_id"], hex(&page.trace_id));
    assert_eq!(rendering["span_id"], hex(&page.span_id));
    assert_eq!(rendering["request_id"], hex(&page.trace_id));
    assert_eq!(rendering["level"], "INFO");
    let loading = find("loading item");
    assert_eq!(loading["trace_id"], hex(&item.trace_id));
    assert_eq!(loading["span_id"], hex(&item.span_id));
    assert_eq!(loading["item"], 3);
    assert!(frontend_obs.shutdown(Duration::from_secs(5)));
    assert!(backend_obs.shutdown(Duration::from_secs(5)));
}

#[tokio::test]
async fn a_users_exporter_or_processor_gets_the_spans_and_untrusted_callers_become_links() {
    let _shared = not_measuring().await;
    let kept = Keep::default();
    let obs = isolated("edge")
        .span_exporter(kept.clone())
        .batch_settings(tower_observability::trace::BatchSettings {
            scheduled_delay: Duration::from_millis(20),
            ..Default::default()
        })
        .trust_inbound_context(false)
        .build()
        .unwrap();
    let addr = serve(users().layer(obs.layer())).await;
    let traced = [("traceparent", TRACEPARENT)];
    call(&format!("http://{addr}/users/1"), &traced).await;
    assert!(obs.flush_traces(Duration::from_secs(5)));
    let spans = kept.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "GET /users/{id}");
    // Not trusted: a new root, linked to the caller's span.
    assert_ne!(span.span_context.trace_id().to_string(), TRACE);
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert_eq!(span.links.len(), 1);
    assert_eq!(span.links[0].span_context.trace_id().to_string(), TRACE);
    assert_eq!(span.links[0].span_context.span_id().to_string(), CALLER);
    // The same exporter cannot serve two layers.
    let builder = isolated("twice").span_exporter(Keep::default());
    assert!(builder.clone().build().is_ok());
    assert!(builder
        .build()
        .unwrap_err()
        .to_string()
        .contains("span_exporter"));

    // A processor of the application's own pipeline, handed each span as it ends.
    let through = Keep::default();
    let obs = isolated("pipeline")
        .span_processor(opentelemetry_sdk::trace::SimpleSpanProcessor::new(
            through.clone(),
        ))
        .build()
        .unwrap();
    let addr = serve(users().layer(obs.layer())).await;
    call(&format!("http://{addr}/users/2"), &traced).await;
    let got = eventually(Duration::from_secs(5), || {
        let spans = through.0.lock().unwrap().clone();
        (!spans.is_empty()).then_some(spans)
    })
    .await
    .unwrap();
    assert_eq!(got[0].span_context.trace_id().to_string(), TRACE);
    assert_eq!(got[0].parent_span_id.to_string(), CALLER);
    assert!(got[0].parent_span_is_remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_span_for_a_non_tower_client_is_exported_as_the_downstream_parent() {
    let _shared = not_measuring().await;
    let received = OtlpReceiver::http().await;
    let vars = received.vars(&[]);
    let backend_obs = from_vars("stock", &vars).build().unwrap();
    let backend = Router::new()
        .route("/stock/{id}", get(|| async { "12" }))
        .route(
            "/gone/{id}",
            get(|| async { (http::StatusCode::NOT_FOUND, "no") }),
        )
        .layer(backend_obs.layer());
    let backend_addr = serve(backend).await;

    // The frontend calls with a client that is not a tower service (a plain hyper client
    // standing in for reqwest): the adapter opens the span, the call carries it.
    let frontend_obs = from_vars("shop", &vars).build().unwrap();
    let outbound = frontend_obs.client_layer();
    let frontend = Router::new()
        .route(
            "/product",
            get(move || {
                let outbound = outbound.clone();
                async move {
                    let mut statuses = Vec::new();
                    for path in ["stock/1", "gone/2"] {
                        let url: http::Uri =
                            format!("http://{backend_addr}/{path}").parse().unwrap();
                        let span = outbound.outbound(&http::Method::GET, &url);
                        let mut req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
                        span.inject(req.headers_mut());
                        match client().request(req).await {
                            Ok(res) => {
                                statuses.push(res.status().as_u16());
                                span.finish(res.status());
                            }
                            Err(_) => span.fail(),
                        }
                    }
                    // A span dropped unended was a call given up on.
                    let url: http::Uri = "http://127.0.0.1:9/never".parse().unwrap();
                    drop(outbound.outbound(&http::Method::POST, &url));
                    format!("{statuses:?}")
                }
            }),
        )
        .layer(frontend_obs.layer());
    let frontend_addr = serve(frontend).await;
    assert_eq!(
        call(&format!("http://{frontend_addr}/product"), &[]).await,
        200
    );
    assert!(backend_obs.flush_traces(Duration::from_secs(5)));
    assert!(frontend_obs.flush_traces(Duration::from_secs(5)));

    let spans = received.spans();
    let (_, page) = received
        .named("GET /product")
        .expect("frontend server span");
    let clients: Vec<&Span> = spans
        .iter()
        .filter(|(svc, s)| svc == "shop" && s.kind == SpanKind::Client as i32)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(clients.len(), 3, "{spans:#?}");
    for (server_name, status, error) in [
        ("GET /stock/{id}", "200", None),
        ("GET /gone/{id}", "404", Some("404")),
    ] {
        let (svc, server) = received.named(server_name).expect("backend server span");
        assert_eq!(svc, "stock");
        // The downstream span's parent is an exported client span of the same trace...
        let parent = clients
            .iter()
            .find(|c| c.span_id == server.parent_span_id)
            .unwrap_or_else(|| panic!("{server_name}: its parent was not exported"));
        assert_eq!(parent.trace_id, page.trace_id);
        assert_eq!(server.trace_id, page.trace_id);
        // ... itself the child of the frontend's server span.
        assert_eq!(parent.parent_span_id, page.span_id);
        assert_eq!(parent.name, "GET");
        assert_eq!(
            attr(parent, "http.response.status_code").as_deref(),
            Some(status)
        );
        assert_eq!(attr(parent, "error.type").as_deref(), error);
        assert!(attr(parent, "url.full")
            .unwrap()
            .starts_with(&format!("http://{backend_addr}/")));
    }
    let abandoned = clients
        .iter()
        .find(|c| c.name == "POST")
        .expect("the dropped span");
    assert_eq!(attr(abandoned, "error.type").as_deref(), Some("cancelled"));
    assert!(frontend_obs.shutdown(Duration::from_secs(5)));
    assert!(backend_obs.shutdown(Duration::from_secs(5)));
}
