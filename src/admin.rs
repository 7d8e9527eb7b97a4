//! The admin endpoints: `/metrics` (the Prometheus text format; OpenMetrics or Prometheus
//! protobuf when the scraper's `Accept` prefers them), `/healthz` (liveness) and `/readyz`
//! (readiness, flipped through [`Readiness`](crate::Readiness)).
//!
//! Serve them on their own port with [`Observability::serve_admin`], or mount
//! [`Observability::admin_service`] in the application's router.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use crate::metrics::exposition::Format;
use crate::Observability;

/// A tower service answering the admin endpoints (every other path is a 404).
///
/// ```
/// use tower::ServiceExt;
/// # use tower_observability::{MetricsBackend, Observability};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let obs = Observability::builder("api")
/// #     .metrics_backend(MetricsBackend::IsolatedPrometheus).build()?;
/// let res = obs
///     .admin_service()
///     .oneshot(http::Request::get("/healthz").body(())?)
///     .await?;
/// assert_eq!(res.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AdminService {
    obs: Observability,
}

impl AdminService {
    fn respond(
        &self,
        method: &Method,
        path: &str,
        accept: Option<&HeaderValue>,
    ) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: &'static str| {
            let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *res.status_mut() = status;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            res
        };
        if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if method != Method::GET && method != Method::HEAD {
            let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        match path {
            "/metrics" => {
                let format = Format::negotiate(accept);
                let mut res = Response::new(Full::new(self.obs.render_metrics_bytes(format)));
                let headers = res.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                );
                // The body depends on Accept: caches must not hand one format to another.
                headers.insert(header::VARY, HeaderValue::from_static("accept"));
                res
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            _ if self.obs.readiness().is_ready() => text(StatusCode::OK, "ready\n"),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        }
    }
}

impl<B> Service<Request<B>> for AdminService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let accept = req.headers().get(header::ACCEPT);
        ready(Ok(self.respond(req.method(), req.uri().path(), accept)))
    }
}

impl Observability {
    /// The admin endpoints as a tower service, to mount in the application's own router.
    pub fn admin_service(&self) -> AdminService {
        AdminService { obs: self.clone() }
    }

    /// The admin endpoints as an axum router, to merge into the application's router.
    ///
    /// ```
    /// # use tower_observability::{MetricsBackend, Observability};
    /// # let obs = Observability::builder("api")
    /// #     .metrics_backend(MetricsBackend::IsolatedPrometheus).build()?;
    /// let app: axum::Router = axum::Router::new().merge(obs.admin_router());
    /// # let _ = app;
    /// # Ok::<(), tower_observability::BuildError>(())
    /// ```
    #[cfg(feature = "axum")]
    pub fn admin_router(&self) -> axum::Router {
        let service = self.admin_service();
        let mut router = axum::Router::new();
        for path in crate::config::builder::ADMIN_PATHS {
            router = router.route_service(path, service.clone());
        }
        router
    }
}

#[cfg(feature = "admin")]
pub use server::AdminServer;

#[cfg(feature = "admin")]
mod server {
    use std::io;
    use std::net::{SocketAddr, ToSocketAddrs};
    use std::sync::Arc;

    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    use tokio::sync::Notify;

    use crate::Observability;

    /// The admin server started by [`Observability::serve_admin`].
    ///
    /// The server is a task on the Tokio runtime: dropping this handle leaves it running
    /// (like a detached task), until [`shutdown`](Self::shutdown) or the runtime's end. So
    /// `obs.serve_admin(addr)?;` with the handle unused serves `/metrics` for the life of
    /// the program.
    #[derive(Debug)]
    pub struct AdminServer {
        local_addr: SocketAddr,
        stop: Arc<Notify>,
    }

    impl AdminServer {
        /// The address the server listens on (useful with port 0).
        pub fn local_addr(&self) -> SocketAddr {
            self.local_addr
        }

        /// Stops accepting connections and closes the listening socket; requests in
        /// progress finish.
        pub fn shutdown(self) {
            // A stored permit: the accept loop sees it even if it is not waiting yet.
            self.stop.notify_one();
        }
    }

    impl Observability {
        /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (HTTP/1.1), on the current
        /// Tokio runtime.
        ///
        /// Fails when `addr` cannot be bound (the error names the address) or when called
        /// outside a Tokio runtime. The server runs until [`AdminServer::shutdown`], even when
        /// the returned handle is dropped.
        ///
        /// ```
        /// # use tower_observability::{MetricsBackend, Observability};
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// # let obs = Observability::builder("api")
        /// #     .metrics_backend(MetricsBackend::IsolatedPrometheus).build()?;
        /// let admin = obs.serve_admin("127.0.0.1:0")?;
        /// println!("metrics on http://{}/metrics", admin.local_addr());
        /// admin.shutdown();
        /// # Ok(()) }
        /// ```
        pub fn serve_admin(&self, addr: impl ToSocketAddrs) -> io::Result<AdminServer> {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                io::Error::other(
                    "serve_admin must be called inside a Tokio runtime (e.g. from #[tokio::main])",
                )
            })?;
            let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
            // The address in the message: "Address already in use" alone does not say which.
            let listener = std::net::TcpListener::bind(&addrs[..]).map_err(|e| {
                let at = addrs.first().map_or("no address".into(), |a| a.to_string());
                io::Error::new(
                    e.kind(),
                    format!("admin endpoints: cannot listen on {at}: {e}"),
                )
            })?;
            listener.set_nonblocking(true)?;
            let local_addr = listener.local_addr()?;
            let listener = {
                let _guard = runtime.enter();
                tokio::net::TcpListener::from_std(listener)?
            };
            // Only `shutdown` stops the loop: the handle's drop must not (it is often unused).
            let stop = Arc::new(Notify::new());
            let stopped = stop.clone();
            let service = self.admin_service();
            runtime.spawn(async move {
                loop {
                    let stream = tokio::select! {
                        _ = stopped.notified() => return,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(e) => {
                                // Out of fds or similar: pause instead of spinning.
                                tracing::warn!(error = %e, "admin server accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                continue;
                            }
                        },
                    };
                    let service = service.clone();
                    tokio::spawn(async move {
                        let hyper_service = hyper::service::service_fn(move |req| {
                            let mut service = service.clone();
                            tower_service::Service::call(&mut service, req)
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), hyper_service)
                            .await;
                    });
                }
            });
            Ok(AdminServer { local_addr, stop })
        }
    }
}
