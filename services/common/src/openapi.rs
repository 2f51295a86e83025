//! `GET /api/v1/openapi.json` and Swagger UI at `GET /api/v1/docs`, served from assets
//! embedded at build time so the page works offline.

use axum::Router;
use utoipa_swagger_ui::SwaggerUi;

pub const DOCS_PATH: &str = "/api/v1/docs";
pub const SPEC_PATH: &str = "/api/v1/openapi.json";

pub fn router(spec: utoipa::openapi::OpenApi) -> Router {
    // No validator: Swagger UI would otherwise send the document to validator.swagger.io, which
    // an offline machine cannot reach (and which has no business seeing our API).
    let config = utoipa_swagger_ui::Config::default().validator_url("none");
    Router::new().merge(SwaggerUi::new(DOCS_PATH).url(SPEC_PATH, spec).config(config))
}

/// Declares the `bearer` security scheme (a JWT in `Authorization: Bearer`) that handlers name
/// with `security(("bearer" = []))`. Import it and name it in `#[openapi(modifiers(&BearerSecurity))]`.
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}
