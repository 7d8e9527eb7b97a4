//! Listen addresses from the environment: a taken or invalid address ends the example with
//! one line naming the variable to set, instead of `Error: Os { code: 98, .. }`.
#![allow(dead_code)]

use tower_observability::{AdminServer, Observability};

/// The address in the variable `var`, else `default`.
pub fn addr(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Binds the address in `var` (else `default`) for the application.
pub async fn listen(var: &str, default: &str) -> tokio::net::TcpListener {
    let addr = addr(var, default);
    match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => exit(var, format!("cannot listen on {addr}: {e}")),
    }
}

/// Serves the admin endpoints on the address in `var` (else `default`).
pub fn serve_admin(obs: &Observability, var: &str, default: &str) -> AdminServer {
    // The error names the address already.
    obs.serve_admin(addr(var, default))
        .unwrap_or_else(|e| exit(var, e.to_string()))
}

fn exit(var: &str, what: String) -> ! {
    eprintln!(
        "{}: {what}; set {var} to a free address ({var}=127.0.0.1:0 for any free port)",
        env!("CARGO_CRATE_NAME")
    );
    std::process::exit(2)
}
