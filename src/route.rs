//! Route resolution: one route per request, shared by every signal.
//!
//! In order: axum's `MatchedPath` (nested routers included), the gRPC `/pkg.Service/Method`
//! path, the user's route function, else `unmatched`. One exception: a gRPC call matched by
//! a catch-all (tonic's `Routes::into_axum_router` mounts a service as
//! `/pkg.Service/{*rest}`) takes its method path, since the template would fold every
//! method into one. A raw request path never becomes a label: the only unbounded sources
//! (gRPC paths and the user's function) go through a cap, and beyond it every new route is
//! recorded as `overflow`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use http::{Extensions, HeaderMap, Method, Request, Uri};

use crate::classify::is_grpc;
use crate::metrics::series::SeriesCache;

/// The route label for requests no route matched.
pub const UNMATCHED: &str = "unmatched";
/// The route label for requests beyond the distinct-route cap.
pub const OVERFLOW: &str = "overflow";

/// What a route function sees of a request: its head, never its body.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions (routers put their match here).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    pub(crate) fn of<B>(req: &'a Request<B>) -> Self {
        RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

type RouteFnBox = dyn Fn(RequestHead<'_>) -> Option<Cow<'static, str>> + Send + Sync;

/// A user-supplied route function, for routers other than axum's.
///
/// It returns the route template of a request (`/users/{id}`), or `None` for `unmatched`.
/// It must return templates, not raw paths: the distinct-route cap protects the metrics if
/// it does not, but every request beyond the cap is then recorded as `overflow`.
#[derive(Clone)]
pub struct RouteFn(Arc<RouteFnBox>);

impl RouteFn {
    /// Wraps a closure.
    ///
    /// ```
    /// use tower_observability::RouteFn;
    ///
    /// let route = RouteFn::new(|head| {
    ///     head.uri.path().starts_with("/users/").then_some("/users/{id}".into())
    /// });
    /// # let _ = route;
    /// ```
    pub fn new<F>(f: F) -> Self
    where
        F: Fn(RequestHead<'_>) -> Option<Cow<'static, str>> + Send + Sync + 'static,
    {
        RouteFn(Arc::new(f))
    }
}

impl fmt::Debug for RouteFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouteFn(..)")
    }
}

/// One distinct route, with the metric handles cached for it.
pub(crate) struct Route {
    name: Arc<str>,
    pub(crate) series: SeriesCache,
}

