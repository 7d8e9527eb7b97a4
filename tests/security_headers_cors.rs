//! Security headers and CORS through the one layer, end to end: a real axum server on
//! 127.0.0.1, a real HTTP client, the metrics as `/metrics` serves them.

mod support;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use support::*;
use tower_observability::{Cors, SecurityHeaders};

const REFUSED: &str = "tower_observability_cors_refused_total";
const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";

async fn request(
    client: &HttpClient,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Bytes) {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn app() -> Router {
    Router::new()
        .route(
            "/ok",
            get(|| async { "ok" }).options(|| async { "app options" }),
        )
        .route(
            "/cached",
            get(|| async {
                (
                    [
                        ("cache-control", "max-age=60"),
                        ("x-frame-options", "SAMEORIGIN"),
                        ("server", "handler/1.0"),
                        ("vary", "accept-encoding"),
                    ],
                    "cached",
                )
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .route("/panic", get(|| async { panic!("handler bug") as &str }))
}

fn once(headers: &HeaderMap, name: &str) -> String {
    let values: Vec<_> = headers.get_all(name).iter().collect();
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values[0].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn security_headers_are_on_every_response_once_and_keep_the_handlers() {
    let obs = isolated("headers").build().unwrap();
    let addr = serve(app().layer(obs.layer())).await;
    let client = client();
    for (path, status) in [
        ("/ok", 200),
        ("/missing", 404),
        ("/fail", 500),
        ("/panic", 500),
    ] {
        let (got, h, _) = request(&client, "GET", &format!("http://{addr}{path}"), &[]).await;
        assert_eq!(got, status, "{path}");
        assert_eq!(once(&h, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(once(&h, "x-frame-options"), "DENY", "{path}");
        assert_eq!(once(&h, "cache-control"), "no-store, max-age=0", "{path}");
        assert_eq!(
            once(&h, "content-security-policy"),
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(once(&h, "referrer-policy"), "no-referrer");
        assert_eq!(once(&h, "cross-origin-resource-policy"), "same-origin");
        assert_eq!(once(&h, "cross-origin-opener-policy"), "same-origin");
        assert_eq!(once(&h, "cross-origin-embedder-policy"), "require-corp");
        assert!(h.contains_key("strict-transport-security"), "{path}");
        assert!(h.contains_key("permissions-policy"), "{path}");
        // CORS is off unless configured: no grant, no Vary.
        assert!(!h.contains_key("access-control-allow-origin"));
        assert!(!h.contains_key("vary"), "{path}");
    }
    let (_, h, _) = request(&client, "GET", &format!("http://{addr}/cached"), &[]).await;
    assert_eq!(once(&h, "cache-control"), "max-age=60");
    assert_eq!(once(&h, "x-frame-options"), "SAMEORIGIN");
    assert!(!h.contains_key("server"), "the removal list strips Server");
}

#[tokio::test]
async fn headers_can_be_changed_or_turned_off() {
    let obs = isolated("web")
        .security_headers(
            SecurityHeaders::web()
                .override_header("x-frame-options", "DENY")
                .without("content-security-policy"),
        )
        .build()
        .unwrap();
    let addr = serve(app().layer(obs.layer())).await;
    let (_, h, _) = request(&client(), "GET", &format!("http://{addr}/cached"), &[]).await;
    assert_eq!(
        once(&h, "x-frame-options"),
        "DENY",
        "overrides beat the handler"
    );
    assert_eq!(once(&h, "cache-control"), "max-age=60");
    assert_eq!(once(&h, "origin-agent-cluster"), "?1");
    assert!(!h.contains_key("content-security-policy"));

    let off = isolated("off")
        .security_headers(SecurityHeaders::none())
        .build()
        .unwrap();
    let addr = serve(app().layer(off.layer())).await;
    let (_, h, _) = request(&client(), "GET", &format!("http://{addr}/cached"), &[]).await;
    assert_eq!(once(&h, "server"), "handler/1.0");
    assert!(!h.contains_key("x-content-type-options"));
}

#[tokio::test]
async fn cors_grants_reach_error_and_panic_responses_and_refusals_are_counted() {
    let obs = isolated("cors")
        .cors(
            Cors::allow_origins(["http://app.test:8080"])
                .allow_methods(["GET", "PUT"])
                .allow_headers(["content-type"])
                .allow_credentials(true),
        )
        .build()
        .unwrap();
    let addr = serve(app().layer(obs.layer())).await;
    let client = client();
    let allowed = ("origin", "http://app.test:8080");
    for (path, status) in [
        ("/ok", 200),
        ("/missing", 404),
        ("/fail", 500),
        ("/panic", 500),
    ] {
        let (got, h, _) =
            request(&client, "GET", &format!("http://{addr}{path}"), &[allowed]).await;
        assert_eq!(got, status, "{path}");
        assert_eq!(
            once(&h, "access-control-allow-origin"),
            "http://app.test:8080"
        );
        assert_eq!(once(&h, "access-control-allow-credentials"), "true");
        assert_eq!(once(&h, "vary"), "origin", "{path}");
        assert_eq!(once(&h, "x-content-type-options"), "nosniff");
    }
    // The application's Vary is kept and merged.
    let (_, h, _) = request(&client, "GET", &format!("http://{addr}/cached"), &[allowed]).await;
    assert_eq!(once(&h, "vary"), "accept-encoding, origin");

    // A real preflight is answered by the layer, with the security headers too.
    let preflight = [
        allowed,
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "content-type"),
    ];
    let (status, h, body) =
        request(&client, "OPTIONS", &format!("http://{addr}/ok"), &preflight).await;
    assert_eq!((status, body.len()), (204, 0));
    assert_eq!(once(&h, "access-control-allow-methods"), "GET, PUT");
    assert_eq!(once(&h, "access-control-allow-headers"), "content-type");
    assert_eq!(once(&h, "x-content-type-options"), "nosniff");
    // Any other OPTIONS reaches the application.
    let (status, h, body) =
        request(&client, "OPTIONS", &format!("http://{addr}/ok"), &[allowed]).await;
    assert_eq!((status, &body[..]), (200, &b"app options"[..]));
    assert!(
        !h.contains_key("access-control-allow-origin"),
        "OPTIONS is not an allowed method"
    );

    // Refusals: an origin, a method, a header; none of them gets a grant.
    let evil = ("origin", "http://app.test:8080.evil.test");
    let (_, h, _) = request(&client, "GET", &format!("http://{addr}/ok"), &[evil]).await;
    assert!(!h.contains_key("access-control-allow-origin"));
    let refused = [
        vec![allowed, ("access-control-request-method", "DELETE")],
        vec![
            allowed,
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-secret"),
        ],
        // A public page reaching into a private network, which this policy does not allow.
        vec![
            allowed,
            ("access-control-request-method", "GET"),
            ("access-control-request-private-network", "true"),
        ],
    ];
    for req in refused {
        let (status, h, _) = request(&client, "OPTIONS", &format!("http://{addr}/ok"), &req).await;
        assert_eq!(status, 403, "{req:?}");
        assert!(!h.contains_key("access-control-allow-origin"));
    }

    let text = obs.render_metrics();
    let count = |reason| sample(&text, REFUSED, &[("reason", reason)]);
    assert_eq!(count("origin"), Some(1.0));
    assert_eq!(
        count("method"),
        Some(2.0),
        "the DELETE preflight and the plain OPTIONS"
    );
    assert_eq!(count("headers"), Some(1.0));
    assert_eq!(count("private_network"), Some(1.0));
    // Preflights are requests like any other in the RED metrics.
    let options = [
        ("http_request_method", "OPTIONS"),
        ("http_route", "/ok"),
        ("http_response_status_code", "204"),
    ];
    assert_eq!(sample(&text, DURATION_COUNT, &options), Some(1.0));
    let forbidden = [
        ("http_request_method", "OPTIONS"),
        ("http_response_status_code", "403"),
    ];
    assert_eq!(sample(&text, DURATION_COUNT, &forbidden), Some(3.0));
    assert_eq!(sample(&text, "http_server_active_requests", &[]), Some(0.0));
}

#[tokio::test]
async fn a_public_policy_grants_star_on_every_response_with_or_without_origin() {
    let obs = isolated("public").cors(Cors::public()).build().unwrap();
    let addr = serve(app().layer(obs.layer())).await;
    let client = client();
    for (path, status) in [
        ("/ok", 200),
        ("/missing", 404),
        ("/fail", 500),
        ("/panic", 500),
    ] {
        let uri = format!("http://{addr}{path}");
        for headers in [&[][..], &[("origin", "https://anyone.test")][..]] {
            let (got, h, _) = request(&client, "GET", &uri, headers).await;
            assert_eq!(got, status, "{path} {headers:?}");
            assert_eq!(once(&h, "access-control-allow-origin"), "*", "{path}");
            assert!(!h.contains_key("vary"), "{path} {headers:?}: {h:?}");
            assert!(!h.contains_key("access-control-allow-credentials"));
        }
    }
    // The application's own Vary stays as it was, without `origin`.
    let (_, h, _) = request(&client, "GET", &format!("http://{addr}/cached"), &[]).await;
    assert_eq!(once(&h, "vary"), "accept-encoding");
    assert_eq!(once(&h, "access-control-allow-origin"), "*");
}

#[tokio::test]
async fn hsts_over_plain_http_only_behind_a_trusted_proxy_saying_https() {
    let serve_with_peer = |trusted: &'static str| async move {
        let obs = isolated("hsts")
            .security_headers(SecurityHeaders::api().hsts_only_over_tls())
            .trusted_proxies([trusted])
            .build()
            .unwrap();
        let app = app().layer(obs.layer());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let make = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, make).await.unwrap();
        });
        addr
    };
    let client = client();
    let hsts = |h: &HeaderMap| h.contains_key("strict-transport-security");
    // The test client connects from 127.0.0.1: a trusted proxy here.
    let addr = serve_with_peer("127.0.0.0/8").await;
    let url = format!("http://{addr}/ok");
    let (_, h, _) = request(&client, "GET", &url, &[("x-forwarded-proto", "https")]).await;
    assert!(hsts(&h), "a trusted proxy says the client used https");
    let (_, h, _) = request(&client, "GET", &url, &[]).await;
    assert!(!hsts(&h), "plain http");
    let (_, h, _) = request(&client, "GET", &url, &[("x-forwarded-proto", "http")]).await;
    assert!(!hsts(&h));
    // Not trusted: the header is anyone's claim.
    let addr = serve_with_peer("10.0.0.0/8").await;
    let url = format!("http://{addr}/ok");
    let (_, h, _) = request(&client, "GET", &url, &[("x-forwarded-proto", "https")]).await;
    assert!(
        !hsts(&h),
        "an untrusted peer's X-Forwarded-Proto is ignored"
    );
}
