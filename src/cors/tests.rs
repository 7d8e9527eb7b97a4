//! The Fetch standard's CORS protocol, case by case: what a browser sends, what the layer
//! must answer for the browser to allow (or block) exactly what the policy says.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use http::Request;

use super::*;

const ACAO: &str = "access-control-allow-origin";
const ACAC: &str = "access-control-allow-credentials";
const ACAM: &str = "access-control-allow-methods";
const ACAH: &str = "access-control-allow-headers";
const ACEH: &str = "access-control-expose-headers";
const ACMA: &str = "access-control-max-age";
const ACAPN: &str = "access-control-allow-private-network";
const GRANTS: [&str; 7] = [ACAO, ACAC, ACAM, ACAH, ACEH, ACMA, ACAPN];

fn app() -> Cors {
    Cors::allow_origins(["https://app.example.com", "https://*.tenant.example.com"])
        .allow_methods(["GET", "POST", "PATCH"])
        .allow_headers(["content-type", "x-request-id"])
        .expose_headers(["x-trace-id"])
}

/// What the layer did: `Some(status)` when it answered itself, and the response headers
/// (for passed requests: `app_headers` after the grant was applied).
fn run(
    cors: &Cors,
    method: &str,
    req_headers: &[(&str, &str)],
    app_headers: &[(&'static str, &'static str)],
) -> (Option<u16>, HeaderMap) {
    let compiled = cors.compile().expect("valid test policy");
    let mut req = Request::builder().method(method).uri("/things/1");
    for (k, v) in req_headers {
        req = req.header(*k, *v);
    }
    let req = req.body(()).unwrap();
    match compiled.decide(&req) {
        CorsDecision::Answer(res) => (Some(res.status().as_u16()), res.headers().clone()),
        CorsDecision::Pass(grant) => {
            let mut headers = HeaderMap::new();
            for (k, v) in app_headers {
                headers.append(*k, HeaderValue::from_static(v));
            }
            let policy = crate::response_policy::ResponsePolicy::new(None, Some(compiled));
            crate::response_policy::apply_for_test(&policy.unwrap(), &mut headers, false, grant);
            (None, headers)
        }
    }
}

fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next().map(|v| v.to_str().unwrap());
    assert!(all.next().is_none(), "{name} sent twice");
    first
}

fn no_grant(headers: &HeaderMap) {
    for name in GRANTS {
        assert!(
            headers.get(name).is_none(),
            "{name} must not be sent: {headers:?}"
        );
    }
}

#[test]
fn actual_requests_from_allowed_origins_get_the_origin_echoed() {
    let (answered, h) = run(&app(), "GET", &[("origin", "https://app.example.com")], &[]);
    assert_eq!(answered, None);
    assert_eq!(get(&h, ACAO), Some("https://app.example.com"));
    assert_eq!(get(&h, ACEH), Some("x-trace-id"));
    assert_eq!(get(&h, ACAC), None);
    assert_eq!(get(&h, "vary"), Some("origin"));

    // A subdomain pattern echoes the request's own origin.
    let (_, h) = run(
        &app(),
        "POST",
        &[("origin", "https://acme.tenant.example.com")],
        &[],
    );
    assert_eq!(get(&h, ACAO), Some("https://acme.tenant.example.com"));
}

#[test]
fn credentials_echo_the_origin_never_a_star() {
    let cors = app().allow_credentials(true);
    let (_, h) = run(&cors, "GET", &[("origin", "https://app.example.com")], &[]);
    assert_eq!(get(&h, ACAO), Some("https://app.example.com"));
    assert_eq!(get(&h, ACAC), Some("true"));
    let (status, h) = run(
        &cors,
        "OPTIONS",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        &[],
    );
    assert_eq!(status, Some(204));
    assert_eq!(get(&h, ACAO), Some("https://app.example.com"));
    assert_eq!(get(&h, ACAC), Some("true"));
}

#[test]
fn disallowed_origins_get_no_grant_headers_at_all() {
    for origin in [
        "https://app.example.com.evil.test",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://evil.test",
        "https://tenant.example.com",
        "https://x.tenant.example.com.evil.test",
        "null",
    ] {
        let (answered, h) = run(&app(), "GET", &[("origin", origin)], &[]);
        assert_eq!(answered, None, "{origin}: actual requests reach the app");
        no_grant(&h);
        assert_eq!(get(&h, "vary"), Some("origin"), "{origin}");
        let (status, h) = run(
            &app(),
            "OPTIONS",
            &[("origin", origin), ("access-control-request-method", "GET")],
            &[],
        );
        assert_eq!(status, Some(403), "{origin}");
        no_grant(&h);
    }
}

#[test]
fn an_application_grant_is_taken_back_for_refused_origins() {
    let app_grant = [(ACAO, "*"), (ACAC, "true"), ("x-other", "kept")];
    let (_, h) = run(
        &app(),
        "GET",
        &[("origin", "https://evil.test")],
        &app_grant,
    );
    no_grant(&h);
    assert_eq!(get(&h, "x-other"), Some("kept"));
}

