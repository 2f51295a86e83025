//! What every handler shares.

use std::sync::Arc;

use axum::extract::FromRef;
use common::auth::{StaffPolicy, TokenVerifier};

use crate::products::store::ProductStore;

#[derive(Clone)]
pub struct AppState {
    pub products: ProductStore,
    /// Verifies the bearer tokens of the write endpoints against the user service's JWKS.
    pub token_verifier: Arc<TokenVerifier>,
    /// Who may write (see `common::auth::StaffPolicy`).
    pub staff_policy: StaffPolicy,
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.token_verifier)
    }
}

impl FromRef<AppState> for StaffPolicy {
    fn from_ref(state: &AppState) -> Self {
        state.staff_policy
    }
}
