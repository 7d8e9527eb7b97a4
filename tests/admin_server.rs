//! The admin server's handle: dropping it leaves `/metrics` served (as documented, and as
//! the README's quickstart relies on), `shutdown()` stops it, and a taken port is an error
//! naming the address.

mod support;

use std::time::Duration;

use support::{client, isolated, send};

/// Connecting fails within `limit` (the listener closes on the server's task, not at once).
async fn refused_within(addr: std::net::SocketAddr, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_dropped_handle_leaves_the_admin_endpoints_served() {
    let obs = isolated("admin-dropped").build().unwrap();
    let addr = obs.serve_admin("127.0.0.1:0").unwrap().local_addr();
    // The handle is gone: the server must not be.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = client();
    let (status, body) = send(&client, "GET", &format!("http://{addr}/metrics"), b"").await;
    assert_eq!(status, 200);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("target_info{"), "{body}");
    let (status, body) = send(&client, "GET", &format!("http://{addr}/healthz"), b"").await;
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let obs = isolated("admin-shutdown").build().unwrap();
    let admin = obs.serve_admin("127.0.0.1:0").unwrap();
    let addr = admin.local_addr();
    let (status, _) = send(&client(), "GET", &format!("http://{addr}/readyz"), b"").await;
    assert_eq!(status, 200);
    admin.shutdown();
    assert!(
        refused_within(addr, Duration::from_secs(5)).await,
        "the admin port still accepts connections 5 s after shutdown()"
    );
}

#[tokio::test]
async fn a_taken_port_is_an_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let obs = isolated("admin-taken").build().unwrap();
    let err = obs.serve_admin(addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("admin endpoints"),
        "{text}"
    );
}