#[test]
fn public_policies_answer_star_to_every_request() {
    let cors = Cors::public().expose_headers(["x-request-id"]);
    let with_origin = |origin| vec![("origin", origin)];
    for req in [
        with_origin("https://anyone.test"),
        with_origin("null"),
        // Without `Origin` too: a cache may hand the response to any page later.
        vec![],
    ] {
        let (answered, h) = run(&cors, "GET", &req, &[]);
        assert_eq!(answered, None, "{req:?}");
        assert_eq!(get(&h, ACAO), Some("*"), "{req:?}");
        assert_eq!(get(&h, ACEH), Some("x-request-id"), "{req:?}");
        assert_eq!(get(&h, ACAC), None, "{req:?}");
        assert_eq!(get(&h, "vary"), None, "a `*` answer does not vary: {req:?}");
        // The application's own grant gives way to the policy's, on every request.
        let (_, h) = run(&cors, "GET", &req, &[(ACAO, "https://other.test")]);
        assert_eq!(get(&h, ACAO), Some("*"), "{req:?}");
        // The application's `Vary` is left as it was.
        let (_, h) = run(&cors, "GET", &req, &[("vary", "accept-encoding")]);
        assert_eq!(get(&h, "vary"), Some("accept-encoding"), "{req:?}");
    }
    // A preflight is answered with `*` too, and methods stay an allowlist.
    let (status, h) = run(
        &cors,
        "OPTIONS",
        &[
            ("origin", "https://anyone.test"),
            ("access-control-request-method", "POST"),
        ],
        &[],
    );
    assert_eq!((status, get(&h, ACAO)), (Some(204), Some("*")));
    let (status, h) = run(
        &cors,
        "OPTIONS",
        &[
            ("origin", "https://anyone.test"),
            ("access-control-request-method", "DELETE"),
        ],
        &[],
    );
    assert_eq!(status, Some(403));
    no_grant(&h);
}

#[test]
fn requests_without_origin_are_not_cors_but_still_vary() {
    let (answered, h) = run(&app(), "GET", &[], &[("vary", "accept-encoding")]);
    assert_eq!(answered, None);
    no_grant(&h);
    assert_eq!(get(&h, "vary"), Some("accept-encoding, origin"));
}

#[test]
fn vary_is_merged_with_the_applications_own() {
    let origin = [("origin", "https://app.example.com")];
    let (_, h) = run(&app(), "GET", &origin, &[("vary", "Accept-Encoding")]);
    assert_eq!(get(&h, "vary"), Some("Accept-Encoding, origin"));
    let (_, h) = run(&app(), "GET", &origin, &[("vary", "Origin")]);
    assert_eq!(get(&h, "vary"), Some("Origin"));
    let (_, h) = run(&app(), "GET", &origin, &[("vary", "*")]);
    assert_eq!(get(&h, "vary"), Some("*"));
}

#[test]
fn allowed_preflights_are_answered_with_every_grant() {
    let cors = app().max_age(Duration::from_secs(600));
    let (status, h) = run(
        &cors,
        "OPTIONS",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "PATCH"),
            (
                "access-control-request-headers",
                "content-type,x-request-id",
            ),
        ],
        &[],
    );
    assert_eq!(status, Some(204));
    assert_eq!(get(&h, ACAO), Some("https://app.example.com"));
    assert_eq!(get(&h, ACAM), Some("GET, POST, PATCH"));
    assert_eq!(get(&h, ACAH), Some("content-type,x-request-id"));
    assert_eq!(get(&h, ACMA), Some("600"));
    assert_eq!(
        get(&h, "vary"),
        Some("origin, access-control-request-method, access-control-request-headers")
    );
    // Without requested headers there is nothing to allow.
    let (status, h) = run(
        &cors,
        "OPTIONS",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
        ],
        &[],
    );
    assert_eq!(status, Some(204));
    assert_eq!(get(&h, ACAH), None);
}

#[test]
fn preflights_for_methods_or_headers_not_listed_are_refused() {
    let origin = ("origin", "https://app.example.com");
    for (method, headers) in [
        ("DELETE", None),
        // Methods are case-sensitive: browsers send `patch` as written.
        ("patch", None),
        ("POST", Some("content-type,x-secret")),
        ("POST", Some("authorization")),
        ("POST", Some("content-type, x-request-id, x-extra")),
    ] {
        let mut req = vec![origin, ("access-control-request-method", method)];
        if let Some(h) = headers {
            req.push(("access-control-request-headers", h));
        }
        let (status, h) = run(&app(), "OPTIONS", &req, &[]);
        assert_eq!(status, Some(403), "{method} {headers:?}");
        no_grant(&h);
    }
}

