//! The state every handler shares: the pool, the token issuer, the token verifier and the
//! password hasher. Cloning it is cheap (a pool handle and three `Arc`s).

use std::sync::Arc;

use axum::extract::FromRef;
use common::auth::TokenVerifier;
use sqlx::PgPool;

use crate::passwords::PasswordHasher;
use crate::throttle::LoginThrottle;
use crate::tokens::TokenIssuer;

/// Handlers' extractors take what they need from it (`FromRef`, derived for every field).
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The service's own database: users, addresses, refresh tokens.
    pub pool: PgPool,
    /// Signs tokens; holds the only private key of the shop.
    pub tokens: Arc<TokenIssuer>,
    /// Verifies tokens against this service's own key set through `common::auth`, the same code
    /// path every other service uses (they fetch the same key set over HTTP instead).
    pub verifier: Arc<TokenVerifier>,
    pub passwords: Arc<PasswordHasher>,
    /// Wrong passwords per account, for login throttling.
    pub login_throttle: Arc<LoginThrottle>,
    /// Accounts given the staff role by configuration (`STAFF_EMAILS`, a development convenience:
    /// emails are not verified), lowercased.
    pub staff_emails: Arc<[String]>,
}

impl AppState {
    /// The roles a token for `user` carries: staff when an operator granted it
    /// (`user-service staff grant`), or, in development, when `STAFF_EMAILS` names the account.
    pub fn roles_of(&self, user: &crate::users::store::UserRecord) -> Vec<String> {
        let staff = user.is_staff || self.staff_emails.iter().any(|staff| staff.eq_ignore_ascii_case(&user.email));
        if staff { vec![common::auth::STAFF_ROLE.to_owned()] } else { Vec::new() }
    }
}
