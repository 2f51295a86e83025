//! What every handler shares.

use std::sync::Arc;

use axum::extract::FromRef;
use common::auth::{StaffPolicy, TokenVerifier};

use crate::products::store::ProductStore;

/// Handlers' extractors take what they need from it (`FromRef`, derived for every field).
#[derive(Clone, FromRef)]
pub struct AppState {
    pub products: ProductStore,
    /// Verifies the bearer tokens of the write endpoints against the user service's JWKS.
    pub token_verifier: Arc<TokenVerifier>,
    /// Who may write (see `common::auth::StaffPolicy`).
    pub staff_policy: StaffPolicy,
}
