//! `oncely serve`: a store's numbers over HTTP. `GET /metrics` answers in the Prometheus text
//! format, computed from the store at each scrape (`oncely::metrics`), so it is the same
//! whichever process serves it.
//!
//! Safe by default: it binds 127.0.0.1; bound to any other address it refuses to start without a
//! token, and then answers only requests that carry it (`Authorization: Bearer TOKEN`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oncely::AnyStore;

use crate::admin::open_existing;
use crate::error::CliError;

/// What `oncely serve` was started with.
pub struct ServeOptions {
    /// The store (it must exist).
    pub db: PathBuf,
    /// Where to listen.
    pub bind: SocketAddr,
    /// The token every request must carry, if any.
    pub token: Option<String>,
}

struct Served {
    store: AnyStore,
    token: Option<String>,
}

/// Serves until interrupted (Ctrl-C or SIGTERM). Prints the address it listens on, on one line,
/// before the first request can arrive (`listening on http://ADDR`).
pub async fn serve(options: ServeOptions) -> Result<(), CliError> {
    if !options.bind.ip().is_loopback() && options.token.as_deref().is_none_or(str::is_empty) {
        return Err(CliError::Usage(format!(
            "--bind {} is not a loopback address: give a token (--token or ONCELY_SERVE_TOKEN) that every request must carry",
            options.bind
        )));
    }
    let store = open_existing(&options.db)?;
    let served = Arc::new(Served { store, token: options.token.filter(|t| !t.is_empty()) });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(served.clone(), authorize))
        .with_state(served);
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", options.bind)))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    eprintln!("oncely serve: metrics at http://{addr}/metrics (Ctrl-C stops)");
    axum::serve(listener, app).with_graceful_shutdown(stopped()).await?;
    Ok(())
}

/// Completes at Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Refuses a request without the token (when one is set), comparing in constant time.
async fn authorize(State(served): State<Arc<Served>>, request: Request, next: Next) -> Response {
    if let Some(token) = &served.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            let mut refused = (StatusCode::UNAUTHORIZED, "a token is required: Authorization: Bearer TOKEN\n").into_response();
            refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return refused;
        }
    }
    next.run(request).await
}

/// Equal bytes, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(served): State<Arc<Served>>) -> Response {
    match oncely::metrics::snapshot(&served.store).await {
        Ok(snapshot) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            oncely::metrics::render(&snapshot),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("error[{}]: {e}\n", e.code())).into_response(),
    }
}