impl Route {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(Route {
            name: name.into(),
            series: SeriesCache::default(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared (span attributes hold it without copying).
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }
}

/// The resolved route of one request.
pub(crate) struct Resolved {
    pub(crate) route: Arc<Route>,
    pub(crate) overflowed: bool,
}

/// Maps route names to their entries, up to a cap.
pub(crate) struct RouteResolver {
    routes: RwLock<HashMap<Box<str>, Arc<Route>, foldhash::fast::RandomState>>,
    limit: usize,
    unmatched: Arc<Route>,
    overflow: Arc<Route>,
    route_fn: Option<RouteFn>,
}

/// gRPC paths longer than this are not routes but garbage.
const MAX_GRPC_PATH: usize = 256;

impl RouteResolver {
    pub(crate) fn new(limit: usize, route_fn: Option<RouteFn>) -> Self {
        RouteResolver {
            routes: RwLock::new(HashMap::default()),
            limit,
            unmatched: Route::new(UNMATCHED),
            overflow: Route::new(OVERFLOW),
            route_fn,
        }
    }

    /// Resolves the route of a request (the order is documented on the module).
    pub(crate) fn resolve<B>(&self, req: &Request<B>) -> Resolved {
        #[cfg(feature = "axum")]
        if let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() {
            let matched = matched.as_str();
            // Only a catch-all costs the content-type lookup: other templates name the route.
            let method = ends_in_catch_all(matched)
                .then(|| grpc_method(req))
                .flatten();
            return self.lookup(method.unwrap_or(matched));
        }
        if let Some(method) = grpc_method(req) {
            return self.lookup(method);
        }
        if let Some(route_fn) = &self.route_fn {
            if let Some(route) = (route_fn.0)(RequestHead::of(req)) {
                return self.lookup(&route);
            }
        }
        self.unmatched()
    }

    pub(crate) fn unmatched(&self) -> Resolved {
        Resolved {
            route: self.unmatched.clone(),
            overflowed: false,
        }
    }

    /// The entry for `name`, creating it while under the cap.
    pub(crate) fn lookup(&self, name: &str) -> Resolved {
        let found = |route: &Arc<Route>| Resolved {
            route: route.clone(),
            overflowed: false,
        };
        if let Some(route) = read(&self.routes).get(name) {
            return found(route);
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = routes.get(name) {
            return found(route);
        }
        if routes.len() >= self.limit {
            return Resolved {
                route: self.overflow.clone(),
                overflowed: true,
            };
        }
        let route = Route::new(name);
        routes.insert(name.into(), route.clone());
        found(&route)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        read(&self.routes).len()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding the lock leaves the map consistent (inserts are single calls).
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// The `/package.Service/Method` path of a gRPC call.
fn grpc_method<B>(req: &Request<B>) -> Option<&str> {
    let path = req.uri().path();
    (is_grpc(req.headers()) && is_grpc_method_path(path)).then_some(path)
}

/// Whether an axum route template ends in a catch-all segment (`/{*rest}`).
#[cfg(feature = "axum")]
fn ends_in_catch_all(template: &str) -> bool {
    // Every request asks: a byte test first, a backward byte loop only for `...}` (the last
    // segment is short; `rfind(char)` costs twice as much there, more or less by inlining).
    let bytes = template.as_bytes();
    bytes.last() == Some(&b'}')
        && bytes
            .iter()
            .rposition(|&b| b == b'/')
            .is_some_and(|slash| bytes[slash + 1..].starts_with(b"{*"))
}

/// `/package.Service/Method`: two non-empty printable segments.
fn is_grpc_method_path(path: &str) -> bool {
    if path.len() > MAX_GRPC_PATH || !path.starts_with('/') {
        return false;
    }
    let mut parts = path[1..].split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'%'))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths() {
        assert!(is_grpc_method_path("/helloworld.Greeter/SayHello"));
        assert!(!is_grpc_method_path("/helloworld.Greeter"));
        assert!(!is_grpc_method_path("/a/b/c"));
        assert!(!is_grpc_method_path("//b"));
        assert!(!is_grpc_method_path(&format!("/a/{}", "b".repeat(300))));
    }

    #[cfg(feature = "axum")]
    #[test]
    fn catch_all_templates() {
        // axum's `MatchedPath` cannot be made by hand: tests/grpc.rs mounts a real tonic
        // service in a real router; this is the template rule alone.
        assert!(ends_in_catch_all("/demo.Greeter/{*rest}"));
        assert!(ends_in_catch_all("/{*path}"));
        assert!(!ends_in_catch_all("/users/{id}"));
        assert!(!ends_in_catch_all("/demo.Greeter/SayHello"));
        assert!(!ends_in_catch_all("/files/{*rest}/meta"));
    }

    #[test]
    fn cap_folds_new_routes_into_overflow() {
        let resolver = RouteResolver::new(3, None);
        for name in ["/a", "/b", "/c", "/a"] {
            assert!(!resolver.lookup(name).overflowed);
        }
        let over = resolver.lookup("/d");
        assert!(over.overflowed);
        assert_eq!(over.route.name(), OVERFLOW);
        assert_eq!(resolver.lookup("/b").route.name(), "/b");
        assert_eq!(resolver.len(), 3);
    }

    #[test]
    fn resolution_order() {
        let resolver = RouteResolver::new(
            10,
            Some(RouteFn::new(|h| {
                h.uri
                    .path()
                    .starts_with("/users/")
                    .then_some(Cow::Borrowed("/users/{id}"))
            })),
        );
        let req = Request::get("/users/7").body(()).unwrap();
        assert_eq!(resolver.resolve(&req).route.name(), "/users/{id}");
        let req = Request::get("/nope").body(()).unwrap();
        assert_eq!(resolver.resolve(&req).route.name(), UNMATCHED);
        let req = Request::post("/pkg.Svc/Do")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        assert_eq!(resolver.resolve(&req).route.name(), "/pkg.Svc/Do");
        let req = Request::post("/pkg.Svc/Web")
            .header("content-type", "application/grpc-web-text+proto")
            .body(())
            .unwrap();
        assert_eq!(resolver.resolve(&req).route.name(), "/pkg.Svc/Web");
        let req = Request::post("/not/a/grpc/path")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        assert_eq!(resolver.resolve(&req).route.name(), UNMATCHED);
    }
}
