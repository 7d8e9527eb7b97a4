//! The limiter on requests: keys, policies, modes and the answer, without a server.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;

use super::*;
use crate::metrics::{open_backend, MetricsBackend};

fn limiter(limits: RateLimit, proxies: &[&str]) -> Arc<Limiter> {
    let (sink, _) = open_backend(&MetricsBackend::IsolatedPrometheus, &[1.0], &[1.0], None);
    let trusted = TrustedProxies::parse(proxies, Default::default()).unwrap();
    Arc::new(Limiter::build(&limits, trusted, &["/metrics"], "svc", &sink).unwrap())
}

fn req(path: &str, peer: &str) -> Request<()> {
    let mut req = Request::get(path).body(()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

/// Admitted (`true`) or refused, and the refusal's status when refused.
fn admit(l: &Arc<Limiter>, req: &Request<()>, route: &str) -> Result<(), u16> {
    match l.admit(req, route, None) {
        Admission::Pass | Admission::Admitted(_) | Admission::Shadowed(_) => Ok(()),
        Admission::Answer(res) | Admission::Refused(res, _) => Err(res.status().as_u16()),
        Admission::Pending(_) => panic!("in-memory decisions are synchronous"),
    }
}

#[test]
fn each_client_has_its_own_quota_and_a_forged_header_changes_nothing() {
    let l = limiter(
        RateLimit::new(Policy::new("per-client", "1/min;burst=2")),
        &[],
    );
    let a = req("/x", "192.0.2.1:1000");
    assert_eq!(admit(&l, &a, "/x"), Ok(()));
    assert_eq!(admit(&l, &a, "/x"), Ok(()));
    assert_eq!(admit(&l, &a, "/x"), Err(429));
    assert_eq!(admit(&l, &req("/x", "192.0.2.2:1000"), "/x"), Ok(()));
    // A different source port is the same client.
    assert_eq!(admit(&l, &req("/x", "192.0.2.1:2000"), "/x"), Err(429));
    // No trusted proxy: X-Forwarded-For is the client's own words.
    let mut forged = req("/x", "192.0.2.1:1000");
    forged
        .headers_mut()
        .insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
    assert_eq!(admit(&l, &forged, "/x"), Err(429));
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_limited() {
    let l = limiter(
        RateLimit::new(Policy::new("per-client", "1/min;burst=1")),
        &["10.0.0.0/8"],
    );
    let via_proxy = |xff: &str| {
        let mut r = req("/x", "10.0.0.2:80");
        r.headers_mut()
            .insert("x-forwarded-for", xff.parse().unwrap());
        r
    };
    assert_eq!(admit(&l, &via_proxy("198.51.100.1"), "/x"), Ok(()));
    assert_eq!(admit(&l, &via_proxy("198.51.100.1"), "/x"), Err(429));
    // The client forging the left-most entry is still itself.
    assert_eq!(
        admit(&l, &via_proxy("203.0.113.5, 198.51.100.1"), "/x"),
        Err(429)
    );
    // Another client behind the same proxy has its own quota.
    assert_eq!(admit(&l, &via_proxy("198.51.100.2"), "/x"), Ok(()));
}

#[test]
fn several_policies_apply_together_and_a_refusal_uses_up_none() {
    let l = limiter(
        RateLimit::new(Policy::new("per-client", "1/min;burst=3")).policy(
            Policy::new("search", "1/min;burst=1")
                .key(Key::Global)
                .only_routes(["/search"]),
        ),
        &[],
    );
    let a = req("/search", "192.0.2.1:1");
    let b = req("/search", "192.0.2.2:1");
    assert_eq!(admit(&l, &a, "/search"), Ok(()));
    // The global search quota is spent: b is refused, and its own quota is untouched.
    assert_eq!(admit(&l, &b, "/search"), Err(429));
    assert_eq!(admit(&l, &b, "/other"), Ok(()));
    assert_eq!(admit(&l, &b, "/other"), Ok(()));
    assert_eq!(admit(&l, &b, "/other"), Ok(()));
    assert_eq!(
        admit(&l, &b, "/other"),
        Err(429),
        "3 of 3, none for the refusal"
    );
    assert_eq!(admit(&l, &a, "/other"), Ok(()));
    assert_eq!(admit(&l, &a, "/other"), Ok(()));
    assert_eq!(admit(&l, &a, "/other"), Err(429));
}

#[test]
fn header_keys_route_keys_and_exclusions() {
    let l = limiter(
        RateLimit::new(
            Policy::new("per-key", "1/min;burst=1").key(Key::Header("x-api-key".into())),
        )
        .policy(Policy::new("per-route", "1/min;burst=2").key(Key::Route))
        .exclude_prefix("/internal/"),
        &[],
    );
    let keyed = |key: &str, path: &str| {
        let mut r = req(path, "192.0.2.1:1");
        r.headers_mut().insert("x-api-key", key.parse().unwrap());
        r
    };
    assert_eq!(admit(&l, &keyed("k1", "/a"), "/a"), Ok(()));
    assert_eq!(admit(&l, &keyed("k1", "/b"), "/b"), Err(429));
    assert_eq!(admit(&l, &keyed("k2", "/a"), "/a"), Ok(()));
    // Without the header only the route policy applies, and /a has used its two.
    assert_eq!(admit(&l, &req("/a", "192.0.2.9:1"), "/a"), Err(429));
    assert_eq!(admit(&l, &req("/c", "192.0.2.9:1"), "/c"), Ok(()));
    for _ in 0..5 {
        assert_eq!(admit(&l, &req("/internal/x", "192.0.2.9:1"), "/c"), Ok(()));
        assert_eq!(admit(&l, &req("/metrics", "192.0.2.9:1"), "/c"), Ok(()));
    }
}

#[test]
fn shadow_mode_refuses_nothing_and_counts() {
    let l = limiter(
        RateLimit::new(Policy::new("p", "1/min;burst=1")).mode(Mode::Shadow),
        &[],
    );
    let a = req("/x", "192.0.2.1:1");
    for _ in 0..5 {
        assert_eq!(admit(&l, &a, "/x"), Ok(()));
    }
}

#[test]
fn grpc_calls_are_refused_the_grpc_way() {
    let l = limiter(RateLimit::new(Policy::new("p", "1/min;burst=1")), &[]);
    let mut call = req("/pkg.Svc/Method", "192.0.2.1:1");
    call.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    assert!(matches!(
        l.admit(&call, "/pkg.Svc/Method", None),
        Admission::Pass
    ));
    match l.admit(&call, "/pkg.Svc/Method", None) {
        Admission::Refused(res, over) => {
            assert_eq!(over.policy.as_ref(), "p");
            assert!(!over.shadow);
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["grpc-status"], "8");
        }
        _ => panic!("expected a refusal"),
    }
}
