//! `oncely serve`: a store's numbers over HTTP. `GET /metrics` answers in the Prometheus text
//! format, computed from the store at each scrape (`oncely::metrics`), so it is the same
//! whichever process serves it.
//!
//! `GET /` is the dashboard (`dashboard.rs`): a page embedded in the binary that polls the JSON
//! endpoints under `/api/` and posts replays and purges to them.
//!
//! Safe by default: it binds 127.0.0.1; bound to any other address it refuses to start without a
//! token, and then answers only requests that carry it (`Authorization: Bearer TOKEN`) — every
//! `/metrics` and `/api/` request; the page, its script and its style hold no data and load
//! without it. Every POST also needs the CSRF token of this server start (see `dashboard.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use oncely::AnyStore;

use crate::admin::open_existing;
use crate::dashboard;
use crate::error::CliError;

/// What `oncely serve` was started with.
pub struct ServeOptions {
    /// The store (it must exist).
    pub db: PathBuf,
    /// Where to listen.
    pub bind: SocketAddr,
    /// The token every request must carry, if any.
    pub token: Option<String>,
    /// Whether the dashboard shows message payloads and stored inbox results (else their size).
    pub show_payloads: bool,
}

/// What every request handler shares.
pub struct Served {
    /// The store.
    pub store: AnyStore,
    /// The token every `/metrics` and `/api/` request must carry, if any (never empty).
    pub token: Option<String>,
    /// The CSRF token of this server start, written into the page; every POST must carry it.
    pub csrf: String,
    /// Whether payloads and stored results are shown.
    pub show_payloads: bool,
    /// How the store is named on the page (a URL without its password).
    pub shown: String,
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
    let csrf = dashboard::new_csrf_token()
        .map_err(|e| CliError::Failed(format!("no randomness for the CSRF token: {e}")))?;
    let served = Arc::new(Served {
        store,
        token: options.token.filter(|t| !t.is_empty()),
        csrf,
        show_payloads: options.show_payloads,
        shown: oncely::store::postgres::redact(&options.db.to_string_lossy()),
    });
    let authorized = || middleware::from_fn_with_state(served.clone(), authorize);
    let api = Router::new()
        .route("/api/overview", get(dashboard::overview))
        .route("/api/dead", get(dashboard::dead))
        .route("/api/message", get(dashboard::message))
        .route("/api/inbox", get(dashboard::inbox))
        .route("/api/replay", post(dashboard::replay))
        .route("/api/purge", post(dashboard::purge))
        .route("/api/{*rest}", get(dashboard::not_found).post(dashboard::not_found))
        .route_layer(authorized());
    let page = Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .merge(api)
        .route_layer(middleware::from_fn_with_state(served.clone(), dashboard::guard));
    let app =
        Router::new().route("/metrics", get(metrics)).layer(authorized()).merge(page).with_state(served);
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", options.bind)))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    eprintln!("oncely serve: dashboard at http://{addr}/, metrics at http://{addr}/metrics (Ctrl-C stops)");
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
            let mut refused =
                (StatusCode::UNAUTHORIZED, "a token is required: Authorization: Bearer TOKEN\n")
                    .into_response();
            refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return refused;
        }
    }
    next.run(request).await
}

/// Equal bytes, in time that depends only on the lengths.
pub fn same(a: &[u8], b: &[u8]) -> bool {
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
