//! Two replicas of one service share one rate limit through Redis.
//!
//! ```sh
//! redis-server --port 6379 --save '' --appendonly no &
//! cargo run --example rate_limit_replicas --features redis
//! ```
//!
//! Each replica is its own layer with its own Redis connection, as two processes would be;
//! the quota (`10/min`, a burst of 10) is one for both. The example sends 30 requests
//! alternating between the replicas and prints what each admitted, then keeps serving so
//! you can try it with curl. `REDIS_URL` (default `redis://127.0.0.1:6379/0`) picks the
//! server; `REPLICAS_DEMO_ONLY=1` exits after the demonstration.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use tower_observability::rate_limit::{Policy, RateLimit};
use tower_observability::Observability;

/// One replica: the service, its own layer, its own port (any free one).
async fn replica(redis: &str) -> Result<(SocketAddr, Observability), Box<dyn std::error::Error>> {
    let limits = RateLimit::new(Policy::new("per-client", "10/min;burst=10")).redis(redis);
    // Replicas of one service share its name: the name keys the limits in Redis.
    let obs = Observability::from_env("replicated")?
        .rate_limit(limits)
        .build()?;
    let app = Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .layer(obs.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = obs.shutdown_signal();
    tokio::spawn(async move {
        let make = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, make)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((addr, obs))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let (first, second) = (replica(&redis).await?, replica(&redis).await?);
    let replicas = [first.0, second.0];
    println!(
        "replicas on http://{}/hello and http://{}/hello, one quota of 10/min in {redis}",
        replicas[0], replicas[1]
    );

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut admitted = [0, 0];
    let mut refused = 0;
    for i in 0..30 {
        let res = client
            .get(format!("http://{}/hello", replicas[i % 2]).parse()?)
            .await?;
        match res.status().as_u16() {
            200 => admitted[i % 2] += 1,
            429 => refused += 1,
            other => println!("unexpected status {other}"),
        }
    }
    println!(
        "admitted {} (replica 1: {}, replica 2: {}), refused {refused}",
        admitted[0] + admitted[1],
        admitted[0],
        admitted[1]
    );
    if std::env::var_os("REPLICAS_DEMO_ONLY").is_some() {
        return Ok(());
    }
    println!("serving; try: curl -i 'http://{}/hello'", replicas[0]);
    println!("Ctrl-C (or SIGTERM) stops it.");
    first.1.shutdown_signal().await;
    Ok(()) // both layers dropped here: what they still have queued is sent first
}
