//! The OpenAPI document: the handlers' `#[utoipa::path]` annotations collected by the routers,
//! plus what no single handler knows (title, tags, the bearer security scheme).

use common::openapi::BearerSecurity;
use utoipa::OpenApi;

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
