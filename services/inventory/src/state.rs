//! What every handler shares.

use std::sync::Arc;

use axum::extract::FromRef;
use common::auth::{StaffPolicy, TokenVerifier};
use sqlx::PgPool;

/// Handlers' extractors take what they need from it (`FromRef`, derived for every field).
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The service's own database; the pool is bounded by configuration.
    pub pool: PgPool,
    /// Verifies every request's bearer token against the user service's JWKS.
    pub token_verifier: Arc<TokenVerifier>,
    /// Who may write (see `common::auth::StaffPolicy`).
    pub staff_policy: StaffPolicy,
}