#[test]
fn authorization_is_never_covered_by_a_header_wildcard() {
    let any = app().allow_headers(["*"]);
    let preflight = |cors: &Cors, headers: &str| {
        run(
            cors,
            "OPTIONS",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", headers),
            ],
            &[],
        )
    };
    let (status, h) = preflight(&any, "content-type,x-anything");
    assert_eq!(status, Some(204));
    assert_eq!(get(&h, ACAH), Some("content-type,x-anything"));
    assert_eq!(preflight(&any, "authorization").0, Some(403));
    assert_eq!(preflight(&any, "Authorization,x-a").0, Some(403));
    let named = app().allow_headers(["*", "authorization"]);
    let (status, h) = preflight(&named, "authorization,x-a");
    assert_eq!(status, Some(204));
    assert_eq!(get(&h, ACAH), Some("authorization,x-a"));
}

#[test]
fn only_real_preflights_are_answered() {
    // OPTIONS without Access-Control-Request-Method, or without Origin: the app's.
    for req in [
        vec![("origin", "https://app.example.com")],
        vec![("access-control-request-method", "GET")],
        vec![],
    ] {
        let (answered, _) = run(&app(), "OPTIONS", &req, &[]);
        assert_eq!(answered, None, "{req:?}");
    }
    // A GET carrying the preflight header is still an actual request.
    let (answered, _) = run(
        &app(),
        "GET",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
        ],
        &[],
    );
    assert_eq!(answered, None);
}

#[test]
fn actual_requests_with_methods_not_listed_get_no_grant() {
    let cors = app().allow_methods(["GET"]);
    let (answered, h) = run(&cors, "POST", &[("origin", "https://app.example.com")], &[]);
    assert_eq!(answered, None);
    no_grant(&h);
}

#[test]
fn private_network_access_is_granted_only_when_asked_for() {
    let req = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "GET"),
        ("access-control-request-private-network", "true"),
    ];
    let (status, h) = run(&app(), "OPTIONS", &req, &[]);
    assert_eq!(status, Some(403));
    no_grant(&h);
    let (status, h) = run(&app().allow_private_network(true), "OPTIONS", &req, &[]);
    assert_eq!(status, Some(204));
    assert_eq!(get(&h, ACAPN), Some("true"));
    // Not sent unless the browser asked.
    let (_, h) = run(
        &app().allow_private_network(true),
        "OPTIONS",
        &req[..2],
        &[],
    );
    assert_eq!(get(&h, ACAPN), None);
}

#[test]
fn invalid_policies_are_build_errors() {
    let err = |cors: Cors| cors.compile().unwrap_err().to_string();
    for (cors, says) in [
        (Cors::allow_origins(["*"]), "Cors::public()"),
        (
            Cors::allow_origins(["*", "https://a.test"]),
            "Cors::public()",
        ),
        (Cors::public().allow_credentials(true), "credentials"),
        (
            app().allow_headers(["*"]).allow_credentials(true),
            "headers",
        ),
        (
            app().allow_methods(["*"]).allow_credentials(true),
            "methods",
        ),
        (
            app().expose_headers(["*"]).allow_credentials(true),
            "exposed",
        ),
        (
            Cors::allow_origins(Vec::<String>::new()),
            "no allowed origins",
        ),
        (Cors::allow_origins(["https://a.test/"]), "path"),
        (Cors::allow_origins(["null"]), "null"),
        (Cors::allow_origins(["a.test"]), "scheme"),
        (app().allow_methods(["GE T"]), "method"),
        (app().allow_headers(["x y"]), "x y"),
        (app().expose_headers(["é"]), "exposed header"),
    ] {
        let e = err(cors);
        assert!(e.contains(says) && e.contains("cors"), "{says}: {e}");
    }
    // Explicit subdomain patterns are not wildcards in Fetch's sense: allowed with credentials.
    assert!(app().allow_credentials(true).compile().is_ok());
}

#[test]
fn every_exact_origin_of_a_long_list_gets_its_own_value() {
    // Past the origins whose responses are made ahead, the value is inserted per request:
    // both paths must grant the same.
    let origins: Vec<String> = (0..40)
        .map(|i| format!("https://app{i}.example.com"))
        .collect();
    let cors = Cors::allow_origins(origins.clone()).allow_credentials(true);
    for origin in &origins {
        let (answered, h) = run(&cors, "GET", &[("origin", origin)], &[("vary", "accept")]);
        assert_eq!(answered, None);
        assert_eq!(get(&h, ACAO), Some(origin.as_str()));
        assert_eq!(get(&h, ACAC), Some("true"));
        assert_eq!(h.get_all("vary").iter().count(), 1, "{h:?}");
        let (answered, h) = run(
            &cors,
            "OPTIONS",
            &[("origin", origin), ("access-control-request-method", "GET")],
            &[],
        );
        assert!(answered.is_some());
        assert_eq!(get(&h, ACAO), Some(origin.as_str()));
    }
    let (_, h) = run(
        &cors,
        "GET",
        &[("origin", "https://app40.example.com")],
        &[],
    );
    no_grant(&h);
}
