//! `GET /api/v1/openapi.json` and Swagger UI at `GET /api/v1/docs`, served from assets
//! embedded at build time so the page works offline.

use axum::Router;
use utoipa_swagger_ui::SwaggerUi;

pub const DOCS_PATH: &str = "/api/v1/docs";
pub const SPEC_PATH: &str = "/api/v1/openapi.json";

pub fn router(spec: utoipa::openapi::OpenApi) -> Router {
    Router::new().merge(SwaggerUi::new(DOCS_PATH).url(SPEC_PATH, spec))
}
