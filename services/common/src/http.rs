//! The HTTP server loop shared by every service: bind, serve with request tracing and JSON
//! fallbacks, stop gracefully when the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::http::Request;
use tokio::net::TcpListener;
use tower_http::LatencyUnit;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, OnResponse as _, TraceLayer};

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
            let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok());
            let span = tracing::info_span!(
                parent: &service_span,
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %header(crate::request_id::HEADER).unwrap_or(""),
                trace_id = tracing::field::Empty,
                otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
                otel.kind = "server",
                http.response.status_code = tracing::field::Empty,
            );
            // The caller's trace goes on here (see `crate::telemetry`).
            crate::telemetry::continue_trace(&span, header(crate::telemetry::TRACEPARENT));
            span
        })
        .on_request(())
        .on_response(|response: &axum::http::Response<_>, latency: std::time::Duration, span: &tracing::Span| {
            span.record("http.response.status_code", response.status().as_u16());
            DefaultOnResponse::new()
                .level(tracing::Level::INFO)
                .latency_unit(LatencyUnit::Millis)
                .on_response(response, latency, span);
        })
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// What the fmt layer wrote.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Sends one GET through a finished router with `headers`, under the services' log lines and
    /// trace layer, and returns the log lines it wrote.
    async fn log_of_a_request(headers: &[(&str, &str)]) -> String {
        let written = Written::default();
        let writer = written.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || writer.clone()))
            .with(crate::telemetry::trace_layer("test", None));
        let _default = tracing::subscriber::set_default(subscriber);
        let router = finish(Router::new().route("/things", get(|| async { "ok" })), &crate::metrics::Metrics::new());
        let mut request = Request::get("/things");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
        String::from_utf8(written.0.lock().unwrap().clone()).unwrap()
    }

    #[tokio::test]
    async fn a_requests_log_line_carries_its_request_id_beside_the_callers_trace_id() {
        let log = log_of_a_request(&[
            ("x-request-id", "request-7"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ])
        .await;
        let line = log.lines().find(|line| line.contains("finished processing request")).unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains("request_id=request-7"), "{line}");
        assert!(line.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"), "{line}");
    }

    #[tokio::test]
    async fn a_request_without_a_trace_starts_one_of_its_own() {
        let log = log_of_a_request(&[("x-request-id", "request-8")]).await;
        let line = log.lines().find(|line| line.contains("finished processing request")).unwrap_or_else(|| panic!("{log}"));
        let trace_id = line.split("trace_id=").nth(1).and_then(|rest| rest.get(..32)).unwrap_or_else(|| panic!("{line}"));
        assert!(trace_id.bytes().all(|byte| byte.is_ascii_hexdigit()) && trace_id != "0".repeat(32), "{line}");
    }
}
