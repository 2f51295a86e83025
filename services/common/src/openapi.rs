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

/// Where Swagger UI's "Authorize" sends the OAuth2 password form: the user service's login, as
/// the gateway routes it (so it works on the user service's own docs and through the gateway).
pub const TOKEN_URL: &str = "/api/v1/auth/login";

/// Declares the two ways to send the access token, which protected operations name with
/// `security(("bearer" = []), ("oauth2" = []))`: `bearer` (paste a token) and `oauth2`, the
/// password flow at [`TOKEN_URL`] (Swagger UI asks for the email and password and fetches the
/// token itself). Import it and name it in `#[openapi(modifiers(&BearerSecurity))]`.
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(TOKEN_URL, Scopes::new()))])),
        );
    }
}
