//! The OpenAPI document: the handlers' `#[utoipa::path]` annotations collected by the routers,
//! plus what no single handler knows (title, tags, the bearer security scheme).

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "User service", description = "Accounts, addresses and the tokens every other service verifies."),
    modifiers(&BearerSecurity),
    tags(
        (name = crate::auth::TAG, description = "Registration, login, token refresh and the public key set"),
        (name = crate::users::TAG, description = "The caller's own profile"),
        (name = crate::addresses::TAG, description = "The caller's addresses"),
    )
)]
pub struct ApiDocument;

/// Declares the `bearer` scheme the handlers' `security(("bearer" = []))` refer to.
struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}
