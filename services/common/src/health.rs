//! `GET /health` on every service: `{"status": "healthy", "service": "<name>"}`.

use axum::Router;
use axum::routing::get;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub service: &'static str,
}

/// A router answering `GET /health`. It says the process serves HTTP; it deliberately does not
/// probe the databases, so that an orchestrator does not restart a healthy process during a
/// database outage that a restart cannot fix.
pub fn router<S: Clone + Send + Sync + 'static>(service: &'static str) -> Router<S> {
    Router::new().route("/health", get(move || async move { axum::Json(Health { status: "healthy", service }) }))
}
