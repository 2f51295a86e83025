//! The HTTP server loop shared by every service: bind, serve with request tracing and JSON
//! fallbacks, stop gracefully when the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::http::Request;
use tokio::net::TcpListener;
use tower_http::LatencyUnit;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};

use crate::config::HttpSettings;
use crate::error::ApiError;

/// Binds the listener. Port 0 picks a free port; read it back with `local_addr`. A listener
/// handed in through [`HttpSettings::inherited_listener`] is duplicated instead, so that the
/// service closes only its own handle when it stops.
pub async fn bind(settings: &HttpSettings) -> anyhow::Result<TcpListener> {
    if let Some(inherited) = &settings.inherited_listener {
        let duplicate = inherited.try_clone().context("failed to duplicate the inherited listener")?;
        duplicate.set_nonblocking(true).context("failed to make the inherited listener non-blocking")?;
        return TcpListener::from_std(duplicate).context("failed to adopt the inherited listener");
    }
    let address = format!("{}:{}", settings.host, settings.port);
    TcpListener::bind(&address).await.with_context(|| format!("failed to bind {address}"))
}

/// Adds what every service's router needs around its routes: a JSON 404 for unknown paths, the
/// request id (see [`crate::request_id`]), and a tracing span per request (method, path, request
/// id) ending in one access-log line at info (status, latency).
///
/// Request spans are children of the span that was current when the router was built: the
/// server spawns a task per connection, which would otherwise lose the context the service was
/// started in (the test harness starts each scenario's services in a span of their own, and
/// attributes what they log to that scenario through it).
pub fn finish(router: Router, metrics: &crate::metrics::Metrics) -> Router {
    let service_span = tracing::Span::current();
    let trace = TraceLayer::new_for_http()
        .make_span_with(move |request: &Request<_>| {
            let request_id = request.headers().get(crate::request_id::HEADER).and_then(|value| value.to_str().ok()).unwrap_or("");
            tracing::info_span!(
                parent: &service_span,
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %request_id
            )
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Millis))
        // A 5xx answer is logged as a warning here: a dependency that is down (a 503) is an
        // operational event, not a bug, and an internal error (a 500) has already been logged as
        // an error, with its cause, by `ApiError`.
        .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN));
    // The request id layer is the outer one, so the trace span is made with the id in place.
    // Requests that matched a route are counted and timed; `/metrics` itself is not.
    router
        .route_layer(axum::middleware::from_fn_with_state(metrics.clone(), crate::metrics::track_requests))
        .merge(crate::metrics::router(metrics.clone()))
        .fallback(|| async { ApiError::NotFound("Not Found".into()) })
        .layer(trace)
        .layer(axum::middleware::from_fn(crate::request_id::middleware))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(%address, "listening");
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await.context("HTTP server failed")
}
